"""Landmark detection on small face images: success, accuracy and time per size.

FFNet-M detects its 68 points with dlib on the cropped 56 x 56 texture and notes that
detection fails on images that small.  This benchmark measures how often dlib (HOG, with
and without the MMOD fallback) and MediaPipe (when installed) find the face
on face crops resized to 56, 112 and 224 pixels, with upsample 0 / 1 / 2, and how far the
points land from the truth:

* astronaut: 9 crops of scikit-image's ``astronaut()`` face (3 tightnesses x 3 offsets);
  truth = the hand annotation in ``tests/data/astronaut_landmarks_manual.json``.
* render: orthographic renders (``preprocess.render``) of the embedded sample's
  Bosphorus-style scans (1 subject, 7 expressions); truth = the scans' own 3-D landmark
  file projected into the render, the points that have an iBUG counterpart.

Error = mean distance over the truth points / truth outer-eye-corner distance (NME).
Time = best of ``--repeat`` calls per image, averaged over images, with the ratio to
the 224 / upsample 0 dlib case of the same source (the baseline, measured in this run).

Run: ``PYTHONPATH=. python benchmarks/bench_landmarks.py [--repeat 3]``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import best_of, report  # noqa: E402
from preprocess.landmarks import detect_landmarks, mediapipe_available  # noqa: E402

SIZES = (56, 112, 224)
UPSAMPLES = (0, 1, 2)
MANUAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "astronaut_landmarks_manual.json"


class Case:
    """One test image: pixels and truth points ``{ibug index: (x, y)}``."""

    def __init__(self, image: np.ndarray, truth: dict[int, np.ndarray]):
        self.image, self.truth = image, truth


def _resize_case(img: np.ndarray, truth: dict, size: int) -> Case:
    s = size / img.shape[0]
    small = np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS))
    return Case(small, {k: (v + 0.5) * s - 0.5 for k, v in truth.items()})


def astronaut_cases(size: int) -> list[Case]:
    from skimage import data

    img = data.astronaut()
    rec = json.loads(MANUAL.read_text(encoding="utf-8"))
    manual = {int(k): np.array(v) for k, v in rec["points"].items()}
    cx, cy = 224, 128                     # between the eyes and the mouth
    cases = []
    for side in (150, 190, 230):         # face box ~90 px: tight .. loose crops
        for dx, dy in ((-10, 0), (0, 0), (8, 6)):
            x0, y0 = cx + dx - side // 2, cy + dy - side // 2
            crop = img[y0:y0 + side, x0:x0 + side]
            truth = {k: v - [x0, y0] for k, v in manual.items()}
            cases.append(_resize_case(crop, truth, size))
    return cases


def render_cases(size: int, scans) -> list[Case]:
    from preprocess.landmark_names import ibug_index
    from preprocess.render import render_orthographic

    cases = []
    for scan in scans:
        r = render_orthographic(scan.vertices, scan.faces, size=size, texture=scan.texture,
                                uv=scan.uv, face_uv=scan.face_uv, item=scan.ids.source)
        rgb = np.clip(np.rint(np.moveaxis(r.rgb, 0, -1) * 255), 0, 255).astype(np.uint8)
        xmin, _, _, ymax = r.extent
        truth = {}
        for name, p in zip(scan.landmarks.names, scan.landmarks.points):
            k = ibug_index(name)
            if k is not None:
                truth[k] = np.array([(p[0] - xmin) / r.pixel_size_mm - 0.5,
                                     (ymax - p[1]) / r.pixel_size_mm - 0.5])
        cases.append(Case(rgb, truth))
    return cases


def sample_scans() -> list:
    from data_schema.params import SynthParams
    from preprocess.io import read_item
    from preprocess.synthetic.sample import write_sample

    tmp = tempfile.mkdtemp(prefix="bench-landmarks-")
    params = SynthParams(seed=3, bosphorus_subjects=1, bu3dfe_subjects=0,
                         facescape_subjects=0, ckplus_subjects=0, mmi_videos=0)
    man = write_sample(tmp, params)
    scans = [read_item(man.root / it.path) for it in man.items if it.dataset == "bosphorus"]
    return [s for s in scans if s.landmarks is not None]


def nme(points: np.ndarray, truth: dict) -> float:
    iod = float(np.hypot(*(truth[45] - truth[36])))
    return float(np.mean([np.hypot(*(points[k] - v)) for k, v in truth.items()]) / iod)


def run(cases: list[Case], backend: str, upsample: int, repeat: int) -> dict:
    found = hog_found = mmod = 0
    times, errs = [], []
    for c in cases:
        if backend == "dlib":
            hog_found += detect_landmarks(c.image, upsample=upsample, mmod_fallback=False).found
        res = detect_landmarks(c.image, backend, upsample=upsample)
        times.append(best_of(lambda: detect_landmarks(c.image, backend, upsample=upsample),
                             repeat))
        if res.found:
            found += 1
            mmod += res.provenance == "dlib-mmod"
            errs.append(nme(res.points, c.truth))
    return {"n": len(cases), "found": found, "hog": hog_found, "mmod": mmod,
            "ms": 1000 * float(np.mean(times)),
            "nme": float(np.median(errs)) if errs else float("nan")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    backends = ["dlib"] + (["mediapipe"] if mediapipe_available() else [])
    sources = {"astronaut": astronaut_cases}
    try:
        scans = sample_scans()
        sources["render"] = lambda size: render_cases(size, scans)
    except Exception as e:  # the renderer is optional here: say why it is left out
        print(f"(render rows left out: {type(e).__name__}: {e})")
    detect_landmarks(np.zeros((8, 8), np.uint8), mmod_fallback=True)   # load the models

    print(f"{'source':<10}{'backend':<10}{'size':>5}{'up':>4}{'HOG ok':>8}{'found':>8}"
          f"{'MMOD':>6}{'ms':>9}{'x224/0':>8}{'NME':>8}")
    for name, make in sources.items():
        cases = {s: make(s) for s in SIZES}
        rows = {}
        for backend in backends:
            for size in SIZES:
                for up in (UPSAMPLES if backend == "dlib" else (0,)):
                    rows[backend, size, up] = run(cases[size], backend, up, args.repeat)
        base = rows["dlib", 224, 0]["ms"]
        for (backend, size, up), r in rows.items():
            n = r["n"]
            hog = f"{r['hog']}/{n}" if backend == "dlib" else "-"
            print(f"{name:<10}{backend:<10}{size:>5}{up:>4}{hog:>8}{r['found']:>6}/{n}"
                  f"{r['mmod']:>6}{r['ms']:>9.1f}{r['ms'] / base:>8.2f}{r['nme']:>8.3f}")
        for (backend, size, up), r in rows.items():
            report(f"landmarks {name} {backend} {size}px up{up}", r["ms"] / base,
                   f"found {r['found']}/{r['n']}, median NME {r['nme']:.3f}, "
                   f"{r['ms']:.1f} ms (baseline dlib 224px up0 = {base:.1f} ms)")


if __name__ == "__main__":
    main()
