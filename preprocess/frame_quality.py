"""Per-frame quality measures of an aligned face sequence, for review (``fermaps qa``):
how big the face was in the input frame and how sharp its aligned crop is.

Why by hand: the Laplacian and the hull mask are OpenCV's; the choice of region and
the size measure are this module's.
"""
from __future__ import annotations

import cv2
import numpy as np

from data_schema.errors import InputError
from preprocess.landmarks import check_landmark_frames


def face_size(points68: np.ndarray) -> np.ndarray:
    """Side of each face's landmark bounding box, ``sqrt(width * height)``.

    points68 : (T, 68, 2) float, pixels of the input frame.
    Returns (T,) float32, pixels (0 for collapsed points).
    """
    p = check_landmark_frames(points68)
    span = p.max(axis=1) - p.min(axis=1)
    return np.sqrt(span[:, 0] * span[:, 1]).astype(np.float32)


def sharpness(frames: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each grey frame inside its landmarks' convex hull.

    frames : (T, S, S, 3) uint8 RGB aligned crops.
    points68 : (T, 68, 2) float, pixels of the aligned crops (x right, y down).
    Returns (T,) float32, grey level^2 (``cv2.Laplacian``, 3x3 aperture, on 0..255
    grey): a blurred or smeared face scores low.  Inside the hull only, so the black
    border of a warp and the background do not count.  0 where the hull holds fewer than
    9 pixels.  Absolute values depend on the face and the lighting; compare a frame with
    the other frames of its sequence.
    """
    f = np.asarray(frames)
    p = check_landmark_frames(points68)
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] != 3 or len(f) != len(p):
        raise InputError("frames", f"expected (T, S, S, 3) uint8 frames matching {len(p)} "
                                   f"landmark sets, got shape {f.shape} dtype {f.dtype}")
    out = np.zeros(len(f), np.float32)
    for i, (img, pts) in enumerate(zip(f, p)):
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
        mask = np.zeros(grey.shape, np.uint8)
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        # the outermost hull pixels see the edge of the face against the background
        mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
        vals = lap[mask > 0]
        if vals.size >= 9:
            out[i] = float(vals.astype(np.float64).var())
    return out
