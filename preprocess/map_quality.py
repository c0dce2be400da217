"""Quality measures of one scan's attribute maps, for checking the 3-D chain on real
scans (``fermaps check``, issue #13): is the registered face frontal, is its nose at
the centre of the map, how much of the map does it cover, is the shape index smooth.

Every function takes (H, W) arrays of one map and returns a float; a measure with no
pixel to average over is NaN (never an exception: the check reports it).  Rows run
top to bottom, columns left to right, as in ``preprocess.render``; depth is the
renderer's z in mm, larger = nearer the camera (the nose tip is the maximum).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _as_mask(valid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    valid = np.asarray(valid, bool)
    if valid.shape != shape or len(shape) != 2:
        raise ValueError(f"map and valid mask must be the same (H, W) shape, got {shape} and {valid.shape}")
    return valid


def asymmetry_mm(depth_mm: np.ndarray, valid: np.ndarray) -> float:
    """Mean |depth - mirrored depth| over the pixels valid on both sides, mm.

    The mirror flips the columns about the vertical centre line of the map (column
    c <-> W-1-c): a registered face looking along +Z with +Y up is left-right
    symmetric about that line, so a face turned about Y (or off-centre in x) scores
    high.  Each mirrored pair is counted from both sides, which leaves the mean as it is.

    depth_mm : (H, W) float, mm.  valid : (H, W) bool.  Returns NaN when no pixel is
    valid on both sides.
    """
    d = np.asarray(depth_mm, np.float64)
    v = _as_mask(valid, d.shape)
    both = v & v[:, ::-1]
    if not both.any():
        return float("nan")
    return float(np.abs(d - d[:, ::-1])[both].mean())


def masked_median(a: np.ndarray, valid: np.ndarray, radius_px: int = 1) -> np.ndarray:
    """Median over the valid pixels of the (2r+1)^2 window around each valid pixel.

    a : (H, W) float.  valid : (H, W) bool.  Returns (H, W) float64, NaN on invalid
    pixels.  Invalid neighbours (and those beyond the border) are left out, so the
    background never pulls the face's rim down.
    """
    a = np.asarray(a, np.float64)
    v = _as_mask(valid, a.shape)
    r = int(radius_px)
    h, w = a.shape
    padded = np.pad(np.where(v, a, np.nan), r, constant_values=np.nan)
    windows = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(2 * r + 1) for dx in range(2 * r + 1)])
    out = np.full(a.shape, np.nan)
    out[v] = np.nanmedian(windows[:, v], axis=0)  # a valid pixel has itself in its window
    return out


@dataclass(frozen=True)
class NoseOffset:
    """Where the most protruding point of a depth map is.

    row, col : float, px (pixel centres at integers; the centroid when several pixels tie).
    distance_px : float, px from the map centre ((W-1)/2, (H-1)/2); NaN on an empty map.
    """
    row: float
    col: float
    distance_px: float


def nose_offset(depth_mm: np.ndarray, valid: np.ndarray, smooth_radius_px: int = 1) -> NoseOffset:
    """The nose tip measured from the map itself: the maximum of the depth after a
    ``masked_median`` of radius ``smooth_radius_px`` (a lone spike of the scanner is
    not the nose), and its distance from the map centre.

    The crop puts the detected nose tip at the origin, which renders at the map centre,
    so this is an independent check of the nose detection and of the registration.
    depth_mm : (H, W) float, mm.  valid : (H, W) bool.
    """
    d = np.asarray(depth_mm, np.float64)
    v = _as_mask(valid, d.shape)
    if not v.any():
        return NoseOffset(float("nan"), float("nan"), float("nan"))
    s = masked_median(d, v, smooth_radius_px) if smooth_radius_px > 0 else np.where(v, d, np.nan)
    rows, cols = np.nonzero(s == np.nanmax(s))
    row, col = float(rows.mean()), float(cols.mean())
    h, w = d.shape
    return NoseOffset(row, col, float(np.hypot(row - (h - 1) / 2, col - (w - 1) / 2)))


def valid_fraction(valid: np.ndarray) -> float:
    """Valid pixels / all pixels of a (H, W) bool mask, in [0, 1]."""
    v = np.asarray(valid, bool)
    return float(v.mean()) if v.size else float("nan")


def horizontal_roughness(channel: np.ndarray, valid: np.ndarray) -> float:
    """Mean |C[r, c+1] - C[r, c]| over horizontally adjacent pixels that are both valid,
    in the channel's units (the shape index: [0, 1] per pixel step).

    The scanner's grid noise makes the shape index a checkerboard (issue #13: 0.17 at
    the old default); a smooth face gives small steps.  channel : (H, W) float.
    valid : (H, W) bool.  NaN when no two adjacent pixels are valid.
    """
    c = np.asarray(channel, np.float64)
    v = _as_mask(valid, c.shape)
    pair = v[:, 1:] & v[:, :-1]
    if not pair.any():
        return float("nan")
    return float(np.abs(np.diff(c, axis=1))[pair].mean())


@dataclass(frozen=True)
class MapQuality:
    """The measures of one scan's maps (see the functions of this module for units)."""
    asymmetry_mm: float
    nose_offset_px: float
    valid_fraction: float
    shape_index_roughness: float


def map_quality(depth_mm: np.ndarray, valid: np.ndarray, shape_index: np.ndarray,
                shape_index_valid: np.ndarray | None = None, smooth_radius_px: int = 1) -> MapQuality:
    """All measures of one map: depth_mm (H, W) mm and valid (H, W) bool for the
    asymmetry, nose offset and coverage; shape_index (H, W) in [0, 1] for the roughness,
    over ``shape_index_valid`` (default ``valid``) -- the pixels where it was computed."""
    si_valid = valid if shape_index_valid is None else shape_index_valid
    return MapQuality(asymmetry_mm=asymmetry_mm(depth_mm, valid),
                      nose_offset_px=nose_offset(depth_mm, valid, smooth_radius_px).distance_px,
                      valid_fraction=valid_fraction(valid),
                      shape_index_roughness=horizontal_roughness(shape_index, si_valid))
