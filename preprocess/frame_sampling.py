"""Which frames of a face sequence each video model sees (STCAM, HACN, WS-LGAN).

The stores keep every aligned frame of a sequence; these functions pick frame indices
at training / evaluation time, and :func:`wslgan_view` makes WS-LGAN's 48 x 48 gray
face from one frame.  Index functions take a frame count and return ``int64`` index
arrays into ``0 .. n_frames - 1``; they are pure and deterministic given the
``numpy.random.Generator`` passed in (or an int seed for one).  ``n_frames < 1`` is a
caller bug (an empty sequence is rejected by the readers), so it raises ValueError.

Protocols and the readings this module commits to
-------------------------------------------------

STCAM (seed stcam, 4.2 "Frames selection"): "We down sampled every sequence into 7
frames ... we selected the neutral face (the first frame of the sequence) as the first
frame and the peak expression (the last frame of CK+ and Oulu-CASIA sequences, and the
middle frame of MMI) as the last frame, and then sampled evenly between the neutral
frame and the peak frame to obtain another 5 frames.  ... sample jittering was applied
to augment the training data during the training state."

* Peak index p: ``"last"`` -> ``n - 1``; ``"middle"`` -> ``n // 2`` (for an even
  count the upper of the two middle frames, i.e. (n - 1) / 2 rounded half up).
* "Evenly": index j (j = 0 .. k-1) is ``p * j / (k - 1)`` rounded half up, computed in
  exact integer arithmetic ``(2 p j + k - 1) // (2 (k - 1))``.  Half up, not numpy's
  round-half-to-even, so equal fractions always round the same way (n = 8:
  3.5 -> 4).  When p >= k - 1 the indices are strictly increasing; when the sequence is
  shorter (p < k - 1) frames repeat and the order is kept (n = 5, CK+ peak:
  0 1 1 2 3 3 4).  Frames after an MMI peak (the return to neutral) are never used.
* Jitter (:func:`stcam_jitter`): the neutral (first) frame and the peak stay fixed, they
  are the two frames the protocol names; each of the k - 2 inner indices moves by a
  uniform integer offset in ``[-max_shift, max_shift]`` restricted to its own window:
  between two neighbouring base indices a < b the frames up to ``(a + b) // 2``
  belong to the left one and the rest to the right one (a = b: both stay on their
  side of a).  The windows do not overlap, so any draw stays in ``[0, p]`` and keeps
  the order; a strictly increasing base stays strictly increasing (no frame is ever
  duplicated that the base did not already duplicate).  The paper gives no jitter
  size; ``max_shift`` (frames) is the caller's choice.

HACN (seed hacn, 3.1 eq. 1 and 4.2): "divide the processed video sequence into k
parts, randomly extract a frame from each part ... (1) In the case when N >= 5 ... the
video sequence is divided into 5 parts; in each part, one frame is randomly selected
... (2) in the case when N < 5, all the available frames are taken".

* Segment i (i = 0 .. k-1) is the half-open frame range
  ``[floor(i n / k), floor((i + 1) n / k))`` (:func:`hacn_segment_bounds`); lengths
  differ by at most one and the longer ones are spread over the sequence.
* Training (a generator given): one frame uniformly from each segment.  Evaluation
  (``rng=None``; the paper does not say, the centre is the deterministic choice): the
  centre frame ``(lo + hi) // 2``, the upper middle for even lengths (same rule as the
  MMI peak).  ``n < k``: all ``n`` frames in order (the paper's rule), so the result has
  n entries; the generator is then not used.

WS-LGAN (seed ws_lgan, IV-A/IV-B): "the last three frames of each sequence are used
for training and testing"; "face alignment is conducted to reduce variation in face
scale and in-plane rotation on each facial image based on the facial landmarks ...
The detected faces are cropped, resized and converted to 48x48 gray-scale images."

* :func:`wslgan_last3`: ``n - 3, n - 2, n - 1``; fewer than 3 frames repeat the last
  (n = 2: 0 1 1; n = 1: 0 0 0), always 3 entries.  WS-LGAN treats them as separate
  still images, so a caller that wants distinct images takes ``np.unique``.
* :func:`wslgan_view`: with landmarks, the in-plane rotation is removed by levelling
  the line through the two eye centres (iBUG 36-41 and 42-47), then the square around
  the landmark box (side = longer box side x (1 + 2 margin), same centre) is cut out,
  converted to gray (OpenCV's RGB->gray, BT.601 weights) and resized to size x size.
  Rotation and crop are one ``cv2.warpAffine`` (bilinear; with no rotation and an
  integer offset it is an exact copy), pixels outside the frame are black.  Shrinking
  uses ``cv2.INTER_AREA``; enlarging (a face smaller than 48 px) uses
  ``cv2.INTER_LINEAR`` because OpenCV's INTER_AREA degrades to near-nearest-neighbour
  when enlarging.  Without landmarks the frame is taken as an already aligned face:
  its central square is used.

Why by hand: these are a few lines of integer arithmetic fixing the papers' wording
into exact rules (rounding, repeats, windows); no library implements these
protocols.  Image work (colour conversion, warping, resizing) is OpenCV's.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from types import MappingProxyType

import cv2
import numpy as np

from data_schema.errors import InputError

#: STCAM's number of frames per clip.
STCAM_K = 7
#: HACN's number of segments (k = mean N in the paper's data).
HACN_K = 5
#: WS-LGAN's view size, pixels.
WSLGAN_SIZE = 48
#: Default margin around the landmark box, as a fraction of its longer side on each
#: side (the paper does not give one).
WSLGAN_MARGIN = 0.1

#: STCAM's peak position per dataset key: CK+ and Oulu-CASIA go neutral -> peak,
#: MMI goes neutral -> peak -> neutral.
STCAM_PEAK: Mapping[str, str] = MappingProxyType(
    {"ckplus": "last", "oulu": "last", "mmi": "middle"})

_PEAKS = ("last", "middle")
_RIGHT_EYE = slice(36, 42)  # iBUG 36-41: the subject's right eye (image left)
_LEFT_EYE = slice(42, 48)   # iBUG 42-47: the subject's left eye (image right)
_N_POINTS = 68
# Largest landmark box accepted, in frame sizes: a box far larger than the frame means
# the points are not in this frame's pixels (and the crop would allocate for nothing).
_MAX_BOX_FRAMES = 2.0
_MAX_MARGIN = 1.0


# ------------------------------------------------------------------ argument checks

def _count(n_frames, name: str = "n_frames", least: int = 1) -> int:
    """An integer >= least (numpy integers accepted), else ValueError/TypeError."""
    if isinstance(n_frames, bool):
        raise TypeError(f"{name} must be an integer, got {n_frames!r}")
    n = operator.index(n_frames)
    if n < least:
        raise ValueError(f"{name} must be >= {least}, got {n}")
    return n


def _generator(rng) -> np.random.Generator:
    """A Generator from a Generator (returned as is) or an int seed; None is refused
    because it would silently make the draw irreproducible."""
    if rng is None:
        raise TypeError("rng must be a numpy.random.Generator or an int seed, got None")
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, "
                    f"got {type(rng).__name__}")


# ------------------------------------------------------------------------- STCAM

def stcam_peak_index(n_frames: int, peak: str = "last") -> int:
    """Index of the peak frame: ``n - 1`` for ``"last"`` (CK+, Oulu-CASIA), ``n // 2``
    for ``"middle"`` (MMI; upper middle when n is even).

    n_frames : int >= 1.  Returns an int in ``[0, n_frames - 1]``.
    """
    n = _count(n_frames)
    if peak == "last":
        return n - 1
    if peak == "middle":
        return n // 2
    raise ValueError(f"peak must be one of {_PEAKS}, got {peak!r}")


def stcam_indices(n_frames: int, *, peak: str = "last", k: int = STCAM_K) -> np.ndarray:
    """STCAM's k frames: the neutral first frame, the peak, and k - 2 evenly between.

    "we selected the neutral face (the first frame of the sequence) as the first frame
    and the peak expression (the last frame of CK+ and Oulu-CASIA sequences, and the
    middle frame of MMI) as the last frame, and then sampled evenly between the neutral
    frame and the peak frame to obtain another 5 frames" (seed stcam, 4.2).

    n_frames : int >= 1, frames in the sequence.
    peak : ``"last"`` or ``"middle"`` (see :data:`STCAM_PEAK`).
    k : int >= 2, frames to return (7 in the paper).

    Returns (k,) int64, non-decreasing, ``out[0] == 0``, ``out[-1] ==`` the peak index;
    ``out[j] = round_half_up(p * j / (k - 1))``.  Short sequences (peak index < k - 1)
    repeat frames, order kept.
    """
    p = stcam_peak_index(n_frames, peak)
    k = _count(k, "k", 2)
    j = np.arange(k, dtype=np.int64)
    # floor(p j / (k-1) + 1/2) in exact integers: no float ties at .5
    return (2 * p * j + (k - 1)) // (2 * (k - 1))


def stcam_jitter(n_frames: int, rng, *, peak: str = "last", k: int = STCAM_K,
                 max_shift: int) -> np.ndarray:
    """STCAM's training-time "sample jittering" of :func:`stcam_indices`.

    The first (neutral) and the peak frame stay fixed; each inner index j moves by a
    uniform integer offset within ``[-max_shift, max_shift]`` restricted to its window
    (between base neighbours a < b, frames ``<= (a + b) // 2`` go to the left one, the
    others to the right one), so the result stays in ``[0, peak]`` and keeps the
    order.

    n_frames : int >= 1.
    rng : numpy.random.Generator (or an int seed); the only source of randomness.
    peak, k : as in :func:`stcam_indices`.
    max_shift : int >= 0, largest move of an inner index, frames (0: no jitter).

    Returns (k,) int64, non-decreasing, first 0, last the peak index, every entry
    within ``max_shift`` of the base index; strictly increasing whenever the base is.
    """
    gen = _generator(rng)
    shift = _count(max_shift, "max_shift", 0)
    base = stcam_indices(n_frames, peak=peak, k=k)
    a, b = base[:-1], base[1:]
    mid = (a + b) // 2
    # upper end of the left index of each pair / lower end of the right one
    up = mid
    down = np.where(a < b, mid + 1, b)
    inner = base[1:-1]
    lo = np.maximum(inner - shift, down[:-1])
    hi = np.minimum(inner + shift, up[1:])
    out = base.copy()
    if len(inner):
        out[1:-1] = gen.integers(lo, hi, endpoint=True, dtype=np.int64)
    return out


# -------------------------------------------------------------------------- HACN

def hacn_segment_bounds(n_frames: int, k: int = HACN_K) -> np.ndarray:
    """HACN's k equal segments as boundaries: segment i is frames
    ``bounds[i] .. bounds[i + 1] - 1`` with ``bounds[i] = floor(i * n / k)``.

    n_frames : int >= k (shorter sequences are not segmented: see
    :func:`hacn_segments`).  k : int >= 1.
    Returns (k + 1,) int64, ``bounds[0] == 0``, ``bounds[-1] == n_frames``, every
    segment 1 or more frames, lengths differing by at most one.
    """
    n = _count(n_frames)
    k = _count(k, "k")
    if n < k:
        raise ValueError(f"cannot split {n} frames into {k} non-empty segments")
    return (np.arange(k + 1, dtype=np.int64) * n) // k


def hacn_segments(n_frames: int, k: int = HACN_K, rng=None) -> np.ndarray:
    """HACN's frames: one per segment of k equal segments.

    "We divide the processed video sequence into k parts, randomly extract a frame from
    each part ... in the case when N < 5, all the available frames are taken as the
    extracted frame" (seed hacn, 3.1).

    n_frames : int >= 1.  k : int >= 1 (5 in the paper).
    rng : None for evaluation (the centre frame ``(lo + hi) // 2`` of each segment
        ``[lo, hi)``), or a numpy.random.Generator / int seed for training (one frame
        uniformly from each segment).

    Returns (k,) int64 strictly increasing, entry i inside segment i
    (:func:`hacn_segment_bounds`); when n_frames < k, (n_frames,) int64 ``0 .. n - 1``
    (the generator is not used then).
    """
    n = _count(n_frames)
    k = _count(k, "k")
    gen = None if rng is None else _generator(rng)
    if n < k:
        return np.arange(n, dtype=np.int64)
    bounds = hacn_segment_bounds(n, k)
    lo, hi = bounds[:-1], bounds[1:]
    if gen is None:
        return (lo + hi) // 2
    return gen.integers(lo, hi, dtype=np.int64)


# ------------------------------------------------------------------------ WS-LGAN

def wslgan_last3(n_frames: int) -> np.ndarray:
    """WS-LGAN's frames: "the last three frames of each sequence" (seed ws_lgan, IV-A).

    n_frames : int >= 1.  Returns (3,) int64 ``[n-3, n-2, n-1]``; with fewer than 3
    frames the last frame repeats (n = 2: ``[0, 1, 1]``; n = 1: ``[0, 0, 0]``).
    """
    n = _count(n_frames)
    # shift 0 .. 2 to the end of the sequence, then cap at the last frame
    return np.minimum(np.arange(3, dtype=np.int64) + max(n - 3, 0), n - 1)


def _frame(frame, item: str) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise InputError(item, f"expected uint8 pixels, got {a.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise InputError(item, f"expected an (H, W, 3) RGB or (H, W) gray frame, "
                               f"got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(item, f"empty frame: shape {a.shape}")
    return np.ascontiguousarray(a)


def _points(landmarks, present, item: str) -> tuple[np.ndarray, np.ndarray]:
    """The (68, 2) float64 points and (68,) bool presence mask, checked."""
    p = np.asarray(landmarks, dtype=np.float64)
    if p.shape != (_N_POINTS, 2):
        raise InputError(item, f"wrong landmark count: expected (68, 2) points, "
                               f"got shape {p.shape}")
    if present is None:
        m = np.ones(_N_POINTS, dtype=bool)
    else:
        m = np.asarray(present)
        if m.shape != (_N_POINTS,) or m.dtype != bool:
            raise ValueError(f"present must be a (68,) bool mask, got {m.dtype} {m.shape}")
    if not np.isfinite(p[m]).all():
        raise InputError(item, "NaN or infinite landmark coordinates")
    if m.sum() < 2:
        raise InputError(item, f"only {int(m.sum())} landmark(s) present: no face box")
    return p, m


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape == (size, size):
        return img
    shrink = img.shape[0] >= size and img.shape[1] >= size
    return cv2.resize(img, (size, size),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def wslgan_view(frame: np.ndarray, landmarks: np.ndarray | None = None,
                size: int = WSLGAN_SIZE, *, margin: float = WSLGAN_MARGIN,
                present: np.ndarray | None = None, level_eyes: bool = True,
                item: str = "frame") -> np.ndarray:
    """WS-LGAN's input: one face, aligned, cropped, gray, size x size.

    "face alignment is conducted to reduce variation in face scale and in-plane
    rotation on each facial image based on the facial landmarks ... The detected faces
    are cropped, resized and converted to 48x48 gray-scale images" (seed ws_lgan, IV-B).

    frame : (H, W, 3) uint8 RGB or (H, W) uint8 gray.
    landmarks : (68, 2) float pixels (x right, y down, pixel centres at integers,
        iBUG-68 order), or None when the frame is already an aligned face crop (then its
        central square is used).
    size : int >= 1, output side, pixels (48 in the paper).
    margin : float in [0, 1], added on each side of the landmark box as a fraction of
        its longer side (box side counts pixels: ``max - min + 1``).
    present : (68,) bool or None; rows that are False (missing file points, held as
        0.0 by :class:`preprocess.landmarks.LandmarkResult`) are ignored.
    level_eyes : rotate about the box centre so the line through the two eye centres
        (means of the present iBUG 36-41 and 42-47) is horizontal; skipped when an eye
        has no present point.
    item : name used in InputError messages (the sequence / frame id).

    Returns (size, size) uint8 gray.  Raises InputError for a frame that is not a
    uint8 image, landmarks of the wrong shape, NaN/inf coordinates, fewer than two
    present points, a landmark box of one pixel, larger than twice the frame, or
    lying wholly outside the frame.
    """
    img = _frame(frame, item)
    size = _count(size, "size")
    if not (math.isfinite(margin) and 0.0 <= margin <= _MAX_MARGIN):
        raise ValueError(f"margin must be in [0, {_MAX_MARGIN}], got {margin!r}")
    h, w = img.shape[:2]
    if landmarks is None:
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        return _resize(_gray(img[y0:y0 + side, x0:x0 + side]), size)

    pts, m = _points(landmarks, present, item)
    use = pts[m]
    pmin, pmax = use.min(axis=0), use.max(axis=0)
    if (pmax - pmin).max() < 1.0:
        raise InputError(item, "degenerate landmark box: all points within one pixel")
    if pmax[0] < -0.5 or pmin[0] > w - 0.5 or pmax[1] < -0.5 or pmin[1] > h - 0.5:
        raise InputError(item, f"landmark box lies outside the {w}x{h} frame")
    centre = (pmin + pmax) / 2.0
    angle = 0.0
    if level_eyes and m[_RIGHT_EYE].any() and m[_LEFT_EYE].any():
        d = (pts[_LEFT_EYE][m[_LEFT_EYE]].mean(axis=0)
             - pts[_RIGHT_EYE][m[_RIGHT_EYE]].mean(axis=0))
        if np.hypot(*d) > 0:
            angle = math.atan2(d[1], d[0])
    c, s = math.cos(angle), math.sin(angle)
    # levelled points q = centre + R(-angle)(p - centre); a frame pixel p of output q is
    # centre + R(angle)(q - centre)
    rot = np.array([[c, s], [-s, c]])
    lev = (use - centre) @ rot.T + centre
    lo, hi = lev.min(axis=0), lev.max(axis=0)
    box = float((hi - lo).max()) + 1.0
    if box > _MAX_BOX_FRAMES * max(h, w):
        raise InputError(item, f"landmark box of {box:.0f} px is larger than twice the "
                               f"{w}x{h} frame: landmarks not in this frame's pixels")
    bc = (lo + hi) / 2.0
    side = max(2, math.floor(box * (1.0 + 2.0 * margin) + 0.5))
    first = bc - (side - 1) / 2.0  # levelled coordinates of output pixel (0, 0)
    # output (i, j) -> levelled q = first + (i, j) -> frame p = centre + R(angle)(q - centre)
    back = np.array([[c, -s], [s, c]])
    t = centre + back @ (first - centre)
    inv = np.array([[back[0, 0], back[0, 1], t[0]],
                    [back[1, 0], back[1, 1], t[1]]])
    crop = cv2.warpAffine(img, inv, (side, side),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _resize(_gray(crop), size)
