"""Pose registration, nose tip and sphere crop on a Bosphorus-size scan.

Each result is a ratio to a baseline timed in the same run:

* ``fit_rigid`` on the 68 template landmarks / ``scipy``'s
  ``Rotation.align_vectors`` on the same centred sets (rotation only, no checks);
* ``find_nose_tip`` on a 233 x 186 range grid (0.8 mm, ~43,000 vertices, 0.1 %
  spikes: the size of a real Bosphorus scan) / building a ``cKDTree`` on the x-y
  positions and querying every vertex's 16 nearest neighbours (the unavoidable core
  of any neighbourhood-median method);
* ``crop_sphere`` (radius 80 mm) on the same grid / ``trimesh`` ``submesh`` of the same
  faces + ``split`` into connected pieces (what one would write with trimesh).

Run: ``PYTHONPATH=. python benchmarks/bench_registration.py [--repeat 10]``
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import best_of, report  # noqa: E402


def grid_scan(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from preprocess.io._grid import grid_mesh

    xs = np.arange(186) * 0.8 - 74.0
    ys = 93.0 - np.arange(233) * 0.8
    X, Y = np.meshgrid(xs, ys)
    dome = 40.0 * np.sqrt(np.clip(1 - (X / 90) ** 2 - (Y / 110) ** 2, 0, None))
    Z = dome + 20.0 * np.exp(-(X ** 2 + Y ** 2) / 72.0)
    v, f, _ = grid_mesh(np.stack([X, Y, Z], -1), np.ones(X.shape, bool))
    spikes = rng.choice(len(v), len(v) // 1000, replace=False)
    v[spikes, 2] += rng.uniform(10, 40, len(spikes))
    return v, f


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args(argv)

    import trimesh
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    from preprocess.nose import crop_sphere, find_nose_tip
    from preprocess.registration import fit_rigid
    from preprocess.template import load_template

    rng = np.random.default_rng(0)
    src = load_template().points
    dst = src @ Rotation.random(random_state=rng).as_matrix().T + 5.0
    dst = dst + rng.normal(0, 1.0, dst.shape)
    a = best_of(lambda: fit_rigid(src, dst), 20 * args.repeat)
    b = best_of(lambda: Rotation.align_vectors(dst - dst.mean(0), src - src.mean(0)),
                20 * args.repeat)
    report("fit_rigid 68 landmarks", a / b,
           f"{a * 1e6:.0f} us (baseline scipy align_vectors {b * 1e6:.0f} us)")

    v, f = grid_scan(rng)
    a = best_of(lambda: find_nose_tip(v, f), args.repeat)
    b = best_of(lambda: cKDTree(v[:, :2]).query(v[:, :2], k=16), args.repeat)
    report(f"find_nose_tip {len(v)} vertices", a / b,
           f"{a * 1e3:.1f} ms (baseline cKDTree + 16-NN of all vertices {b * 1e3:.1f} ms)")

    tip = find_nose_tip(v, f).point

    def with_trimesh():
        keep = np.flatnonzero((np.linalg.norm(v - tip, axis=1) <= 80.0)[f].all(axis=1))
        sub = trimesh.Trimesh(v, f, process=False).submesh([keep], append=True)
        return sub.split(only_watertight=False)

    a = best_of(lambda: crop_sphere(v, f, tip, 80.0), args.repeat)
    b = best_of(with_trimesh, args.repeat)
    report(f"crop_sphere {len(f)} faces", a / b,
           f"{a * 1e3:.1f} ms (baseline trimesh submesh + split {b * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
