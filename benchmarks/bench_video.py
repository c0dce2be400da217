"""Video alignment with tracking vs detecting on every frame (the naive way), on a
sequence made by warping a real face image with a smooth known head motion.

Tracking seeds dlib's shape predictor from the previous frame and re-detects every 10
frames; the ratio is naive time / tracked time (> 1 = tracking is faster).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from benchmarks._util import best_of, report


def moving_face(width: int, height: int, n: int = 30) -> list[np.ndarray]:
    """n frames of skimage's astronaut face under a smooth similarity motion."""
    import cv2

    from preprocess.synthetic.astronaut import astronaut_image, astronaut_landmarks

    img = np.ascontiguousarray(astronaut_image())
    lm = astronaut_landmarks()
    centre_src = lm.mean(axis=0)
    frames = []
    for k in range(n):
        angle = 5 * math.sin(k / 5)
        scale = (0.45 * height / 100.0) * (1 + 0.05 * math.sin(k / 7))
        A = cv2.getRotationMatrix2D((float(centre_src[0]), float(centre_src[1])), angle, scale)
        A[:, 2] += (width / 2 + 6 * math.sin(k / 4), height / 2 + 3 * math.cos(k / 6)) - centre_src
        frames.append(cv2.warpAffine(img, A, (width, height), borderMode=cv2.BORDER_REFLECT_101))
    return frames


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from preprocess.video_align import align_sequence

    results = {}
    for w, h in ((320, 240), (640, 360)):
        frames = moving_face(w, h)
        align_sequence(frames[:1])  # load the dlib models outside the timing
        naive = best_of(lambda: align_sequence(frames, redetect_every=1), args.repeat)
        tracked = best_of(lambda: align_sequence(frames, redetect_every=10), args.repeat)
        r = align_sequence(frames, redetect_every=10)
        ratio = naive / tracked
        report(f"video alignment {w}x{h}: detect every frame / tracking", ratio,
               f"{naive / len(frames) * 1e3:.1f} vs {tracked / len(frames) * 1e3:.1f} ms/frame; "
               f"{r.n_detections} detections, {r.n_tracked} tracked of {len(frames)}")
        results[f"{w}x{h}"] = {"naive_s": naive, "tracked_s": tracked, "ratio": ratio,
                               "detections": r.n_detections, "tracked": r.n_tracked}
    return results


if __name__ == "__main__":
    main()
