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


def face_region(valid: np.ndarray) -> np.ndarray:
    """The pixels of the face region: those whose centres lie in the convex hull of the
    valid pixels' centres, its boundary included (pixel (r, c) has its centre at
    (r, c)).

    valid : (H, W) bool.  Returns (H, W) bool, a superset of ``valid``; all False when
    nothing is valid.  Valid pixels on one line (a hull of no area) give the pixels on
    the segment between the two end ones.
    """
    v = np.asarray(valid, bool)
    if v.ndim != 2:
        raise ValueError(f"valid must be an (H, W) mask, got shape {v.shape}")
    pts = np.argwhere(v).astype(np.float64)  # (row, col), row-major order
    out = np.zeros(v.shape, bool)
    if len(pts) == 0:
        return out
    (r0, c0), (r1, c1) = pts.min(axis=0).astype(int), pts.max(axis=0).astype(int)
    rows, cols = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    grid = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    if len(pts) < 3 or np.linalg.matrix_rank(pts - pts[0]) < 2:
        # collinear: argwhere's row-major order puts the two end points first and last
        d = pts[-1] - pts[0]
        rel = grid - pts[0]
        on_line = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0]) < 1e-9
        along = rel @ d
        inside = on_line & (along >= -1e-9) & (along <= d @ d + 1e-9)
    else:
        from scipy.spatial import ConvexHull

        eq = ConvexHull(pts).equations  # unit normal . x + offset <= 0 inside
        inside = (grid @ eq[:, :2].T + eq[:, 2] <= 1e-9).all(axis=1)
    out[r0:r1 + 1, c0:c1 + 1] = inside.reshape(rows.shape)
    return out


def hole_fraction(valid: np.ndarray) -> float:
    """Invalid pixels inside the face region / pixels of the face region, in [0, 1].

    The face region is :func:`face_region`, the convex hull of the valid pixels: a
    scanner's hole (eyes, nostrils, hair) is counted whether it is enclosed or cut into
    the outline (a missing cheek), which ``scipy.ndimage.binary_fill_holes`` would miss.
    The stair-stepped outline of a sphere-cropped face alone gives under 1 % (issue
    #13's four real scans, rendered 112 x 112 maps: 0.4-0.8 %).  valid : (H, W) bool.
    NaN when nothing is valid.
    """
    v = np.asarray(valid, bool)
    region = face_region(v)
    n = int(region.sum())
    return float((region & ~v).sum() / n) if n else float("nan")


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
