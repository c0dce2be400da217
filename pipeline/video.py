"""Per-item steps of the video branch on store records: align_video (raw_frames ->
aligned_frames) and sample_frames (aligned_frames -> frame_samples)."""
from __future__ import annotations

import json

import numpy as np

from data_schema.params import AlignVideoParams, SampleFramesParams

# The steps import their preprocess modules (cv2, dlib) themselves: the 3-D stages
# import this module through the stage table and should not pay for them.


def align_video_step(rec: dict, p: AlignVideoParams, item: str) -> dict:
    """raw_frames record -> aligned_frames record (all kept frames; sampling happens
    at training time)."""
    from preprocess.video_align import align_sequence

    frames = rec["frames"]
    file_lm = None
    if p.use_file_landmarks and rec["has_landmarks"].all():
        file_lm = list(rec["landmarks68"].astype(np.float64))
    a = align_sequence(iter(frames), reference=p.reference, detector=p.detector,
                       file_landmarks=file_lm, redetect_every=p.redetect_every,
                       max_gap=p.max_gap, out_size=p.out_size, margin=p.margin,
                       upsample=p.upsample, source=item)
    return {
        "frames": a.frames,
        "landmarks68": a.landmarks68.astype(np.float32),
        "transforms": a.transforms,
        "face_found": a.face_found,
        "interpolated": a.interpolated,
        "score": a.score.astype(np.float32),
        "frame_index": a.frame_index.astype(np.int64),
        "method": np.asarray(a.method, dtype=object),
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
