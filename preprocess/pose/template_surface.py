"""The template face surface that :mod:`preprocess.pose.geometric` registers scans to.

Canonical frame (as :mod:`preprocess.template`): mm, right-handed, the face looks along
+Z, +Y up, +X toward the subject's left, the nose tip at the origin, mirror-symmetric
about the plane x = 0.

The surface is a mean depth grid: registered, nose-centred faces are rendered
orthographically along -Z (:func:`preprocess.render.render_orthographic`) on one fixed
grid of ``grid_mm`` pixels whose centre pixel sits on the nose tip; each pixel's depth
is averaged over the faces that cover it *and their mirror images* (x -> -x, so the
result is exactly symmetric); pixels covered by fewer than ``min_valid_fraction`` of
them, or farther than ``radius_mm`` from the nose tip in x-y, are dropped.  The points
are the kept pixel centres at their mean depth; the normals come from the grid's depth
gradient.  :func:`build_template_surface` does the averaging on depth grids,
:func:`surface_from_meshes` renders meshes to such grids first.

The shipped file ``preprocess/data/template_surface.npz`` comes from real faces: the
public scans LIZHANGYAN/fileread ``data/bs000_CAU_A22A25_0.bnt`` (posed by its .lm3),
``data/bs000_CAU_A26A12lw_0.bnt`` (dlib on the shaded render) and ``001-001.wrl`` (dlib on
its vertex colours), registered to the shipped landmark template, nose-cropped and
averaged with their mirror images by ``fermaps template-surface`` (its ``provenance``
names the files and their sha256).  Two subjects only: a dataset's own surface is one
``fermaps template-surface --scans ...`` away.  Measured on those scans, leave-one-out
(surface from the other two): the geometric pose is within 0.9-2.5 degrees of the
landmark pose, coverage 0.84-0.88 (the synthetic face model's mean: 1.0-1.6 degrees but
coverage 0.39-0.45 and twice the cost).  :func:`synthetic_meshes` remains for tests.

Why by hand: the template is data of this project; the averaging is a few numpy lines
round the project's renderer.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

TEMPLATE_SURFACE_FILE = "template_surface.npz"
#: Defaults of the shipped surface: grid pitch and radius round the nose tip, mm.
GRID_MM = 2.0
RADIUS_MM = 80.0
#: A pixel is kept when at least this fraction of the (mirrored) faces cover it.
MIN_VALID_FRACTION = 0.5
#: Synthetic test faces (:func:`synthetic_meshes`): subjects, seed, lattice spacing (mm).
SYNTHETIC_SUBJECTS = 32
SYNTHETIC_SEED = 0
_SYNTHETIC_SPACING_MM = 1.0


@dataclass(frozen=True)
class TemplateSurface:
    """A face surface in the canonical frame (module docstring).

    points : (N, 3) float64, mm; nose tip at the origin, symmetric about x = 0.
    normals : (N, 3) float64 unit vectors, pointing out of the face (n_z > 0).
    grid_mm : float, pitch of the depth grid the points come from, mm.
    radius_mm : float, points lie within this x-y distance of the nose tip, mm.
    n_faces : int, number of faces averaged (before mirroring).
    provenance : where the surface comes from.
    """

    points: np.ndarray
    normals: np.ndarray
    grid_mm: float
    radius_mm: float
    n_faces: int
    provenance: str = ""

    def __post_init__(self):
        if self.points.ndim != 2 or self.points.shape[1:] != (3,) \
                or self.normals.shape != self.points.shape:
            raise ValueError(f"template surface: points {self.points.shape}, "
                             f"normals {self.normals.shape}; need (N, 3) each")


# ------------------------------------------------------------------------ grids

def grid_size(grid_mm: float = GRID_MM, radius_mm: float = RADIUS_MM) -> int:
    """Pixels per side of the square depth grid: odd, so that the centre pixel's centre
    is the nose tip and the columns pair up under x -> -x."""
    if not (grid_mm > 0 and radius_mm > 0):
        raise ValueError(f"grid_mm and radius_mm must be > 0, got {grid_mm}, {radius_mm}")
    return 2 * int(np.ceil(radius_mm / grid_mm)) + 1


def grid_extent(grid_mm: float = GRID_MM, radius_mm: float = RADIUS_MM
                ) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax), mm: outer edges of the grid of :func:`grid_size` pixels
    centred on the origin (the ``extent_mm`` of ``render_orthographic``)."""
    half = 0.5 * grid_size(grid_mm, radius_mm) * grid_mm
    return (-half, half, -half, half)


def _gradient(z: np.ndarray, ok: np.ndarray, axis: int, step: float) -> np.ndarray:
    """d z / d (index along ``axis``) / step on valid pixels: central differences where
    both neighbours are valid, one-sided where one is, 0 where none is."""
    zf = np.where(ok, z, 0.0)

    def shifted(a, k):           # a[i + k] along axis, padded with zeros / False
        out = np.zeros_like(a)
        src = [slice(None)] * a.ndim
        dst = [slice(None)] * a.ndim
        if k > 0:
            src[axis], dst[axis] = slice(k, None), slice(None, -k)
        else:
            src[axis], dst[axis] = slice(None, k), slice(-k, None)
        out[tuple(dst)] = a[tuple(src)]
        return out

    zp, zm = shifted(zf, 1), shifted(zf, -1)
    okp, okm = shifted(ok, 1), shifted(ok, -1)
    both = okp & okm
    g = np.where(both, (zp - zm) / (2 * step),
                 np.where(okp, (zp - zf) / step, np.where(okm, (zf - zm) / step, 0.0)))
    return np.where(ok, g, 0.0)


def build_template_surface(depths, valid, grid_mm: float = GRID_MM, *,
                           radius_mm: float = RADIUS_MM,
                           min_valid_fraction: float = MIN_VALID_FRACTION,
                           provenance: str = "") -> TemplateSurface:
    """Average registered, nose-centred depth grids into a symmetric template surface.

    depths : (S, H, W) float, mm: z of each face's surface along -Z; pixel (i, j) has its
        centre at x = (j - (W - 1) / 2) * grid_mm, y = ((H - 1) / 2 - i) * grid_mm (rows
        top-down), so the nose tip (the origin) is the centre pixel; H, W odd.
    valid : (S, H, W) bool, where each face covers the pixel.
    grid_mm : pixel pitch, mm.  radius_mm : keep pixels within this x-y distance of the
        nose tip, mm.  min_valid_fraction : keep pixels covered by at least this fraction
        of the 2S faces (each face and its mirror image).
    provenance : stored as is.

    Returns TemplateSurface (points at the kept pixel centres, mean depth; normals from
    the mean depth grid's gradient).  Raises ValueError: shapes that disagree, even H or
    W, no face, or no pixel kept.
    """
    d = np.asarray(depths, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool)
    if d.ndim != 3 or ok.shape != d.shape or len(d) == 0:
        raise ValueError(f"depths {d.shape} and valid {ok.shape} must be the same (S, H, W), S >= 1")
    s, h, w = d.shape
    if h % 2 == 0 or w % 2 == 0:
        raise ValueError(f"grid {h}x{w}: H and W must be odd (the nose tip is the centre pixel)")
    ok = ok & np.isfinite(d)
    # the mirror image of a face centred on x = 0 is its grid with the columns reversed
    d2 = np.concatenate([d, d[:, :, ::-1]])
    ok2 = np.concatenate([ok, ok[:, :, ::-1]])
    count = ok2.sum(axis=0)
    mean = np.where(ok2, d2, 0.0).sum(axis=0) / np.maximum(count, 1)
    # the sum runs over the faces in another order at column W-1-j than at j, which can
    # differ in the last bit: average each pair (a + b == b + a exactly) -> exact mirror
    mean = 0.5 * (mean + mean[:, ::-1])
    x = (np.arange(w) - (w - 1) / 2) * grid_mm
    y = ((h - 1) / 2 - np.arange(h)) * grid_mm
    X, Y = np.meshgrid(x, y)
    keep = (count >= min_valid_fraction * 2 * s) & (count > 0) & (X ** 2 + Y ** 2 <= radius_mm ** 2)
    if not keep.any():
        raise ValueError("no pixel is covered by enough faces")
    # rows go down while y goes up: dz/dy = -dz/drow
    gx = _gradient(mean, keep, 1, grid_mm)
    gy = -_gradient(mean, keep, 0, grid_mm)
    n = np.stack([-gx, -gy, np.ones_like(mean)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    points = np.column_stack([X[keep], Y[keep], mean[keep]])
    # exact zeros on the midline (no "-0.0"), exact mirror pairs
    points[np.abs(points) < 1e-9] = 0.0
    return TemplateSurface(points, n[keep], float(grid_mm), float(radius_mm), int(s), provenance)


def surface_from_meshes(meshes: Sequence[tuple[np.ndarray, np.ndarray]], *,
                        grid_mm: float = GRID_MM, radius_mm: float = RADIUS_MM,
                        min_valid_fraction: float = MIN_VALID_FRACTION,
                        provenance: str = "") -> TemplateSurface:
    """Template surface from face meshes already in the canonical frame, nose tip at
    the origin (e.g. real scans after registration and nose centring).

    meshes : sequence of (vertices (V, 3) float mm, faces (F, 3) int).  Each is rendered
        along -Z on the fixed grid of :func:`grid_extent` (front-most surface), then
        :func:`build_template_surface` averages and symmetrizes the depth grids (its
        other parameters are passed on).
    Raises ValueError when no mesh is given; the renderer's InputError for a bad mesh.
    """
    from preprocess.render import render_orthographic

    if len(meshes) == 0:
        raise ValueError("no mesh to build a template surface from")
    n, extent = grid_size(grid_mm, radius_mm), grid_extent(grid_mm, radius_mm)
    renders = [render_orthographic(v, f, size=n, extent_mm=extent, item=f"template face {k}")
               for k, (v, f) in enumerate(meshes)]
    return build_template_surface(np.stack([r.depth for r in renders]),
                                  np.stack([r.valid for r in renders]), grid_mm,
                                  radius_mm=radius_mm, min_valid_fraction=min_valid_fraction,
                                  provenance=provenance)


def synthetic_meshes(n_subjects: int = SYNTHETIC_SUBJECTS, seed: int = SYNTHETIC_SEED
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Neutral faces of random subjects of the sample's face model, nose tip at the
    origin: [(vertices (V, 3) float64 mm, faces (F, 3) int64)] -- known faces for tests."""
    from preprocess.synthetic.face_model import FaceModel, lattice, random_face_params

    lat = lattice(_SYNTHETIC_SPACING_MM)
    tris = lat.triangles()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_subjects):
        model = FaceModel(random_face_params(rng))
        v = model.surface(lat.points * model.scale) - model.nose_tip("neutral", 0.0)
        out.append((v, tris))
    return out


# ------------------------------------------------------------------------ file

def write_template_surface(path: str | Path, surface: TemplateSurface) -> None:
    """Store a surface as ``.npz``: points and normals float32 (mm / unit), grid_mm,
    radius_mm, n_faces, provenance (a unicode string array: no pickle needed)."""
    np.savez_compressed(
        path, points=surface.points.astype(np.float32),
        normals=surface.normals.astype(np.float32),
        grid_mm=np.float64(surface.grid_mm), radius_mm=np.float64(surface.radius_mm),
        n_faces=np.int64(surface.n_faces), provenance=np.str_(surface.provenance))


def read_template_surface(path) -> TemplateSurface:
    """Read a file written by :func:`write_template_surface` (a path or a binary file
    object).  Arrays come back float64 and read-only."""
    with np.load(path, allow_pickle=False) as z:
        points = z["points"].astype(np.float64)
        normals = z["normals"].astype(np.float64)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)   # float32 rounding
        for a in (points, normals):
            a.setflags(write=False)
        return TemplateSurface(points, normals, float(z["grid_mm"]), float(z["radius_mm"]),
                               int(z["n_faces"]), str(z["provenance"]))


@lru_cache(maxsize=1)
def load_template_surface() -> TemplateSurface:
    """The shipped template surface (``preprocess/data/template_surface.npz``), read
    once and cached; its arrays are read-only."""
    with resources.files("preprocess").joinpath("data", TEMPLATE_SURFACE_FILE).open("rb") as f:
        return read_template_surface(f)
