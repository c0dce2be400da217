"""Orthographic ray-cast rendering of a registered face mesh into 2-D attribute maps.

Camera (seed 000, III-B-3; DESIGN.md conventions): orthographic, looking along -Z
from +Z at a face that looks along +Z with +Y up.  Image row 0 is at the top (largest
y), column 0 at the left (smallest x).  Pixel (row i, col j) samples the ray through
its centre::

    x_j = xmin + (j + 0.5) * (xmax - xmin) / W
    y_i = ymax - (i + 0.5) * (ymax - ymin) / H

so the extent is the outer edge of the image, not the outermost pixel centres.

What the library does and what is hand-written:

* Ray/triangle intersection is open3d's ``o3d.t.geometry.RaycastingScene``
  (Embree): it returns, per ray, the first hit triangle and the barycentric
  coordinates of the hit.  No rasteriser is written here; only the triangles whose
  x-y box holds a pixel centre go into the scene (no other can be hit).
* Hand-written (a few numpy lines no well-kept library offers in this form): the
  image-to-ray geometry above, barycentric interpolation of arbitrary per-vertex
  attributes / uvs / colours at the hits, the texture lookup (bilinear, via
  ``scipy.ndimage.map_coordinates``), and the AMDFN channel normalisation.
* Depth is recomputed in float64 from the barycentric coordinates and the
  triangle's vertices instead of using open3d's float32 ``t_hit``: the scene is
  float32, so the vertices are also shifted to the mesh centre before they go in,
  which keeps the float32 rounding at ~1e-5 mm for face-sized meshes.

Every map is finite: a pixel whose ray misses the mesh is 0 everywhere (depth,
attributes, rgb, bary) with ``valid`` False and ``triangle_id`` -1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from data_schema.channels import CHANNEL_NORMALISATION, CHANNELS, FALLBACK_GRAY
from data_schema.errors import InputError
from preprocess.open3d_core import open3d_core

#: Default depth range of the D channel (mm behind the nose tip that map to 0).
DEFAULT_DEPTH_RANGE_MM = 100.0

@dataclass(frozen=True)
class Rendering:
    """What :func:`render_orthographic` sees through each pixel.

    depth : (H, W) float32, mm: z of the first hit; 0 on a miss.
    valid : (H, W) bool, True where the pixel's ray hits the mesh.
    attrs : (K, H, W) float32, barycentric-interpolated ``vertex_attrs`` (K = 0 when
        none were given); 0 on a miss.
    rgb : (3, H, W) float32 in [0, 1]; 0 on a miss.
    rgb_source : ``"texture"``, ``"colors"`` or ``"none"`` (hits are ``FALLBACK_GRAY``).
    triangle_id : (H, W) int32 index of the hit face, -1 on a miss.
    bary : (H, W, 3) float32 barycentric weights of the hit face's three corners
        (sum 1, each in [0, 1]); 0 on a miss.
    pixel_size_mm : float, side of one (square) pixel, mm.
    extent : (xmin, xmax, ymin, ymax) floats, mm: outer edges of the image.
    """

    depth: np.ndarray
    valid: np.ndarray
    attrs: np.ndarray
    rgb: np.ndarray
    rgb_source: str
    triangle_id: np.ndarray
    bary: np.ndarray
    pixel_size_mm: float
    extent: tuple[float, float, float, float]


@dataclass(frozen=True)
class AttributeMaps:
    """The eight AMDFN attribute maps of one registered face.

    maps : (8, H, W) float32 in [0, 1], channels ``CHANNELS`` (Nx, Ny, Nz, D, C, R, G,
        B) normalised as ``CHANNEL_NORMALISATION`` says; 0 off the face.
    valid : (H, W) bool, True where the face was hit.
    normalisation : plain JSON-able dict: ``"channels"`` (= ``CHANNEL_NORMALISATION``)
        plus this item's numbers ``z_nose_mm``, ``depth_range_mm``,
        ``pixel_size_mm``, ``extent_mm`` and ``rgb_source``.
    rendering : the :class:`Rendering` the maps were made from (depth in mm, hit
        triangles, barycentrics), e.g. for :func:`preprocess.depth_clean.clean_depth`.
    """

    maps: np.ndarray
    valid: np.ndarray
    normalisation: dict
    rendering: Rendering


# --------------------------------------------------------------------------- checks

def check_mesh(vertices, faces, item) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float64 vertices and (F, 3) int64 faces, or InputError naming ``item``
    (empty, non-finite, bad shapes, indices out of range); shared with preprocess.lift."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(item, f"vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(item, f"faces must be (F, 3), got {f.shape}")
    if len(v) == 0 or len(f) == 0:
        raise InputError(item, f"empty mesh ({len(v)} vertices, {len(f)} faces)")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(item, f"faces must be integer indices, got {f.dtype}")
    if not np.isfinite(v).all():
        raise InputError(item, "vertices contain NaN or inf")
    f = f.astype(np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(item, f"face index out of range [0, {len(v)})")
    return v, f


def _per_vertex(a, n: int, width: int | None, name: str, item) -> np.ndarray:
    """(n, width) (or (n,) when width is None) finite float64 array, or InputError."""
    a = np.asarray(a, dtype=np.float64)
    want = (n,) if width is None else (n, width)
    if a.shape != want:
        raise InputError(item, f"{name} must be {want}, got {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(item, f"{name} contain NaN or inf")
    return a


def _grid(v: np.ndarray, size, extent_mm, item):
    """(H, W), extent (xmin, xmax, ymin, ymax) and pixel size of the image."""
    if isinstance(size, (tuple, list)):
        h, w = (int(s) for s in size)
    else:
        h = w = int(size)
    if h < 1 or w < 1:
        raise InputError(item, f"image size must be >= 1, got {size}")
    if extent_mm is None:
        # Square around the x/y bounding box, centred on it, no margin: the
        # mesh's outermost x or y lies on the image edge.
        lo, hi = v[:, :2].min(axis=0), v[:, :2].max(axis=0)
        span_x, span_y = (float(s) for s in hi - lo)
        # Smallest square pixel that fits both spans; the other axis gets widened.
        px = max(span_x / w, span_y / h)
        if not px > 0:
            raise InputError(item, "mesh has zero extent in x and y; pass extent_mm")
        cx, cy = (lo + hi) / 2
        extent = (cx - px * w / 2, cx + px * w / 2, cy - px * h / 2, cy + px * h / 2)
    else:
        extent = tuple(float(e) for e in extent_mm)
        if len(extent) != 4 or not np.isfinite(extent).all():
            raise InputError(item, f"extent_mm must be 4 finite numbers, got {extent_mm}")
        xmin, xmax, ymin, ymax = extent
        if not (xmax > xmin and ymax > ymin):
            raise InputError(item, f"extent_mm must have xmax > xmin, ymax > ymin: {extent}")
        px = (xmax - xmin) / w
        if abs((ymax - ymin) / h - px) > 1e-6 * px:
            raise InputError(item, f"extent_mm {extent} gives non-square pixels at {h}x{w}")
    return (h, w), tuple(float(e) for e in extent), float(px)


# ------------------------------------------------------------------------ rendering

def render_orthographic(vertices, faces, *, size: int | tuple[int, int] = 112,
                        extent_mm=None, vertex_attrs=None, texture=None, uv=None,
                        face_uv=None, colors=None, item: str = "mesh") -> Rendering:
    """Ray-cast a mesh orthographically along -Z and read what each pixel sees.

    vertices : (V, 3) float, mm, finite.
    faces : (F, 3) integer indices into vertices; F >= 1.  Zero-area and duplicated
        triangles are allowed (rays do not hit zero-area ones).
    size : H = W = size pixels, or (H, W).
    extent_mm : (xmin, xmax, ymin, ymax) mm, the outer edges of the image; pixels must
        come out square.  Default: centred on the mesh's x/y bounding box, no
        margin, pixel = max(x span / W, y span / H); for H = W a square of side
        max(x span, y span), the longer axis filling the image edge to edge.
    vertex_attrs : (V, K) float per-vertex attributes to interpolate, or None.
    texture : (Ht, Wt, 3) uint8 RGB, with ``uv`` : (T, 2) float (u right, v up, in
        [0, 1]; outside is clamped to the border texel) and ``face_uv`` : (F, 3)
        integer indices into uv (may be None when T == V: one uv per vertex).
    colors : (V, 3) uint8 per-vertex RGB, used when there is no texture.
    item : id used in error messages.

    Returns :class:`Rendering`.  The texture wins over colours; with neither, hit
    pixels are ``FALLBACK_GRAY`` and ``rgb_source`` is ``"none"``.
    Raises InputError on an empty mesh, bad shapes, out-of-range indices, NaN/inf.
    """
    v, f = check_mesh(vertices, faces, item)
    (h, w), extent, px = _grid(v, size, extent_mm, item)
    if vertex_attrs is None:
        attrs_v = np.zeros((len(v), 0))
    else:
        attrs_v = np.asarray(vertex_attrs, dtype=np.float64)
        if attrs_v.ndim != 2:
            raise InputError(item, f"vertex_attrs must be (V, K), got {attrs_v.shape}")
        attrs_v = _per_vertex(attrs_v, len(v), attrs_v.shape[1], "vertex_attrs", item)
    rgb_mode, tex, uv_a, fuv, col = _colour_source(len(v), f, texture, uv, face_uv,
                                                   colors, item)

    xmin, xmax, ymin, ymax = extent
    xs = xmin + (np.arange(w) + 0.5) * px
    ys = ymax - (np.arange(h) + 0.5) * px
    xy = np.column_stack([np.tile(xs, h), np.repeat(ys, w)])   # row-major pixel centres
    # Only triangles whose x-y box holds a pixel centre can be hit; the BVH build is
    # most of the cost, and a scan has several triangles per pixel (Bosphorus at
    # 112 px: 31 % kept, the cast ~3x cheaper, the same hits).
    cand = _triangles_under_pixels(v, f, extent, px, (h, w))
    hits = cast_down(v, f[cand], xy)
    prim = np.full(h * w, -1, np.int64)                          # index into f, -1: miss
    prim[hits.triangle >= 0] = cand[hits.triangle[hits.triangle >= 0]]
    prim = prim.reshape(h, w)
    buv = hits.uv.reshape(h, w, 2)
    valid = prim >= 0

    # open3d's (u, v): hit = (1-u-v) p0 + u p1 + v p2.
    bary = np.stack([1.0 - buv[..., 0] - buv[..., 1], buv[..., 0], buv[..., 1]], axis=-1)
    bary = np.clip(bary, 0.0, 1.0)
    bary /= np.maximum(bary.sum(axis=-1, keepdims=True), 1e-12)
    bary[~valid] = 0.0

    hit_tri = f[np.where(valid, prim, 0)]                       # (H, W, 3) corners

    def interp(per_vertex: np.ndarray, corners: np.ndarray = hit_tri) -> np.ndarray:
        """(H, W, K) barycentric interpolation of (N, K) corner values; 0 on a miss."""
        out = np.einsum("hwc,hwck->hwk", bary, per_vertex[corners])
        out[~valid] = 0.0
        return out

    depth = interp(v[:, 2:3])[..., 0]
    attrs = np.moveaxis(interp(attrs_v), -1, 0)

    if rgb_mode == "texture":
        uv_hit = interp(uv_a, fuv[np.where(valid, prim, 0)])
        rgb = _bilinear(tex, uv_hit) / 255.0
    elif rgb_mode == "colors":
        rgb = interp(col) / 255.0
    else:
        rgb = np.full((h, w, 3), FALLBACK_GRAY)
    rgb = np.clip(rgb, 0.0, 1.0)
    rgb[~valid] = 0.0

    return Rendering(
        depth=depth.astype(np.float32), valid=valid,
        attrs=np.ascontiguousarray(attrs, dtype=np.float32),
        rgb=np.ascontiguousarray(np.moveaxis(rgb, -1, 0), dtype=np.float32),
        rgb_source=rgb_mode, triangle_id=prim.astype(np.int32),
        bary=bary.astype(np.float32), pixel_size_mm=px, extent=extent)


@dataclass(frozen=True)
class DownHits:
    """First hits of rays cast along -Z (see :func:`cast_down`).

    triangle : (N,) int64 index into the faces cast against, -1 on a miss.
    uv : (N, 2) float64 open3d's barycentric (u, v) of the hit: point =
        (1 - u - v) p0 + u p1 + v p2 (float32 precision); 0 on a miss.
    """

    triangle: np.ndarray
    uv: np.ndarray


def cast_down(vertices: np.ndarray, faces: np.ndarray, xy: np.ndarray) -> DownHits:
    """Rays along -Z from above the mesh through each (x, y) of ``xy``: the first
    (largest-z) triangle each one hits.  Shared by the renderer and ``preprocess.lift``.

    vertices : (V, 3) float64 mm; faces : (F, 3) int64 (F may be 0: every ray misses);
    xy : (N, 2) float64 mm.

    The scene is open3d's ``RaycastingScene`` (float32, Embree), so the vertices are
    shifted to the mesh's bounding-box centre first: the rounding is then relative to
    the face's size, not to wherever the scanner put the origin.
    """
    n = len(xy)
    if len(faces) == 0 or n == 0:
        return DownHits(np.full(n, -1, np.int64), np.zeros((n, 2)))
    o3d = open3d_core()  # heavy import, only where ray casting happens (viewer left out)
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    rays = np.zeros((n, 6), dtype=np.float32)
    rays[:, :2] = xy - centre[:2]
    # Start above everything: the first hit is then the largest-z surface.
    rays[:, 2] = (vertices[:, 2].max() - centre[2]) + 1.0 + 1e-3 * float(np.ptp(vertices[:, 2]))
    rays[:, 5] = -1.0
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor((vertices - centre).astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    prim = hit["primitive_ids"].numpy().astype(np.int64)
    ok = (prim >= 0) & (prim < len(faces)) & np.isfinite(hit["t_hit"].numpy())
    uv = np.where(ok[:, None], hit["primitive_uvs"].numpy().astype(np.float64), 0.0)
    return DownHits(np.where(ok, prim, -1), uv)


def _triangles_under_pixels(v: np.ndarray, f: np.ndarray, extent, px: float,
                            shape: tuple[int, int]) -> np.ndarray:
    """Indices (int64, ascending) of the faces whose x-y bounding box contains at least
    one pixel centre of the image, with a margin of 1e-3 pixel for the float32
    scene's rounding (a superset of the faces any ray can hit).

    v : (V, 3) float64 mm; f : (F, 3) int64; extent (xmin, xmax, ymin, ymax) mm; px
    mm per pixel; shape (H, W).
    """
    xmin, _, _, ymax = extent
    keep = np.ones(len(f), dtype=bool)
    ft = f.T
    # Continuous pixel coordinates: centre of column j at j, of row i at i.
    for coord, n in (((v[:, 0] - xmin) / px - 0.5, shape[1]),
                     ((ymax - v[:, 1]) / px - 0.5, shape[0])):
        a, b, c = coord[ft[0]], coord[ft[1]], coord[ft[2]]
        lo = np.ceil(np.minimum(np.minimum(a, b), c) - 1e-3)
        hi = np.floor(np.maximum(np.maximum(a, b), c) + 1e-3)
        keep &= (hi >= lo) & (hi >= 0) & (lo <= n - 1)
    return np.flatnonzero(keep)


def _colour_source(n_vertices, f, texture, uv, face_uv, colors, item):
    """Pick the colour source and check its arrays: ('texture' | 'colors' | 'none', ...)."""
    if texture is not None:
        tex = np.asarray(texture)
        if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8 or tex.size == 0:
            raise InputError(item, f"texture must be (H, W, 3) uint8, got "
                                   f"{tex.shape} {tex.dtype}")
        if uv is None:
            raise InputError(item, "texture given without uv")
        uv_a = np.asarray(uv, dtype=np.float64)
        if uv_a.ndim != 2 or uv_a.shape[1] != 2 or len(uv_a) == 0:
            raise InputError(item, f"uv must be (T, 2), got {uv_a.shape}")
        if not np.isfinite(uv_a).all():
            raise InputError(item, "uv contain NaN or inf")
        if face_uv is None:
            if len(uv_a) != n_vertices:
                raise InputError(item, "face_uv missing and uv is not one per vertex")
            fuv = f
        else:
            fuv = np.asarray(face_uv)
            if fuv.shape != f.shape or not np.issubdtype(fuv.dtype, np.integer):
                raise InputError(item, f"face_uv must be (F, 3) integers, got "
                                       f"{fuv.shape} {fuv.dtype}")
            fuv = fuv.astype(np.int64)
            if fuv.min() < 0 or fuv.max() >= len(uv_a):
                raise InputError(item, f"face_uv index out of range [0, {len(uv_a)})")
        return "texture", tex, uv_a, fuv, None
    if colors is not None:
        col = np.asarray(colors)
        if col.shape != (n_vertices, 3):
            raise InputError(item, f"colors must be ({n_vertices}, 3), got {col.shape}")
        if col.dtype != np.uint8:
            raise InputError(item, f"colors must be uint8, got {col.dtype}")
        return "colors", None, None, None, col.astype(np.float64)
    return "none", None, None, None, None


def _bilinear(tex: np.ndarray, uv_hit: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 0..255: bilinear texture lookup at (H, W, 2) uv (v up).

    Texel (r, c) covers [r, r+1) x [c, c+1) of the continuous coordinates
    ((1 - v) * Ht, u * Wt) (preprocess.scan convention), so its centre is at +0.5.
    """
    ht, wt = tex.shape[:2]
    rows = (1.0 - uv_hit[..., 1]) * ht - 0.5
    cols = uv_hit[..., 0] * wt - 0.5
    coords = np.stack([rows.ravel(), cols.ravel()])
    out = np.empty(uv_hit.shape[:2] + (3,))
    for c in range(3):
        # mode='nearest' clamps to the border texel (uv outside [0, 1] included).
        out[..., c] = ndimage.map_coordinates(tex[..., c].astype(np.float64), coords,
                                              order=1, mode="nearest").reshape(rows.shape)
    return out


# ------------------------------------------------------------------- attribute maps

def attribute_maps(vertices, faces, normals, shape_index, *,
                   size: int | tuple[int, int] = 112, extent_mm=None,
                   depth_range_mm: float = DEFAULT_DEPTH_RANGE_MM,
                   nose_z_mm: float | None = None, texture=None, uv=None, face_uv=None,
                   colors=None, item: str = "mesh") -> AttributeMaps:
    """The eight AMDFN attribute maps (Nx, Ny, Nz, D, C, R, G, B) of a registered face.

    vertices : (V, 3) float, mm, registered (face looks along +Z, +Y up).
    faces : (F, 3) integer.
    normals : (V, 3) float vertex normals (need not be unit; used as given, not
        flipped).  Interpolated at the hit and renormalised; where they cancel to
        zero length the hit triangle's own normal (facing +Z) is used.
    shape_index : (V,) float in [0, 1] (seed 000 eq. 5); interpolated, clipped.
    size, extent_mm, texture, uv, face_uv, colors, item : as
        :func:`render_orthographic`.
    depth_range_mm : float > 0, mm behind the nose tip that map to D = 0.
    nose_z_mm : z of the nose tip, mm (D = 1 there); default the largest hit z
        (after registration the nose tip is the frontmost point).

    Returns :class:`AttributeMaps`; channel formulas in ``CHANNEL_NORMALISATION``.
    """
    v, f = check_mesh(vertices, faces, item)
    n_v = _per_vertex(normals, len(v), 3, "normals", item)
    s_v = _per_vertex(shape_index, len(v), None, "shape_index", item)
    if not (np.isfinite(depth_range_mm) and depth_range_mm > 0):
        raise InputError(item, f"depth_range_mm must be > 0, got {depth_range_mm}")
    if nose_z_mm is not None and not np.isfinite(nose_z_mm):
        raise InputError(item, f"nose_z_mm must be finite, got {nose_z_mm}")
    r = render_orthographic(v, f, size=size, extent_mm=extent_mm,
                            vertex_attrs=np.column_stack([n_v, s_v]), texture=texture,
                            uv=uv, face_uv=face_uv, colors=colors, item=item)
    valid = r.valid
    h, w = valid.shape

    n = r.attrs[:3].astype(np.float64)
    length = np.linalg.norm(n, axis=0)
    bad = valid & (length < 1e-8)
    if bad.any():
        p = v[f[r.triangle_id[bad]]]                             # (B, 3, 3)
        fn = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        fn *= np.where(fn[:, 2:3] < 0, -1.0, 1.0)                # face the camera
        # A hit triangle has non-zero projected area, hence a non-zero normal.
        n[:, bad] = (fn / np.linalg.norm(fn, axis=1, keepdims=True)).T
        length[bad] = 1.0
    n = np.where(valid, n / np.where(valid, np.maximum(length, 1e-300), 1.0), 0.0)

    depth = r.depth.astype(np.float64)
    if nose_z_mm is None:
        z_nose = float(depth[valid].max()) if valid.any() else 0.0
    else:
        z_nose = float(nose_z_mm)
    d = np.clip((depth - (z_nose - depth_range_mm)) / depth_range_mm, 0.0, 1.0)

    maps = np.zeros((len(CHANNELS), h, w), dtype=np.float64)
    maps[0:3] = (n + 1.0) / 2.0
    maps[3] = d
    maps[4] = np.clip(r.attrs[3], 0.0, 1.0)
    maps[5:8] = r.rgb
    maps[:, ~valid] = 0.0
    norm = {
        "channels": CHANNEL_NORMALISATION,
        "z_nose_mm": z_nose,
        "depth_range_mm": float(depth_range_mm),
        "pixel_size_mm": r.pixel_size_mm,
        "extent_mm": list(r.extent),
        "rgb_source": r.rgb_source,
    }
    return AttributeMaps(maps=maps.astype(np.float32), valid=valid, normalisation=norm,
                         rendering=r)
