"""FFNet-M depth-map cleaning (seed ffnet_m, section 2.2): outlier removal, hole
filling, 3x3 Gaussian denoising, and normals from the cleaned depth.

Depth maps here are (H, W) arrays of z in mm as :func:`preprocess.render.
render_orthographic` makes them: x to the right along columns, y UP, so image rows
go DOWN in y; square pixels of ``pixel_size_mm``.  Off-face pixels are 0 with
``valid`` False; NaN/inf anywhere in an input depth is treated as invalid.

What is hand-written, and why (no well-kept library does these exact steps):

* The outlier test is the paper's 8-neighbour rule, which no library implements;
  it is vectorised numpy over the 8 shifted copies of the map.
* Hole filling uses scipy's ``CloughTocher2DInterpolator`` (the piecewise-cubic,
  C1 scattered-data counterpart of bicubic interpolation: bicubic on the grid needs
  all 16 neighbours, which a hole lacks); only the choice of support pixels and the
  fallback are written here, plus the triangulation's barycentric transforms in
  closed form (:func:`_delaunay`).
* No LAPACK on tiny systems (the 2 x 2 transforms, the 3 x 3 border planes): on a
  busy machine OpenBLAS's thread pool stalled such calls by up to 1.7 s each.
* The Gaussian is ``scipy.ndimage.correlate`` used as a normalised convolution
  (divide by the smoothed mask) so that background zeros do not bleed into the
  face border; on border pixels (window not all face) it takes the centre of the
  Gaussian-weighted least-squares plane instead, which removes the one-sided slope
  bias of the normalised average (border-ring normals of the test paraboloid: 15
  deg off with the plain normalised average, 0.7 deg with the plane).
* Normals are central differences with one-sided differences at the face border.

Reading of the paper's outlier rule ("if the depth difference between the center
point and its neighbors is greater than 0.6 sigma, with sigma the standard
deviation of the eight neighbors"), stated exactly:

    outlier  <=>  |z - m| > k * max(sigma, sigma_floor_mm)

* neighbours = the valid pixels of the 8-neighbourhood (off-face / invalid ones are
  ignored); sigma = their population standard deviation (ddof = 0).
* m = the value at the centre pixel of the least-squares plane through the valid
  neighbours.  When the valid neighbours are centrally symmetric (all 8 of them:
  every interior pixel) this is exactly their mean, i.e. the paper's rule; it
  differs only where the neighbours are one-sided (face border, hole edges), where
  the plain mean is off by about slope x pixel and would flag the border of a
  sloped face (216 of the 7860 pixels of the test sphere cap, all on its border;
  none with the plane).  When the valid neighbours are collinear the plane is undefined
  and m is their mean.
* sigma_floor_mm (default 0.5 mm): on a flat or smooth patch sigma is ~0 and
  every pixel with any noise or curvature would be an outlier (at the apex of a
  paraboloid |z - mean| = 3 sigma exactly); the floor makes the smallest removable
  spike k * floor = 0.3 mm by default.
* pixels with fewer than ``min_neighbours`` (default 3) valid neighbours are not
  judged and stay valid: their statistics mean nothing.
* one pass, as in the paper: isolated spikes and small clusters (two adjacent
  spikes still give |z - m| ~ 2.6 sigma) are found; a plateau of many spikes is not.
* :func:`clean_depth` refills the outliers enclosed by the face and drops those on
  its outline (grazing-angle silhouette pixels flag as spikes: 40 of the 280 rim
  pixels of a hemisphere sampled up to its silhouette), see its docstring.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.interpolate import CloughTocher2DInterpolator
from scipy.spatial import Delaunay, QhullError

from data_schema.errors import InputError

#: Row/column offsets of the 8 neighbours.
_OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


class Outliers(NamedTuple):
    """Result of :func:`remove_outliers` (unpacks as ``depth, valid, outliers``).

    depth : (H, W) float32 mm, 0 where not valid.
    valid : (H, W) bool, input valid (and finite) minus the outliers.
    outliers : (H, W) bool, the pixels removed.
    """

    depth: np.ndarray
    valid: np.ndarray
    outliers: np.ndarray


@dataclass(frozen=True)
class CleanedDepth:
    """Result of :func:`clean_depth`.

    depth : (H, W) float32 mm, cleaned; 0 off the face.
    normals : (3, H, W) float32 unit normals (nx, ny, nz) from the cleaned depth; 0
        off the face.
    valid : (H, W) bool, the face mask: every pixel in it has a depth now.
    outliers : (H, W) bool, pixels the outlier test removed (refilled when inside
        the face mask, else dropped: valid False).
    n_outliers : int, outliers.sum().
    n_filled : int, pixels filled by interpolation (holes + removed outliers).
    """

    depth: np.ndarray
    normals: np.ndarray
    valid: np.ndarray
    outliers: np.ndarray
    n_outliers: int
    n_filled: int


# --------------------------------------------------------------------------- checks

def _depth_and_mask(depth, mask, name: str, item) -> tuple[np.ndarray, np.ndarray]:
    """float64 depth with non-finite -> 0, and bool mask & finite."""
    d = np.asarray(depth, dtype=np.float64)
    m = np.asarray(mask)
    if d.ndim != 2 or d.size == 0:
        raise InputError(item, f"depth must be a non-empty (H, W) array, got {d.shape}")
    if m.shape != d.shape:
        raise InputError(item, f"{name} must be {d.shape}, got {m.shape}")
    if m.dtype != bool:
        raise InputError(item, f"{name} must be bool, got {m.dtype}")
    finite = np.isfinite(d)
    return np.where(finite, d, 0.0), m & finite


def _shifted(a: np.ndarray, dr: int, dc: int, fill) -> np.ndarray:
    """b[r, c] = a[r + dr, c + dc], ``fill`` outside the image."""
    h, w = a.shape
    out = np.full_like(a, fill)
    out[max(0, -dr):h - max(0, dr), max(0, -dc):w - max(0, dc)] = \
        a[max(0, dr):h - max(0, -dr), max(0, dc):w - max(0, -dc)]
    return out


def _plane_at_centre(z: np.ndarray, w: np.ndarray, offsets, fallback: np.ndarray,
                     where: np.ndarray) -> np.ndarray:
    """Value at the centre pixel of the weighted least-squares plane
    z ~ a + b*dc + c*dr through the (K, H, W) samples ``z`` at ``offsets`` with
    weights ``w``, at the pixels ``where``; ``fallback`` elsewhere and where the
    weighted samples are collinear (plane undefined).

    The Gram matrix A = sum w [1 dc dr]^T [1 dc dr] is singular for collinear
    samples (det at rounding level, ~1e-16 trace^3) and otherwise has det >=
    (smallest non-zero weight)^3 (Cauchy-Binet: integer offsets give integer
    minors), so det > 1e-12 trace^3 separates the two for any weight >= 1e-3.
    """
    out = fallback.copy()
    if not where.any():
        return out
    basis = np.array([[1.0, dc, dr] for dr, dc in offsets])           # (K, 3)
    wz, ww = z[:, where], w[:, where]                                 # (K, P)
    A = np.einsum("kp,ki,kj->ijp", ww, basis, basis)                  # (3, 3, P)
    rhs = np.einsum("kp,ki->ip", ww * wz, basis)                      # (3, P)
    # Only the constant term a is wanted: Cramer's rule with the cofactors of row 0
    # (A symmetric).  Closed form instead of np.linalg: LAPACK calls on thousands of
    # 3x3 systems were measured to stall for up to a second when OpenBLAS's threads
    # compete for a busy machine's cores.
    c0 = A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1]
    c1 = A[1, 2] * A[2, 0] - A[1, 0] * A[2, 2]
    c2 = A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]
    det = A[0, 0] * c0 + A[0, 1] * c1 + A[0, 2] * c2
    ok = det > 1e-12 * (A[0, 0] + A[1, 1] + A[2, 2]) ** 3
    vals = out[where]
    vals[ok] = ((c0 * rhs[0] + c1 * rhs[1] + c2 * rhs[2])[ok]) / det[ok]
    out[where] = vals
    return out


def _positive(x, name, item) -> float:
    x = float(x)
    if not (np.isfinite(x) and x > 0):
        raise InputError(item, f"{name} must be > 0, got {x}")
    return x


# ------------------------------------------------------------------------- outliers

def remove_outliers(depth, valid, k: float = 0.6, *, sigma_floor_mm: float = 0.5,
                    min_neighbours: int = 3, item: str = "depth") -> Outliers:
    """Drop pixels that differ from their 8 neighbours by more than k sigma.

    depth : (H, W) float, mm; NaN/inf are treated as invalid.
    valid : (H, W) bool.
    k : float > 0, threshold in units of the neighbours' sigma (paper: 0.6).
    sigma_floor_mm : float >= 0, mm, lower bound on sigma (see the module docstring).
    min_neighbours : 1..8, pixels with fewer valid neighbours are not judged.
    Returns :class:`Outliers` ``(depth, valid, outliers)``; the exact rule is in the
    module docstring.
    """
    k = _positive(k, "k", item)
    if not (np.isfinite(sigma_floor_mm) and sigma_floor_mm >= 0):
        raise InputError(item, f"sigma_floor_mm must be >= 0, got {sigma_floor_mm}")
    if not 1 <= int(min_neighbours) <= 8:
        raise InputError(item, f"min_neighbours must be in 1..8, got {min_neighbours}")
    d, v = _depth_and_mask(depth, valid, "valid", item)

    z = np.stack([_shifted(d, dr, dc, 0.0) for dr, dc in _OFFSETS])      # (8, H, W)
    m = np.stack([_shifted(v, dr, dc, False) for dr, dc in _OFFSETS]).astype(np.float64)
    cnt = m.sum(axis=0)
    safe = np.maximum(cnt, 1.0)
    mean = (m * z).sum(axis=0) / safe
    sigma = np.sqrt((m * (z - mean) ** 2).sum(axis=0) / safe)

    judged = v & (cnt >= int(min_neighbours))
    # Only one-sided neighbourhoods need the plane: for a full (symmetric) one
    # its centre value is the mean.
    centre = _plane_at_centre(z, m, _OFFSETS, mean, judged & (cnt < 8))

    thresh = k * np.maximum(sigma, float(sigma_floor_mm))
    outliers = judged & (np.abs(d - centre) > thresh)
    keep = v & ~outliers
    return Outliers(depth=np.where(keep, d, 0.0).astype(np.float32), valid=keep,
                    outliers=outliers)


# ---------------------------------------------------------------------- hole filling

def _in_general_position(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N, 2) float pixel positions moved by a fixed per-pixel offset below 1e-3 px.

    Pixel centres form a regular grid whose 2 x 2 blocks are cocircular: the Delaunay
    triangulation is not unique and Qhull spends most of its time on the degeneracy
    (measured 45 ms against 6 ms for 3,200 ring pixels).  The offset is a hash of the
    pixel position, so results do not depend on the run or on the order of points.
    """
    def frac(a):
        return a - np.floor(a)
    u = frac(np.sin(rows * 12.9898 + cols * 78.233) * 43758.5453) - 0.5
    v = frac(np.sin(rows * 39.3468 + cols * 11.135) * 24634.6345) - 0.5
    return np.column_stack([rows + 1e-3 * u, cols + 1e-3 * v]).astype(float)


def _delaunay(points: np.ndarray) -> Delaunay:
    """scipy Delaunay triangulation of (N, 2) points with its barycentric transforms
    (what the interpolators read) already filled in by closed-form 2 x 2 inverses.

    scipy computes them lazily with one LAPACK call per triangle; on a busy machine
    OpenBLAS's thread pool was measured to stall those calls by up to 1.7 s each time
    the pool wakes (300 rings: 4-13 s against 0.03 s with one BLAS thread).  The values
    are the same up to rounding; if scipy ever renames its cache attribute this only
    loses the speed.  Triangles with reciprocal condition number below machine epsilon
    get NaN, as in scipy.
    """
    tri = Delaunay(points)
    if getattr(tri, "_transform", 0) is None:
        p = tri.points[tri.simplices]                          # (S, 3 corners, 2)
        r2 = p[:, 2]
        a, b = p[:, 0, 0] - r2[:, 0], p[:, 1, 0] - r2[:, 0]    # T = [[a, b], [c, d]]:
        c, d = p[:, 0, 1] - r2[:, 1], p[:, 1, 1] - r2[:, 1]    # columns r0 - r2, r1 - r2
        det = a * d - b * c
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], 1) / det[:, None, None]
            norm_t = np.maximum(np.abs(a) + np.abs(c), np.abs(b) + np.abs(d))
            norm_i = np.maximum(np.abs(d) + np.abs(c), np.abs(b) + np.abs(a)) / np.abs(det)
            bad = ~(1.0 / (norm_t * norm_i) >= np.finfo(float).eps)
        out = np.concatenate([inv, r2[:, None, :]], axis=1)    # (S, 3, 2)
        out[bad] = np.nan
        tri._transform = out
    return tri


def _cubic_centre_weights() -> np.ndarray:
    """(5, 5) weights: the value at the centre of the least-squares bivariate cubic
    through the 24 other pixels of a 5 x 5 window (centre weight 0)."""
    offs = [(r, c) for r in range(-2, 3) for c in range(-2, 3) if (r, c) != (0, 0)]
    a = np.array([[1, c, r, c * c, c * r, r * r, c ** 3, c * c * r, c * r * r, r ** 3] for r, c in offs], float)
    w = np.zeros((5, 5))
    for (r, c), wi in zip(offs, np.linalg.pinv(a)[0]):
        w[r + 2, c + 2] = wi
    return w


_CUBIC_CENTRE = _cubic_centre_weights()
_RING5 = np.ones((5, 5))
_RING5[2, 2] = 0.0


def fill_holes(depth, valid, face_mask, *, radius: int = 3,
               item: str = "depth") -> np.ndarray:
    """Fill the invalid pixels inside the face by piecewise-cubic interpolation.

    depth : (H, W) float, mm; NaN/inf count as invalid.
    valid : (H, W) bool, pixels whose depth is trusted.
    face_mask : (H, W) bool, the face region; holes = face_mask & ~valid.  Pixels
        outside it are background: never filled, returned as 0 (a valid pixel
        outside face_mask is background too).  A usual mask is
        ``scipy.ndimage.binary_fill_holes(valid)``, the filled outline.
    radius : int >= 1, each 8-connected hole is interpolated from the valid face
        pixels within this many pixels (Chebyshev) of it.

    A one-pixel hole whose 5 x 5 neighbourhood is complete takes the centre value of
    the least-squares cubic through its 24 neighbours (fixed weights).  Every other
    hole gets ``CloughTocher2DInterpolator`` over its support ring (C1
    piecewise cubic, the scattered-data analogue of the paper's bicubic).  Hole
    pixels outside the ring's convex hull (holes touching the face border) or with
    a degenerate ring (< 3 or collinear points) take the depth of the nearest valid
    face pixel.  Returns (H, W) float32 mm, finite; 0 off the face.
    Raises InputError when the face has holes but no valid pixel at all.
    """
    d, v = _depth_and_mask(depth, valid, "valid", item)       # v excludes NaN/inf
    fm = np.asarray(face_mask)
    if fm.shape != d.shape or fm.dtype != bool:
        raise InputError(item, f"face_mask must be bool {d.shape}, got {fm.dtype} {fm.shape}")
    support = v & fm
    holes = fm & ~support
    out = np.where(support, d, 0.0)
    if not holes.any():
        return out.astype(np.float32)
    if not support.any():
        raise InputError(item, "face mask has holes but no valid depth to fill them from")
    radius = int(radius)
    if radius < 1:
        raise InputError(item, f"radius must be >= 1, got {radius}")

    # Nearest valid face pixel of every pixel: the fallback.
    _, (near_r, near_c) = ndimage.distance_transform_edt(~support, return_indices=True)
    labels, n = ndimage.label(holes, structure=np.ones((3, 3), bool))
    h, w = d.shape
    # One-pixel holes with a complete 5 x 5 neighbourhood (most holes: single outliers)
    # take the value of the least-squares cubic through their 24 neighbours at the
    # centre, a fixed weighted average (the paper's "weighted average of the nearest
    # neighbours"); building a triangulation for each of them costs ~0.3 ms a hole.
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    full = ndimage.correlate(support.astype(np.float64), _RING5, mode="constant") > 23.5
    single = holes & (sizes[labels] == 1) & full
    if single.any():
        smooth = ndimage.correlate(np.where(support, d, 0.0), _CUBIC_CENTRE, mode="constant")
        out[single] = smooth[single]
    done = np.zeros(n + 1, bool)
    done[np.unique(labels[single])] = True
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if done[lab]:
            continue
        r0, r1 = max(sl[0].start - radius, 0), min(sl[0].stop + radius, h)
        c0, c1 = max(sl[1].start - radius, 0), min(sl[1].stop + radius, w)
        comp = labels[r0:r1, c0:c1] == lab
        ring = ndimage.binary_dilation(comp, structure=np.ones((3, 3), bool),
                                       iterations=radius) & support[r0:r1, c0:c1]
        qr, qc = np.nonzero(comp)
        vals = np.full(len(qr), np.nan)
        pr, pc = np.nonzero(ring)
        if len(pr) >= 3:
            try:
                # Triangulate first: handing the raw points to the interpolator
                # was measured ~20x slower per ring here (scipy 1.17; clean_depth
                # with 300 spikes: 1.7 s against 0.1 s).
                tri = _delaunay(_in_general_position(pr + r0, pc + c0) - (r0, c0))
                ct = CloughTocher2DInterpolator(tri, d[r0:r1, c0:c1][pr, pc])
                vals = ct(np.column_stack([qr, qc]).astype(float))
            except (QhullError, ValueError):      # collinear support: fall back
                pass
        gr, gc = qr + r0, qc + c0
        miss = ~np.isfinite(vals)
        vals[miss] = d[near_r[gr[miss], gc[miss]], near_c[gr[miss], gc[miss]]]
        out[gr, gc] = vals
    return out.astype(np.float32)


# ---------------------------------------------------------------------- smoothing

def gaussian_3x3(depth, face_mask, sigma: float = 1.0, *, border: str = "plane",
                 item: str = "depth") -> np.ndarray:
    """3x3 Gaussian smoothing of the face pixels only (paper: window 3x3, sigma 1).

    depth : (H, W) float, mm; must be finite on face_mask.
    face_mask : (H, W) bool.
    sigma : float > 0, in pixels.
    border : ``"plane"`` or ``"mean"``, what a face pixel whose 3x3 window is not all
        face (the face border, the image edge) gets.

    Weights g = exp(-(dr^2 + dc^2) / (2 sigma^2)) over the face pixels of the window
    only, so off-face pixels (and the image border) carry no weight.  A pixel with a
    full window gets the plain Gaussian average sum(g z) / sum(g).  On the border,
    ``"mean"`` gives the normalised average sum(g z mask) / sum(g mask), which on a
    slope is off by ~ slope x 0.3 pixel because the window is one-sided (on the test
    paraboloid this tilts the border-ring normals by up to 15 deg); ``"plane"``
    (default) gives the centre value of the g-weighted least-squares plane through
    the window's face pixels, which equals the Gaussian average for a full window
    and removes the one-sided slope bias; collinear windows fall back to "mean".
    Returns (H, W) float32 mm, 0 off the face.  Raises InputError on NaN/inf inside
    the face.
    """
    sigma = _positive(sigma, "sigma", item)
    if border not in ("plane", "mean"):
        raise InputError(item, f"border must be 'plane' or 'mean', got {border!r}")
    raw = np.asarray(depth, dtype=np.float64)
    d, fm = _depth_and_mask(raw, face_mask, "face_mask", item)
    if (np.asarray(face_mask) & ~np.isfinite(raw)).any():
        raise InputError(item, "depth is NaN/inf inside the face mask")
    r = np.arange(-1, 2)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    mf = fm.astype(np.float64)
    num = ndimage.correlate(d * mf, g, mode="constant", cval=0.0)
    den = ndimage.correlate(mf, g, mode="constant", cval=0.0)
    # A face pixel has itself in its window, so den >= g[1, 1] = 1 there.
    out = np.where(fm, num / np.where(fm, den, 1.0), 0.0)
    if border == "plane":
        full = ndimage.correlate(mf, np.ones((3, 3)), mode="constant", cval=0.0) > 8.5
        offs = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
        z = np.stack([_shifted(d, dr, dc, 0.0) for dr, dc in offs])
        w = np.stack([g[dr + 1, dc + 1] * _shifted(mf, dr, dc, 0.0) for dr, dc in offs])
        out = _plane_at_centre(z, w, offs, out, fm & ~full)
    return out.astype(np.float32)


# ------------------------------------------------------------------------- normals

def normals_from_depth(depth, face_mask, pixel_size_mm: float, *,
                       item: str = "depth") -> np.ndarray:
    """Unit surface normals of z(x, y) from a depth map.

    depth : (H, W) float, mm; must be finite on face_mask.
    face_mask : (H, W) bool.
    pixel_size_mm : float > 0.
    x grows with the column, y grows UP, i.e. with decreasing row, so
    dz/dx = (z[r, c+1] - z[r, c-1]) / (2 h) and dz/dy = (z[r-1, c] - z[r+1, c]) / (2 h)
    (central differences); where one neighbour is off the face the one-sided
    difference is used, where both are, the derivative is 0.  The normal is
    (-dz/dx, -dz/dy, 1) / norm, pointing to +Z (the camera).
    Returns (3, H, W) float32 (nx, ny, nz); 0 off the face.
    """
    h = _positive(pixel_size_mm, "pixel_size_mm", item)
    raw = np.asarray(depth, dtype=np.float64)
    d, fm = _depth_and_mask(raw, face_mask, "face_mask", item)
    if (np.asarray(face_mask) & ~np.isfinite(raw)).any():
        raise InputError(item, "depth is NaN/inf inside the face mask")

    def derivative(fwd: tuple[int, int], bwd: tuple[int, int]) -> np.ndarray:
        """dz per mm towards the ``fwd`` neighbour (opposite the ``bwd`` one)."""
        zf, mf = _shifted(d, *fwd, 0.0), _shifted(fm, *fwd, False)
        zb, mb = _shifted(d, *bwd, 0.0), _shifted(fm, *bwd, False)
        return np.select([mf & mb, mf, mb],
                         [(zf - zb) / (2 * h), (zf - d) / h, (d - zb) / h], 0.0)

    dzdx = derivative((0, 1), (0, -1))       # +x: next column
    dzdy = derivative((-1, 0), (1, 0))       # +y: previous row (rows go down)
    n = np.stack([-dzdx, -dzdy, np.ones_like(d)])
    n /= np.linalg.norm(n, axis=0)
    n[:, ~fm] = 0.0
    return n.astype(np.float32)


# ------------------------------------------------------------------------ pipeline

def clean_depth(depth, valid, pixel_size_mm: float, *, face_mask=None, k: float = 0.6,
                sigma_floor_mm: float = 0.5, min_neighbours: int = 3,
                fill_radius: int = 3, sigma: float = 1.0, passes: int = 1,
                item: str = "depth") -> CleanedDepth:
    """FFNet-M 2.2 cleaning: remove_outliers -> fill_holes -> gaussian_3x3 -> normals.

    depth : (H, W) float, mm (e.g. ``Rendering.depth``); NaN/inf = invalid.
    valid : (H, W) bool.
    pixel_size_mm : float > 0.
    face_mask : (H, W) bool, or None for the filled outline of the valid pixels
        AFTER outlier removal, ``binary_fill_holes(valid & finite & ~outliers)``:
        holes and outliers enclosed by the face are filled, while outliers on the
        outline (the face edge; typically grazing-angle pixels of a silhouette,
        whose one-sided neighbourhood makes them look like spikes) are dropped
        rather than refilled by extrapolation, which on a full sphere rendered up to
        its silhouette was measured to invent depths up to 7 mm off.  A given
        face_mask is filled wherever it is not valid.  Pixels outside the face mask
        never become valid.
    k, sigma_floor_mm, min_neighbours : :func:`remove_outliers`.
    fill_radius : :func:`fill_holes` ``radius``.
    sigma : :func:`gaussian_3x3` ``sigma`` (its default ``border="plane"``).
    passes : outlier removal is repeated on what survives until a pass finds nothing
        or ``passes`` passes ran (the paper does one; a spike wider than a pixel, e.g. a
        scanner spike rendered at a finer pixel than its triangles, hides its inner
        pixels behind its other pixels in the first pass).
    Returns :class:`CleanedDepth`.  Raises InputError when nothing on the face is
    valid.
    """
    _positive(pixel_size_mm, "pixel_size_mm", item)
    d, v = _depth_and_mask(depth, valid, "valid", item)
    if face_mask is not None:
        fm = np.asarray(face_mask)
        if fm.shape != d.shape or fm.dtype != bool:
            raise InputError(item, f"face_mask must be bool {d.shape}, got "
                                   f"{fm.dtype} {fm.shape}")
        v = v & fm
    if not v.any():
        raise InputError(item, "no valid depth pixel on the face")
    od, ov, outliers = remove_outliers(d, v, k, sigma_floor_mm=sigma_floor_mm,
                                       min_neighbours=min_neighbours, item=item)
    for _ in range(max(0, int(passes) - 1)):
        if not outliers.any():
            break
        od, ov, more = remove_outliers(od, ov, k, sigma_floor_mm=sigma_floor_mm,
                                       min_neighbours=min_neighbours, item=item)
        if not more.any():
            break
        outliers = outliers | more
    if face_mask is None:
        fm = ndimage.binary_fill_holes(ov)
    filled = fill_holes(od, ov, fm, radius=fill_radius, item=item)
    smooth = gaussian_3x3(filled, fm, sigma, item=item)
    normals = normals_from_depth(smooth, fm, pixel_size_mm, item=item)
    return CleanedDepth(depth=smooth, normals=normals, valid=fm.copy(), outliers=outliers,
                        n_outliers=int(outliers.sum()), n_filled=int((fm & ~ov).sum()))
