"""FFNet-M landmark masks (seed ffnet_m, section 2.2, eq. 1-2).

Mask-1 has the size of the cropped texture I_t (56 x 56).  Each landmark L weights the
pixels P around it by

    d(P, L) = max(|Px - Lx|, |Py - Ly|)                    (eq. 1, Chebyshev)
    w(P, L) = 1 - 0.1 * (|Px - Lx| + |Py - Ly|)  if d <= 2, else 0   (eq. 2)

and a pixel takes the largest weight over all landmarks (the paper's rule for
overlaps); pixels near no landmark are 0.  Mask-2 (28 x 28) uses the landmark
coordinates divided by 2 and a 3 x 3 support.

Readings this module commits to (the paper leaves them open):

* Pixels P are integer pixel centres: column x, row y of the mask, the same pixel
  convention as the landmarks (x right, y down, pixel centres at integers).
* Landmarks are first rounded to the nearest pixel (half up: ``floor(x + 0.5)``).
  The paper speaks of "5 x 5 regions centered at each landmark"; without rounding, a
  landmark at x = 10.5 would cover only 4 columns and no pixel would reach weight 1.
  After rounding every landmark covers exactly 5 x 5 pixels with weights 1.0 at the
  centre, 0.9, 0.8, 0.7, 0.6 at Manhattan distance 1..4.
* Mask-2: each coordinate is divided by 2 exactly as the paper says (x / 2, not the
  pixel-centre-exact (x + 0.5) / 2 - 0.5), then rounded the same way; "3 x 3 centered
  at each landmark" is read as Chebyshev distance <= 1 with the same weight rule, so
  the weights are 1.0, 0.9 (edge neighbours) and 0.8 (corners).
* A landmark near or beyond the border contributes only its in-image pixels.

Why by hand: a dozen lines of numpy for the paper's exact weighting; no library has it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_schema.errors import InputError

MASK1_SIZE = 56
MASK2_SIZE = 28
MASK1_RADIUS = 2  # Chebyshev radius: 5 x 5 support
MASK2_RADIUS = 1  # 3 x 3 support
_INNER = slice(17, 68)


@dataclass(frozen=True)
class LandmarkMasks:
    """FFNet-M's two masks for one face.

    mask56 : (56, 56) float32 in [0, 1], mask-1.
    mask28 : (28, 28) float32 in [0, 1], mask-2.
    inner51 : (51, 2) float64, the 51 inner landmarks (iBUG 17..67) in pixels of the
        56 x 56 image the masks belong to.
    present51 : (51,) bool, which of them were used (all True unless the caller said
        some points are missing).
    """

    mask56: np.ndarray
    mask28: np.ndarray
    inner51: np.ndarray
    present51: np.ndarray


def _points(landmarks, item: str) -> np.ndarray:
    p = np.asarray(landmarks, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(item, f"expected (L, 2) landmarks, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(item, "NaN or infinite landmark coordinates")
    return p


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"mask size must be a positive integer, got {size!r}")
    return int(size)


def landmark_weight_mask(landmarks: np.ndarray, size: int, radius: int,
                         item: str = "landmarks") -> np.ndarray:
    """The eq. 2 weighting with a (2 radius + 1)^2 support, max over landmarks.

    landmarks : (L, 2) float pixels (x = column, y = row) of the mask itself; L may be 0.
    size : side of the square mask in pixels.
    radius : Chebyshev radius of each landmark's support (2 for mask-1, 1 for mask-2).
    Returns (size, size) float32: ``1 - 0.1 * |P - round(L)|_1`` within the support,
    the largest value where supports overlap, 0 elsewhere.
    Raises InputError for a wrong shape or NaN/inf coordinates.
    """
    size = _check_size(size)
    p = _points(landmarks, item)
    # Round half up, then clip far-away points to just outside the reach of the image so
    # that huge coordinates cannot overflow the integer conversion.
    c = np.clip(np.floor(p + 0.5), -radius - 1, size + radius).astype(np.int64)
    off = np.arange(-radius, radius + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    weight = 1.0 - 0.1 * (np.abs(dx) + np.abs(dy))
    px = c[:, 0, None] + dx[None, :]
    py = c[:, 1, None] + dy[None, :]
    inside = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    flat = np.zeros(size * size, dtype=np.float64)
    np.maximum.at(flat, (py * size + px)[inside],
                  np.broadcast_to(weight, px.shape)[inside])
    return flat.reshape(size, size).astype(np.float32)


def mask1(landmarks: np.ndarray, size: int = MASK1_SIZE, item: str = "landmarks") -> np.ndarray:
    """FFNet-M mask-1.

    landmarks : (L, 2) float pixels (x right, y down) on the size x size (56) image.
    Returns (size, size) float32 (5 x 5 support per landmark, see module docstring).
    """
    return landmark_weight_mask(landmarks, size, MASK1_RADIUS, item)


def mask2(landmarks: np.ndarray, size: int = MASK2_SIZE, item: str = "landmarks") -> np.ndarray:
    """FFNet-M mask-2.

    landmarks : (L, 2) float pixels on the 56 x 56 image (the same points as mask-1);
        they are divided by 2 here.
    Returns (size, size) float32 (3 x 3 support per halved landmark).
    """
    return landmark_weight_mask(_points(landmarks, item) / 2.0, size, MASK2_RADIUS, item)


def landmark_masks(points68: np.ndarray, *, present: np.ndarray | None = None,
                   image_size: int = MASK1_SIZE, item: str = "landmarks") -> LandmarkMasks:
    """Both FFNet-M masks from a face's 68 iBUG landmarks, using the 51 inner ones.

    points68 : (68, 2) float pixels (x right, y down, pixel centres at integers) on a
        square image of side ``image_size`` that shows the same crop as the 56 x 56
        texture; they are rescaled to 56 x 56 with the pixel-centre convention
        (``x' = (x + 0.5) * 56 / image_size - 0.5``).
    present : optional (68,) bool; points marked False (e.g. missing file landmarks)
        are left out of the masks.
    Returns LandmarkMasks(mask56 (56, 56) float32, mask28 (28, 28) float32,
    inner51 (51, 2) float64 in 56-pixel coordinates, present51 (51,) bool).
    Raises InputError for a wrong shape or NaN/inf coordinates.
    """
    p = _points(points68, item)
    if p.shape[0] != 68:
        raise InputError(item, f"expected 68 landmarks, got {p.shape[0]}")
    size = _check_size(image_size)
    if present is None:
        keep = np.ones(68, dtype=bool)
    else:
        keep = np.asarray(present, dtype=bool)
        if keep.shape != (68,):
            raise ValueError(f"present must be (68,) bool, got shape {keep.shape}")
    scaled = p if size == MASK1_SIZE else (p + 0.5) * (MASK1_SIZE / size) - 0.5
    inner, keep51 = scaled[_INNER], keep[_INNER].copy()
    used = inner[keep51]
    return LandmarkMasks(mask1(used, item=item), mask2(used, item=item), inner, keep51)
