"""The naive baseline of ``bench_video``: decode every frame with OpenCV, run dlib's HOG
detector (upsample 1) and the 68-point predictor on it, keep the largest face.

``python -m benchmarks.naive_video VIDEO OUT.npz`` writes ``index`` (N,) int64 (frames
with a face) and ``points`` (N, 68, 2) float64 input-frame pixels.  Run as its own
process so that the benchmark times it whole, as it times ``fermaps frames``.
"""
from __future__ import annotations

import sys

import numpy as np


def naive_landmarks(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(index (N,) int64, points (N, 68, 2) float64) of the frames of ``path`` where
    the per-frame detector finds a face."""
    import cv2

    from preprocess.landmarks import dlib_models

    detector, predictor = dlib_models()
    cap = cv2.VideoCapture(path)
    index, points = [], []
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rects = detector(rgb, 1)
        if len(rects):
            shape = predictor(rgb, max(rects, key=lambda r: r.area()))
            index.append(i)
            points.append([(p.x, p.y) for p in shape.parts()])
        i += 1
    cap.release()
    return np.asarray(index, np.int64), np.asarray(points, np.float64).reshape(-1, 68, 2)


if __name__ == "__main__":
    idx, pts = naive_landmarks(sys.argv[1])
    np.savez(sys.argv[2], index=idx, points=pts)
