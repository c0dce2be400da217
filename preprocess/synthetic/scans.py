"""Synthetic 3-D scans of the face model, as the real scanners' data look, ready for the
real writers: Bosphorus-style range grids, BU-3DFE-style textured polygon meshes and
FaceScape-style topologically uniform meshes, each with its landmarks.

Frames: the face model's frame is mm, x right, y up, +Z toward the viewer (see
:mod:`preprocess.synthetic.face_model`).  A scan is posed: ``p_scan = R @ p_model + t``.
The range grid looks along -Z of the scan frame: cell (r, c) (rows top-down) sits at
``x = x0 + c * spacing``, ``y = y_top - r * spacing`` and holds the depth of the front-
most surface there.

The grid is made by a z-buffer rasteriser written here (vectorised over triangle/cell
pairs): no rendering library is a dependency of the project, and what is needed is
small: barycentric interpolation of depth and texture coordinates at cell centres,
front-most hit wins, back-facing and grazing triangles are not seen (as a structured-
light scanner does not see them).

Texture coordinates: ``(u, v)`` with v up over the texture crop (``TEXTURE_BOX`` of the
astronaut image); pixel centre (x, y) has ``u = (x + 0.5) / W``, ``v = 1 - (y + 0.5) / H``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from preprocess.synthetic.astronaut import apply_skin_tone, astronaut_image
from preprocess.synthetic.expressions import ellipse_points
from preprocess.synthetic.face_model import (
    REFERENCE_BORDER, FaceModel, Lattice, lattice, reference_landmarks, reference_to_image,
    snap_to, split_quads, triangle_areas,
)

# Mesh node spacings (mean, mm).  The range grid is rasterised from a uniform lattice
# finer than its cells; the stored meshes are coarse on average but twice as dense in
# the middle of the face (eyes, nose, mouth: 2.5 mm) as at its smooth sides, which keeps
# the sample small.
RASTER_SPACING_MM = 1.0
MESH_SPACING_MM = 5.0
MESH_CENTRE_DENSITY = 0.5
BU3DFE_SPACING_MM = MESH_SPACING_MM
FACESCAPE_SPACING_MM = MESH_SPACING_MM


# ------------------------------------------------------------------------ texture
@lru_cache(maxsize=1)
def texture_box() -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the crop of the astronaut image every 3-D texture uses (the
    face border ellipse in image pixels plus a 4-pixel margin); x1, y1 exclusive."""
    px = reference_to_image(ellipse_points(REFERENCE_BORDER, 720))
    x0, y0 = np.floor(px.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(px.max(axis=0)).astype(int) + 5
    return int(x0), int(y0), int(x1), int(y1)


def texture_image(model: FaceModel) -> np.ndarray:
    """The subject's texture: the astronaut crop with its skin tone, (H, W, 3) uint8."""
    x0, y0, x1, y1 = texture_box()
    crop = astronaut_image()[y0:y1, x0:x1]
    return apply_skin_tone(crop, np.array(model.params.skin_gain), model.params.skin_offset)


def texture_pixels(model: FaceModel, m: np.ndarray) -> np.ndarray:
    """Texture-image pixels (N, 2) (x right, y down, centres on integers) of material
    points (N, 2)."""
    x0, y0, _, _ = texture_box()
    return model.material_to_image(m) - np.array([x0, y0], dtype=np.float64)


def texture_uv(model: FaceModel, m: np.ndarray) -> np.ndarray:
    """Texture coordinates (N, 2) float64, v up, of material points (N, 2)."""
    x0, y0, x1, y1 = texture_box()
    px = texture_pixels(model, m)
    return np.column_stack([(px[:, 0] + 0.5) / (x1 - x0), 1.0 - (px[:, 1] + 0.5) / (y1 - y0)])


# ------------------------------------------------------------------------ pose
def rotation_xyz(angles_deg) -> np.ndarray:
    """Rotation matrix (3, 3) = Rz @ Ry @ Rx of angles (rx, ry, rz) in degrees (pitch,
    yaw, roll)."""
    rx, ry, rz = np.radians(np.asarray(angles_deg, dtype=np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


@dataclass(frozen=True)
class Pose:
    """A rigid head pose: ``p_scan = R @ p_model + t``.

    R : (3, 3) float64 rotation; t : (3,) float64, mm; angles_deg : (rx, ry, rz).
    """

    R: np.ndarray
    t: np.ndarray
    angles_deg: np.ndarray

    def apply(self, p: np.ndarray) -> np.ndarray:
        """(N, 3) model-frame points -> (N, 3) scan-frame points."""
        return np.asarray(p, dtype=np.float64) @ self.R.T + self.t


IDENTITY_POSE = Pose(np.eye(3), np.zeros(3), np.zeros(3))


def random_pose(rng: np.random.Generator, max_rotation_deg: float,
                max_translation_mm=(20.0, 20.0, 30.0)) -> Pose:
    """A random head pose: each rotation angle uniform in +-max_rotation_deg, each
    translation component uniform in +-max_translation_mm."""
    ang = rng.uniform(-max_rotation_deg, max_rotation_deg, size=3)
    t = rng.uniform(-1.0, 1.0, size=3) * np.asarray(max_translation_mm, dtype=np.float64)
    return Pose(rotation_xyz(ang), t, ang)


# ------------------------------------------------------------------------ rasteriser
@dataclass(frozen=True)
class Raster:
    """What a range scanner sees on a grid.

    z : (R, C) float64 depth (mm) of the front-most surface, NaN where nothing is seen.
    attributes : (R, C, K) float64 interpolated vertex attributes (NaN where unseen).
    valid : (R, C) bool.
    """

    z: np.ndarray
    attributes: np.ndarray
    valid: np.ndarray


def rasterize(vertices: np.ndarray, triangles: np.ndarray, attributes: np.ndarray,
              x0: float, y_top: float, spacing: float, shape: tuple[int, int],
              min_facing: float = 0.1) -> Raster:
    """Z-buffer a triangle mesh onto a range grid viewed from +Z.

    vertices : (N, 3) float64 mm; triangles : (F, 3) int64 (counter-clockwise seen from
    +Z for front faces); attributes : (N, K) float64 interpolated per cell (e.g. uv).
    Cell (r, c) is at (x0 + c * spacing, y_top - r * spacing).  Triangles whose unit
    normal has z <= ``min_facing`` (back-facing or grazing) are not seen.
    """
    rows, cols = shape
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64)
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    n = np.cross(b - a, c - a)
    facing = n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-300)
    tri = tri[facing > min_facing]

    gc = (v[:, 0] - x0) / spacing          # continuous column
    gr = (y_top - v[:, 1]) / spacing       # continuous row
    C, Rr = gc[tri], gr[tri]               # (F, 3)
    c_lo = np.ceil(C.min(axis=1)).astype(np.int64)
    r_lo = np.ceil(Rr.min(axis=1)).astype(np.int64)
    c_hi = np.floor(C.max(axis=1)).astype(np.int64)
    r_hi = np.floor(Rr.max(axis=1)).astype(np.int64)
    span_c = int(max(0, (c_hi - c_lo).max(initial=0))) + 1
    span_r = int(max(0, (r_hi - r_lo).max(initial=0))) + 1

    e1c, e1r = C[:, 1] - C[:, 0], Rr[:, 1] - Rr[:, 0]
    e2c, e2r = C[:, 2] - C[:, 0], Rr[:, 2] - Rr[:, 0]
    det = e1c * e2r - e2c * e1r
    ok = np.abs(det) > 1e-12
    hits_t, hits_cell, hits_w = [], [], []
    for dr in range(span_r):
        for dc in range(span_c):
            rr, cc = r_lo + dr, c_lo + dc
            m = ok & (rr <= r_hi) & (cc <= c_hi) & (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            idx = np.flatnonzero(m)
            pc, pr = cc[idx] - C[idx, 0], rr[idx] - Rr[idx, 0]
            w1 = (pc * e2r[idx] - e2c[idx] * pr) / det[idx]
            w2 = (e1c[idx] * pr - pc * e1r[idx]) / det[idx]
            w0 = 1.0 - w1 - w2
            inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
            idx = idx[inside]
            hits_t.append(idx)
            hits_cell.append(rr[idx] * cols + cc[idx])
            hits_w.append(np.column_stack([w0[inside], w1[inside], w2[inside]]))
    t_id = np.concatenate(hits_t)
    cell = np.concatenate(hits_cell)
    w = np.concatenate(hits_w)
    corners = tri[t_id]                                            # (H, 3)
    z = np.einsum("hk,hk->h", w, v[corners, 2])
    # front-most hit per cell: sort by cell, then by -z; the first of each cell wins
    order = np.lexsort((-z, cell))
    cell, first = np.unique(cell[order], return_index=True)
    pick = order[first]
    attr = np.asarray(attributes, dtype=np.float64)
    vals = np.einsum("hk,hkd->hd", w[pick], attr[corners[pick]])

    zz = np.full(rows * cols, np.nan)
    zz[cell] = z[pick]
    aa = np.full((rows * cols, attr.shape[1]), np.nan)
    aa[cell] = vals
    valid = np.zeros(rows * cols, dtype=bool)
    valid[cell] = True
    return Raster(zz.reshape(rows, cols), aa.reshape(rows, cols, -1), valid.reshape(rows, cols))


# ------------------------------------------------------------------------ landmarks
def _alare(L: np.ndarray, side: float) -> np.ndarray:
    """The nose wing's outer point (material), beside the nostril base 31 / 35."""
    k = 35 if side > 0 else 31
    return L[k] + np.array([2.5 * side, 3.0])


def _saddle(L: np.ndarray, side: float) -> np.ndarray:
    """Where glasses rest on the nose: half-way from the bridge to the inner eye corner."""
    k = 42 if side > 0 else 39
    bridge = 0.5 * (L[27] + L[28])
    return bridge + 0.5 * (L[k] - bridge)


# Bosphorus labels -> an iBUG index or a derived point.  "left" is the image's left =
# the subject's right (iBUG's lower-numbered side, -x), as in the real
# bs000_CAU_A22A25_0.lm3 (preprocess.landmark_names.BOSPHORUS_TO_IBUG).  The ear lobes
# lie outside the face border and are omitted, as many real files omit labels.
BOSPHORUS_LANDMARK_SOURCES = (
    ("Outer left eyebrow", 17), ("Middle left eyebrow", 19), ("Inner left eyebrow", 21),
    ("Inner right eyebrow", 22), ("Middle right eyebrow", 24), ("Outer right eyebrow", 26),
    ("Outer left eye corner", 36), ("Inner left eye corner", 39),
    ("Inner right eye corner", 42), ("Outer right eye corner", 45),
    ("Nose saddle left", "saddle_right"), ("Nose saddle right", "saddle_left"),
    ("Left nose peak", "alare_right"), ("Nose tip", 30), ("Right nose peak", "alare_left"),
    ("Left mouth corner", 48), ("Upper lip outer middle", 51), ("Right mouth corner", 54),
    ("Upper lip inner middle", 62), ("Lower lip inner middle", 66),
    ("Lower lip outer middle", 57), ("Chin middle", "chin_middle"),
)
BOSPHORUS_SAMPLE_LABELS = tuple(name for name, _ in BOSPHORUS_LANDMARK_SOURCES)


def _derived(L: np.ndarray, key: str) -> np.ndarray:
    if key == "saddle_left":
        return _saddle(L, 1.0)
    if key == "saddle_right":
        return _saddle(L, -1.0)
    if key == "alare_left":
        return _alare(L, 1.0)
    if key == "alare_right":
        return _alare(L, -1.0)
    if key == "chin_middle":           # the chin's prominence, a third of the way to the lip
        return L[8] + 0.3 * (L[57] - L[8])
    raise KeyError(key)


def bosphorus_landmark_material(model: FaceModel) -> tuple[tuple[str, ...], np.ndarray, list]:
    """Labels, material points (L, 2) and sources (iBUG index or derived key) of the
    Bosphorus landmarks of a subject."""
    L = model.landmarks_m
    pts = [L[s] if isinstance(s, int) else _derived(L, s) for _, s in BOSPHORUS_LANDMARK_SOURCES]
    return BOSPHORUS_SAMPLE_LABELS, np.array(pts), [s for _, s in BOSPHORUS_LANDMARK_SOURCES]


def landmark_positions(model: FaceModel, m: np.ndarray, sources: list, expression: str,
                       intensity: float) -> np.ndarray:
    """3-D model-frame positions (L, 3) of landmarks given by material points and their
    sources: iBUG landmarks exactly (``landmarks3d``), derived points on the surface."""
    exact = model.landmarks3d(expression, intensity)
    surf = model.surface(m, expression, intensity)
    return np.array([exact[s] if isinstance(s, (int, np.integer)) else p
                     for s, p in zip(sources, surf)])


def _resample(points: np.ndarray, n: int, closed: bool) -> np.ndarray:
    """n points evenly spaced by arc length along a polyline (closed: a loop starting at
    the first point)."""
    p = np.vstack([points, points[:1]]) if closed else points
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, s[-1], n, endpoint=not closed)
    return np.column_stack([np.interp(targets, s, p[:, k]) for k in range(p.shape[1])])


def bu3dfe_landmark_material(model: FaceModel) -> np.ndarray:
    """The 83 BU-3DFE landmarks of a subject as material points, (83, 2) mm.

    0-7 right eye and 8-15 left eye (8 points around each iBUG eye contour, from 36 /
    42), 16-25 right and 26-35 left brow (5 along the iBUG brow, then 5 back along a
    line 3.5 mm below), 36-47 nose (right saddle, right wing, iBUG 31, 32, 34, 35, left
    wing, left saddle, 27, 28, 29, 33: the wings 37 and 42 flank the tip, so their
    midpoint stands in for it as in real files), 48-67 mouth = iBUG 48-67, 68-82 the
    jaw contour (iBUG 0-16 resampled to 15 points).
    """
    L = model.landmarks_m
    eyes = [_resample(L[36:42], 8, True), _resample(L[42:48], 8, True)]
    brows = []
    for brow in (L[17:22], L[22:27]):
        upper = _resample(brow, 5, False)
        brows.append(np.vstack([upper, (upper - (0.0, 3.5))[::-1]]))
    nose = np.array([_saddle(L, -1.0), _alare(L, -1.0), L[31], L[32], L[34], L[35],
                     _alare(L, 1.0), _saddle(L, 1.0), L[27], L[28], L[29], L[33]])
    contour = _resample(L[0:17], 15, False)
    return np.vstack([*eyes, *brows, nose, L[48:68], contour])


# ------------------------------------------------------------------------ Bosphorus
@dataclass(frozen=True)
class RangeScan:
    """A Bosphorus-style range scan, ready for ``write_bnt``/``write_lm3``/``write_lm2``.

    xyz : (R, C, 3) float64 mm, rows top-down (invalid cells hold zeros).
    valid : (R, C) bool.
    uv_stored : (R, C, 2) float64 texture coordinates as ``.bnt`` stores them (v
        top-down: pixel row = v * H).
    texture : (H, W, 3) uint8.
    labels : landmark labels; landmarks : (L, 3) mm scan frame; landmarks2d : (L, 2)
        texture pixels.
    pose : Pose (model -> scan); nose_tip : (3,) mm scan frame.
    x0, y_top, spacing : the grid geometry (see module docstring).
    holes : [(x, y, radius_x, radius_y, angle_rad)] planted holes (scan frame, mm).
    outliers : (K,) int64 row-major indices of the spike cells.
    """

    xyz: np.ndarray
    valid: np.ndarray
    uv_stored: np.ndarray
    texture: np.ndarray
    labels: tuple[str, ...]
    landmarks: np.ndarray
    landmarks2d: np.ndarray
    pose: Pose
    nose_tip: np.ndarray
    x0: float
    y_top: float
    spacing: float
    holes: list = field(default_factory=list)
    outliers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@lru_cache(maxsize=4)
def _raster_mesh(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    lat = lattice(spacing)
    return lat.points, lat.triangles()


def bosphorus_scan(model: FaceModel, expression: str, intensity: float, rng: np.random.Generator,
                   grid_shape: tuple[int, int], spacing: float, noise_mm: float,
                   holes: int, outlier_fraction: float, max_rotation_deg: float) -> RangeScan:
    """A posed, noisy range scan of a subject's face.

    grid_shape : (rows, cols); spacing : mm between cells.  The grid is centred on the
    posed nose tip.  Scanner noise N(0, noise_mm) along the view axis on every seen cell;
    ``holes`` elliptic blobs (radii 3-7 mm) at least 20 mm from the nose tip set
    missing; ``outlier_fraction`` of the seen cells (none within 10 mm of the nose tip)
    get a spike of 10-40 mm toward or away from the scanner.
    """
    pose = random_pose(rng, max_rotation_deg)
    ref_pts, tris = _raster_mesh(min(RASTER_SPACING_MM, 0.8 * spacing))
    m = ref_pts * model.scale
    verts = pose.apply(model.surface(m, expression, intensity))
    uv = texture_uv(model, m)
    tip = pose.apply(model.nose_tip(expression, intensity)[None])[0]

    rows, cols = grid_shape
    x0 = tip[0] - 0.5 * (cols - 1) * spacing
    y_top = tip[1] + 0.5 * (rows - 1) * spacing
    ras = rasterize(verts, tris, uv, x0, y_top, spacing, grid_shape)
    valid = ras.valid.copy()
    X = x0 + spacing * np.arange(cols)[None, :].repeat(rows, 0)
    Y = y_top - spacing * np.arange(rows)[:, None].repeat(cols, 1)
    Z = np.where(valid, ras.z, 0.0) + rng.normal(0.0, noise_mm, size=valid.shape) * valid
    d_tip = np.hypot(X - tip[0], Y - tip[1])

    hole_list = []
    for _ in range(holes):
        cand = np.flatnonzero(valid & (d_tip > 20.0))
        if len(cand) == 0:
            break
        k = cand[rng.integers(len(cand))]
        cx, cy = X.flat[k], Y.flat[k]
        ra, rb = rng.uniform(3.0, 7.0, size=2)
        ang = rng.uniform(0.0, np.pi)
        dx, dy = X - cx, Y - cy
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / ra
        w = (-dx * np.sin(ang) + dy * np.cos(ang)) / rb
        valid &= ~((u * u + w * w) <= 1.0)
        hole_list.append((float(cx), float(cy), float(ra), float(rb), float(ang)))

    cand = np.flatnonzero(valid & (d_tip > 10.0))
    n_out = min(int(round(outlier_fraction * valid.sum())), len(cand))
    outliers = np.sort(rng.choice(cand, size=n_out, replace=False)) if n_out else np.zeros(0, np.int64)
    spikes = rng.uniform(10.0, 40.0, size=n_out) * rng.choice([-1.0, 1.0], size=n_out)
    Z.flat[outliers] += spikes

    xyz = np.where(valid[..., None], np.stack([X, Y, Z], axis=-1), 0.0)
    uv_up = np.where(valid[..., None], ras.attributes, 0.0)
    uv_stored = np.stack([uv_up[..., 0], np.where(valid, 1.0 - uv_up[..., 1], 0.0)], axis=-1)

    labels, lm_m, sources = bosphorus_landmark_material(model)
    lm3 = pose.apply(landmark_positions(model, lm_m, sources, expression, intensity))
    lm2 = texture_pixels(model, lm_m)
    return RangeScan(np.round(xyz, 6), valid, np.round(uv_stored, 9), texture_image(model),
                     labels, lm3, lm2, pose, tip, float(x0), float(y_top), float(spacing),
                     hole_list, outliers.astype(np.int64))


# ------------------------------------------------------------------------ meshes
@dataclass(frozen=True)
class MeshScan:
    """A textured mesh scan.

    vertices : (V, 3) float64 mm; polygons : list of vertex-index tuples (3 or 4 each);
    triangles : (F, 3) int64 (the same surface as triangles); uv : (V, 2) v-up per vertex;
    texture : (H, W, 3) uint8; landmarks : (L, 3) mm; landmark_index : (L,) int64 vertex
    indices; pose : Pose; nose_tip : (3,) mm in the mesh's frame.
    """

    vertices: np.ndarray
    polygons: list
    triangles: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    landmarks: np.ndarray
    landmark_index: np.ndarray
    pose: Pose
    nose_tip: np.ndarray


@lru_cache(maxsize=4)
def bu3dfe_topology(spacing: float) -> tuple[Lattice, list, np.ndarray]:
    """The BU-3DFE-style polygons over the lattice: quads, with every fifth cell (in a
    diagonal pattern) and the four squeezed corner cells cut into two triangles, so
    readers must fan-triangulate a real mix.  Returns (lattice, polygons, triangles)."""
    lat = lattice(spacing, MESH_CENTRE_DENSITY)
    rows, cols = lat.shape
    i, j = np.divmod(np.arange(len(lat.quads)), cols - 1)
    corner = ((i == 0) | (i == rows - 2)) & ((j == 0) | (j == cols - 2))
    cut = corner | ((i + 2 * j) % 5 == 0)
    tris_cut, _ = split_quads(lat.points, lat.quads, cut)
    polys: list[tuple[int, ...]] = []
    k = 0
    for q, is_cut in zip(lat.quads.tolist(), cut.tolist()):   # keep the lattice's order
        if is_cut:
            polys += [tuple(tris_cut[k].tolist()), tuple(tris_cut[k + 1].tolist())]
            k += 2
        else:
            polys.append(tuple(q))
    tris = np.array([t for p in polys for t in ([p] if len(p) == 3 else
                     [(p[0], p[1], p[2]), (p[0], p[2], p[3])])], dtype=np.int64)
    return lat, polys, tris


def bu3dfe_scan(model: FaceModel, expression: str, intensity: float, rng: np.random.Generator,
                noise_mm: float, max_rotation_deg: float,
                spacing: float = BU3DFE_SPACING_MM) -> MeshScan:
    """A BU-3DFE-style mesh: the lattice surface, posed (half the Bosphorus rotation
    range: the F3D models are roughly frontal), noise along the view axis, uv per
    vertex, and the 83 landmarks snapped to their nearest vertices."""
    lat, polys, tris = bu3dfe_topology(spacing)
    pose = random_pose(rng, 0.5 * max_rotation_deg)
    m = lat.points * model.scale
    verts = pose.apply(model.surface(m, expression, intensity))
    verts[:, 2] += rng.normal(0.0, noise_mm, size=len(verts))
    verts = np.round(verts, 6)
    true83 = pose.apply(model.surface(bu3dfe_landmark_material(model), expression, intensity))
    from scipy.spatial import cKDTree

    idx = cKDTree(verts).query(true83)[1].astype(np.int64)
    tip = pose.apply(model.nose_tip(expression, intensity)[None])[0]
    return MeshScan(verts, polys, tris, texture_uv(model, m), texture_image(model),
                    verts[idx].copy(), idx, pose, tip)


@lru_cache(maxsize=4)
def facescape_topology(spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one FaceScape-style topology: the lattice cut into triangles, with the 68
    landmark vertices.

    The inner landmarks (iBUG 17-67) are exact: the nearest inner node is moved onto
    each.  The jaw contour (0-16) lies on the steep sides of the face where the lattice is
    coarse; moving nodes there would dent the silhouette, so each takes its nearest free
    node as it is (as real FaceScape landmark vertices are nearest vertices).
    Returns (points (N, 2) reference mm, triangles (F, 3) int64, landmark vertex
    indices (68,) int64).  Raises ValueError if a triangle folds over."""
    from scipy.spatial import cKDTree

    lat = lattice(spacing, MESH_CENTRE_DENSITY)
    ref = reference_landmarks()
    pts, inner = snap_to(lat.points, ref[17:], movable=~lat.border)
    idx = np.empty(68, dtype=np.int64)
    idx[17:] = inner
    taken = set(inner.tolist())
    near = cKDTree(pts).query(ref[:17], k=8)[1]
    for k in range(17):
        idx[k] = next(int(n) for n in near[k] if int(n) not in taken)
        taken.add(int(idx[k]))
    tris, _ = split_quads(pts, lat.quads, np.ones(len(lat.quads), dtype=bool))
    if (triangle_areas(pts, tris) <= 0).any():
        raise ValueError("snapping the landmarks folded a triangle: use a finer lattice")
    return pts, tris, idx


def facescape_scan(model: FaceModel, expression: str, intensity: float,
                   spacing: float = FACESCAPE_SPACING_MM) -> MeshScan:
    """A FaceScape-style TU model: the shared topology in the model frame (face along +Z,
    +Y up, no pose, no noise: TU models are fitted, registered meshes).  Its inner 51
    landmark vertices (iBUG 17-67) sit exactly on the landmarks; the contour ones are
    the nearest vertices."""
    pts, tris, idx = facescape_topology(spacing)
    m = pts * model.scale
    verts = model.surface(m, expression, intensity)
    verts[idx[17:]] = model.landmarks3d(expression, intensity)[17:]   # equal up to round-off
    verts = np.round(verts, 6)
    return MeshScan(verts, [tuple(t) for t in tris.tolist()], tris, texture_uv(model, m),
                    texture_image(model), verts[idx].copy(), idx, IDENTITY_POSE,
                    verts[idx[30]].copy())

