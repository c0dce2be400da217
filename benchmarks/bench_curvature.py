"""Principal curvatures: our cubic fit with normals vs pymeshlab, same process, same mesh.

For a ~36,000-vertex grid-triangulated face-like surface (the size of a Bosphorus
scan, 0.8 mm spacing) and a ~160,000-vertex one (0.38 mm), times, best of N rounds
that interleave the contenders:

* ours: ``principal_curvatures`` from arrays at the render stage's default
  neighbourhood (``RenderParams``: the sampled ``curvature_radius_mm`` ball, or the
  rings when it is 0) -- vertex normals, the neighbourhood, the 7-unknown fit and the
  eigen-decomposition, all included (``threads=1``, the pipeline default;
  ``threads=2`` reported for context);
* pymeshlab ``compute_curvature_principal_directions_per_vertex`` with "Quadric
  Fitting" (the baseline of the issue: ratio = pymeshlab / ours, goal >= 3) and, for
  context, "Taubin approximation" and "Normal Cycles".  The mesh is loaded into the
  MeshSet once, outside the timing (which favours pymeshlab).

The process keeps freed memory for reuse (``pipeline.allocator``), as the pipeline's
processes do; without it our side pays ~25 % more in page faults, pymeshlab nothing.

Run: ``PYTHONPATH=. python -m benchmarks.bench_curvature [--repeat 9]``; ``main``
returns the results as a dict.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._util import best_of, report  # noqa: E402


def face_like_grid(rows: int, cols: int, spacing: float, seed: int = 0):
    """A face-sized height field (dome, nose, eye sockets, 0.02 mm scanner noise) on a
    rows x cols grid, two triangles per cell.  Returns (vertices (V, 3) float64 mm,
    faces (F, 3) int64)."""
    xs = (np.arange(cols) - (cols - 1) / 2) * spacing
    ys = ((rows - 1) / 2 - np.arange(rows)) * spacing
    X, Y = np.meshgrid(xs, ys)
    Z = (40.0 * np.sqrt(np.clip(1 - (X / 90) ** 2 - (Y / 110) ** 2, 0, None))
         + 22.0 * np.exp(-(X ** 2 / 60.0 + (Y + 5) ** 2 / 400.0))
         - 7.0 * np.exp(-((np.abs(X) - 32) ** 2 + (Y - 28) ** 2) / 120.0))
    Z = Z + np.random.default_rng(seed).normal(0, 0.02, Z.shape)
    V = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    # Rows run downward (y decreasing): (a, c, d) turns counter-clockwise seen from +Z.
    F = np.concatenate([np.stack([a, c, d], 1), np.stack([a, d, b], 1)]).astype(np.int64)
    return V, F


SIZES = {"36k": (233, 155, 0.8), "160k": (490, 327, 0.38)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9, help="interleaved rounds")
    args = ap.parse_args(argv)

    import pymeshlab

    from data_schema.params import RenderParams
    from pipeline.allocator import keep_freed_memory
    from preprocess.curvature import principal_curvatures as _curvatures

    keep_freed_memory()       # as every fermaps process does (pipeline.cli)
    rp = RenderParams()
    hood = {"rings": rp.curvature_rings, "radius_mm": rp.curvature_radius_mm or None}
    where = f"{rp.curvature_radius_mm:g} mm ball" if rp.curvature_radius_mm else f"{rp.curvature_rings}-ring"
    print(f"neighbourhood: the render default, {where}", flush=True)

    def principal_curvatures(V, F, **kw):
        return _curvatures(V, F, **hood, **kw)

    results = {}
    for name, (rows, cols, h) in SIZES.items():
        V, F = face_like_grid(rows, cols, h)
        c = principal_curvatures(V, F)
        assert (c.k1 + c.k2).mean() < 0 and c.ok.mean() > 0.99   # sanity: a convex face
        ms = pymeshlab.MeshSet()
        ms.add_mesh(pymeshlab.Mesh(V, F))

        def pml(method):
            return lambda: ms.compute_curvature_principal_directions_per_vertex(
                method=method, curvcolormethod="Mean Curvature")

        runs = {"ours": lambda: principal_curvatures(V, F),
                "ours_2threads": lambda: principal_curvatures(V, F, threads=2),
                "quadric": pml("Quadric Fitting"), "taubin": pml("Taubin approximation"),
                "normal_cycles": pml("Normal Cycles")}
        # Rounds interleave the contenders, so a burst of load elsewhere on the machine
        # hits all of them alike; each keeps its best round.
        best = {k: float("inf") for k in runs}
        for _ in range(args.repeat):
            for k, fn in runs.items():
                best[k] = min(best[k], best_of(fn, 1))
        ratio = best["quadric"] / best["ours"]
        ratio2 = best["quadric"] / best["ours_2threads"]
        ms_ = {k: f"{v * 1e3:.1f} ms" for k, v in best.items()}
        report(f"curvature cubic fit {name} ({len(V)} v) vs pymeshlab quadric", ratio,
               f"ours {ms_['ours']} (2 threads {ms_['ours_2threads']}), quadric "
               f"{ms_['quadric']}, taubin {ms_['taubin']}, normal cycles {ms_['normal_cycles']}")
        print(f"  ratio = pymeshlab_time / ours = {ratio:.2f} (1 thread), {ratio2:.2f} "
              f"(2 threads); goal >= 3", flush=True)
        results[f"curvature_{name}"] = {
            "vertices": int(len(V)), "neighbourhood": where, "ours_s": best["ours"],
            "ours_2threads_s": best["ours_2threads"],
            "pymeshlab_quadric_s": best["quadric"], "pymeshlab_taubin_s": best["taubin"],
            "pymeshlab_normal_cycles_s": best["normal_cycles"],
            "ratio": ratio, "ratio_2threads": ratio2,
        }
    return results


if __name__ == "__main__":
    main()
