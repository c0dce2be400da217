"""Per-item steps of the video branch on store records: align_video (raw_frames ->
aligned_frames) and sample_frames (aligned_frames -> frame_samples)."""
from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from data_schema.params import AlignVideoParams, SampleFramesParams

# The steps import their preprocess modules (cv2, dlib) themselves: the 3-D stages
# import this module through the stage table and should not pay for them.


def align_video_step(rec: dict, p: AlignVideoParams, item: str) -> dict:
    """raw_frames record -> aligned_frames record (all kept frames; sampling happens
    at training time)."""
    file_lm = None
    if p.use_file_landmarks and rec["has_landmarks"].all():
        file_lm = list(rec["landmarks68"].astype(np.float64))
    return align_frames(iter(rec["frames"]), file_lm, p, item)


def align_frames(frames: Iterator[np.ndarray], file_landmarks, p: AlignVideoParams,
                 item: str) -> dict:
    """Frames (read once, lazily) -> aligned_frames record: the aligned sequence plus
    per-frame head pose (preprocess.head_pose) and quality (preprocess.frame_quality).
    ``file_landmarks``: None or one (68, 2) array / Landmarks per frame."""
    from preprocess.frame_quality import face_size, sharpness
    from preprocess.head_pose import head_pose
    from preprocess.video_align import align_sequence

    a = align_sequence(frames, reference=p.reference, detector=p.detector,
                       file_landmarks=file_landmarks, redetect_every=p.redetect_every,
                       max_gap=p.max_gap, out_size=p.out_size, margin=p.margin,
                       upsample=p.upsample, source=item)
    pose = np.zeros((len(a.frame_index), 3), np.float32)
    for size in np.unique(a.frame_sizes, axis=0):      # one size per video, as a rule
        rows = np.flatnonzero((a.frame_sizes == size).all(axis=1))
        pose[rows] = head_pose(a.landmarks_in[rows], int(size[0]), int(size[1]))
    return {
        "frames": a.frames,
        "landmarks68": a.landmarks68.astype(np.float32),
        "transforms": a.transforms,
        "face_found": a.face_found,
        "interpolated": a.interpolated,
        "score": a.score.astype(np.float32),
        "frame_index": a.frame_index.astype(np.int64),
        "method": np.asarray(a.method, dtype=object),
        "head_pose": pose,
        "face_size": face_size(a.landmarks_in),
        "sharpness": sharpness(a.frames, a.landmarks68),
        "n_frames_in": np.int64(a.n_frames_in),
        "dropped": np.asarray(json.dumps([[int(i), r] for i, r in a.dropped]), dtype=object),
    }


def sample_frames_step(rec: dict, p: SampleFramesParams, item: str) -> dict:
    """aligned_frames record -> frame_samples record (evaluation indices)."""
    from preprocess.frame_sampling import hacn_segments, stcam_indices, wslgan_last3

    n = len(rec["frame_index"])
    peak = "middle" if (p.mmi_peak_middle and item.startswith("mmi/")) else "last"
    return {
        "stcam": stcam_indices(n, peak=peak),
        "hacn": hacn_segments(n, k=p.hacn_segments),
        "wslgan": wslgan_last3(n),
        "n_frames": np.int64(n),
    }
