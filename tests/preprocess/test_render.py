"""Orthographic ray-cast rendering: truth from analytic surfaces and hand-computed pixels.

Pixel centres of ``size`` N over extent (xmin, xmax, ymin, ymax) are
x_j = xmin + (j + 0.5) p, y_i = ymax - (i + 0.5) p with p = (xmax - xmin) / N.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from data_schema.errors import InputError
from preprocess.render import (CHANNEL_NORMALISATION, CHANNELS, FALLBACK_GRAY,
                               attribute_maps, render_orthographic)


def centres(extent, n):
    """(X, Y) (n, n) pixel-centre coordinates, mm, of the documented camera."""
    xmin, xmax, ymin, ymax = extent
    p = (xmax - xmin) / n
    x = xmin + (np.arange(n) + 0.5) * p
    y = ymax - (np.arange(n) + 0.5) * p
    return np.broadcast_to(x[None, :], (n, n)), np.broadcast_to(y[:, None], (n, n))


def grid_mesh(lo, hi, n, height):
    """A regular n x n vertex grid over [lo, hi]^2 with z = height(x, y)."""
    t = np.linspace(lo, hi, n)
    x, y = np.meshgrid(t, t)
    v = np.column_stack([x.ravel(), y.ravel(), height(x.ravel(), y.ravel())])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    f = np.concatenate([np.column_stack([a.ravel(), b.ravel(), c.ravel()]),
                        np.column_stack([a.ravel(), c.ravel(), d.ravel()])])
    return v, f


def assert_misses_zero(r):
    miss = ~r.valid
    assert (r.depth[miss] == 0).all() and (r.attrs[:, miss] == 0).all()
    assert (r.rgb[:, miss] == 0).all() and (r.bary[miss] == 0).all()
    assert (r.triangle_id[miss] == -1).all()
    for a in (r.depth, r.attrs, r.rgb, r.bary):
        assert np.isfinite(a).all()


# ------------------------------------------------------------------ camera geometry

def test_row0_is_top_and_col0_is_left_hand_computed_pixels():
    # size 4 over [0, 4]^2: pixel (0, 0) is centred at (0.5, 3.5), (3, 3) at (3.5, 0.5).
    small = np.array([[-0.2, -0.2, 0], [0.2, -0.2, 0], [0, 0.2, 0]])
    v = np.concatenate([small + [0.5, 3.5, 1.0], small + [3.5, 0.5, 2.0]])
    f = np.array([[0, 1, 2], [3, 4, 5]])
    r = render_orthographic(v, f, size=4, extent_mm=(0, 4, 0, 4))
    want = np.full((4, 4), -1)
    want[0, 0], want[3, 3] = 0, 1
    np.testing.assert_array_equal(r.triangle_id, want)
    assert r.depth[0, 0] == pytest.approx(1.0) and r.depth[3, 3] == pytest.approx(2.0)
    assert r.pixel_size_mm == 1.0 and r.extent == (0.0, 4.0, 0.0, 4.0)
    assert_misses_zero(r)


def test_first_hit_is_the_surface_nearest_the_camera_at_plus_z():
    v0, f0 = grid_mesh(-10, 10, 2, lambda x, y: 0 * x)
    v1, f1 = grid_mesh(-10, 10, 2, lambda x, y: 0 * x + 5.0)
    r = render_orthographic(np.concatenate([v0, v1]), np.concatenate([f0, f1 + 4]),
                            size=16, extent_mm=(-8, 8, -8, 8))
    assert r.valid.all()
    np.testing.assert_allclose(r.depth, 5.0, atol=1e-6)
    assert (r.triangle_id >= 2).all()


# ---------------------------------------------------------------- analytic surfaces

def test_tilted_plane_depth_and_interpolated_position_are_analytic():
    a, b, c = 0.3, -0.2, 7.0
    v, f = grid_mesh(-20, 20, 11, lambda x, y: a * x + b * y + c)
    ext = (-15.0, 15.0, -15.0, 15.0)
    r = render_orthographic(v, f, size=64, extent_mm=ext, vertex_attrs=v)
    X, Y = centres(ext, 64)
    Z = a * X + b * Y + c
    assert r.valid.all()
    # float32 scene: tolerance 1e-4 mm on a 40 mm mesh.
    np.testing.assert_allclose(r.depth, Z, atol=1e-4)
    # Position is linear on each triangle, so barycentric interpolation is exact.
    np.testing.assert_allclose(r.attrs[0], X, atol=1e-4)
    np.testing.assert_allclose(r.attrs[1], Y, atol=1e-4)
    np.testing.assert_allclose(r.attrs[2], Z, atol=1e-4)
    np.testing.assert_allclose(r.bary.sum(axis=-1), 1.0, atol=1e-6)

    n = np.array([-a, -b, 1.0]) / np.linalg.norm([-a, -b, 1.0])
    m = attribute_maps(v, f, np.tile(n, (len(v), 1)), np.full(len(v), 0.25), size=64,
                       extent_mm=ext, depth_range_mm=20.0, nose_z_mm=12.0)
    for ch in range(3):
        np.testing.assert_allclose(m.maps[ch], (n[ch] + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(m.maps[3], np.clip((Z - (12.0 - 20.0)) / 20.0, 0, 1),
                               atol=1e-5)
    np.testing.assert_allclose(m.maps[4], 0.25, atol=1e-6)
    np.testing.assert_allclose(m.maps[5:8], FALLBACK_GRAY)


def test_sphere_depth_and_normal_maps_are_analytic():
    R = 50.0
    s = trimesh.creation.icosphere(subdivisions=5, radius=R)   # 20480 faces, edge ~2 mm
    ext = (-R, R, -R, R)
    m = attribute_maps(s.vertices, s.faces, s.vertices / R, np.full(len(s.vertices), 1.0),
                       size=112, extent_mm=ext, depth_range_mm=R)
    r = m.rendering
    X, Y = centres(ext, 112)
    rho = np.hypot(X, Y)
    inner = rho < 0.9 * R
    Zt = np.sqrt(np.maximum(R ** 2 - rho ** 2, 0))
    # Inscribed polyhedron: measured max error 0.028 mm for rho < 0.9 R.
    assert np.abs(r.depth - Zt)[inner].max() < 0.05
    n = 2.0 * m.maps[:3] - 1.0
    nt = np.stack([X, Y, Zt]) / R
    ang = np.degrees(np.arccos(np.clip((n * nt).sum(axis=0), -1, 1)))
    assert ang[inner].max() < 0.1                               # measured 0.035 deg
    assert r.valid[rho < R - 1].all() and not r.valid[rho > R].any()
    # D: nose (apex) = 1, the rim (z = 0 = z_nose - R) = 0.
    assert m.normalisation["z_nose_mm"] == pytest.approx(R, abs=0.05)
    np.testing.assert_allclose(m.maps[3][inner], (Zt[inner] - (m.normalisation["z_nose_mm"]
                                                               - R)) / R, atol=2e-3)
    np.testing.assert_allclose(m.maps[4][r.valid], 1.0)
    assert (m.maps[:, ~m.valid] == 0).all()


# ------------------------------------------------------------------------- colours

def test_checkerboard_texture_lands_where_the_uv_says():
    # 64x64 texture, 8x8 cells; R = parity, G = 30 * cell column, B = 30 * cell row,
    # so a flip in u or v changes G or B.
    tr, tc = np.mgrid[0:64, 0:64]
    ci, cj = tr // 8, tc // 8
    tex = np.stack([255 * ((ci + cj) % 2), 30 * cj, 30 * ci], axis=-1).astype(np.uint8)
    v = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    # uv stored in a scrambled order to exercise face_uv: uv[perm[k]] belongs to vertex k.
    perm = np.array([2, 0, 3, 1])
    uv = np.empty((4, 2))
    uv[perm] = v[:, :2] / 10.0
    r = render_orthographic(v, f, size=40, extent_mm=(0, 10, 0, 10), texture=tex, uv=uv,
                            face_uv=perm[f])
    assert r.rgb_source == "texture" and r.valid.all()
    X, Y = centres((0, 10, 0, 10), 40)
    row, col = (1 - Y / 10) * 64, X / 10 * 64              # continuous texel coords
    # Bilinear lookup equals the cell colour when >= 1 texel from a cell border.
    far = (np.abs(row - 8 * np.round(row / 8)) >= 1) & (np.abs(col - 8 * np.round(col / 8)) >= 1)
    i, j = (row // 8).astype(int), (col // 8).astype(int)
    want = np.stack([255 * ((i + j) % 2), 30 * j, 30 * i]) / 255.0
    assert far.sum() > 400
    np.testing.assert_allclose(r.rgb[:, far], want[:, far], atol=1e-6)


def test_vertex_colours_interpolate_barycentrically():
    s = 4.2
    v = np.array([[0, 0, 0], [s, 0, 0], [0, s, 0]], float)
    col = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    r = render_orthographic(v, [[0, 1, 2]], size=4, extent_mm=(0, 4, 0, 4), colors=col)
    X, Y = centres((0, 4, 0, 4), 4)
    inside = X + Y < s
    np.testing.assert_array_equal(r.valid, inside)
    want = np.stack([1 - X / s - Y / s, X / s, Y / s])
    np.testing.assert_allclose(r.rgb[:, inside], want[:, inside], atol=1e-6)
    np.testing.assert_allclose(r.bary[inside], np.moveaxis(want, 0, -1)[inside], atol=1e-6)
    assert r.rgb_source == "colors"
    assert_misses_zero(r)


def test_no_colour_source_gives_flagged_gray():
    r = render_orthographic([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], size=8)
    assert r.rgb_source == "none"
    assert (r.rgb[:, r.valid] == FALLBACK_GRAY).all()
    assert_misses_zero(r)


# ------------------------------------------------------------------ degenerate input

def test_single_triangle_with_default_extent_covers_half_the_square():
    v = np.array([[-3.0, -1.0, 2.0], [3.0, -1.0, 2.0], [-3.0, 5.0, 2.0]])
    r = render_orthographic(v, [[0, 1, 2]], size=20)
    assert r.extent == pytest.approx((-3.0, 3.0, -1.0, 5.0))
    X, Y = centres(r.extent, 20)
    s = (X + 3) + (Y + 1)                 # < 6 inside the hypotenuse
    off_edge = np.abs(s - 6) > 1e-9       # the diagonal of centres lies ON the edge
    np.testing.assert_array_equal(r.valid[off_edge], (s < 6)[off_edge])
    assert_misses_zero(r)


def test_non_square_bbox_default_extent_is_square_around_it():
    v = np.array([[0.0, 0, 0], [10, 0, 0], [10, 4, 0], [0, 4, 0]])
    r = render_orthographic(v, [[0, 1, 2], [0, 2, 3]], size=10)
    assert r.extent == pytest.approx((0.0, 10.0, -3.0, 7.0))
    assert r.valid.sum() == 40                                   # 4 mm of rows x 10 cols
    # Non-square image (H, W) = (4, 10): 1 mm pixels fit both spans exactly.
    r = render_orthographic(v, [[0, 1, 2], [0, 2, 3]], size=(4, 10))
    assert r.extent == pytest.approx((0.0, 10.0, 0.0, 4.0)) and r.valid.all()


def test_zero_area_and_duplicate_triangles_give_finite_maps():
    v = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [2, 2, 9], [2, 2, 9], [1, 1, 9]], float)
    f = np.array([[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 3, 3]])  # duplicate, collinear, point
    r = render_orthographic(v, f, size=8, extent_mm=(0, 4, 0, 4),
                            vertex_attrs=np.arange(18.0).reshape(6, 3))
    assert set(np.unique(r.triangle_id)) <= {-1, 0, 1}
    assert r.depth[r.valid].max() == pytest.approx(0.0, abs=1e-6)
    assert_misses_zero(r)


def test_zero_length_normals_fall_back_to_the_face_normal_towards_the_camera():
    v = np.array([[0, 0, 0], [0, 4, 0], [4, 0, 2]], float)     # clockwise from +Z
    m = attribute_maps(v, [[0, 1, 2]], np.zeros((3, 3)), np.zeros(3), size=8,
                       extent_mm=(0, 4, 0, 4))
    n = np.array([-0.5, 0.0, 1.0]) / np.linalg.norm([-0.5, 0.0, 1.0])   # z = x / 2
    for ch in range(3):
        np.testing.assert_allclose(m.maps[ch][m.valid], (n[ch] + 1) / 2, atol=1e-6)


@pytest.mark.parametrize("v, f, kw, msg", [
    (np.zeros((0, 3)), np.zeros((0, 3), int), {}, "empty"),
    (np.zeros((3, 3)), np.zeros((0, 3), int), {}, "empty"),
    ([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], [[0, 1, 2]], {}, "NaN"),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], {}, "out of range"),
    ([[0, 0, 0], [0, 0, 1], [0, 0, 2]], [[0, 1, 2]], {}, "zero extent"),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]],
     {"texture": np.zeros((4, 4, 3), np.uint8)}, "without uv"),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]],
     {"extent_mm": (0, 2, 0, 1)}, "non-square"),
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]],
     {"vertex_attrs": [[np.inf], [0], [0]]}, "NaN"),
])
def test_bad_input_raises_input_error(v, f, kw, msg):
    with pytest.raises(InputError, match=msg):
        render_orthographic(v, f, size=4, item="probe", **kw)


# ------------------------------------------------------------------- normalisation

def test_channel_normalisation_is_plain_json_and_in_channel_order():
    v, f = grid_mesh(-5, 5, 3, lambda x, y: 0 * x)
    m = attribute_maps(v, f, np.tile([0, 0, 1.0], (len(v), 1)), np.full(len(v), 0.5),
                       size=8)
    assert json.loads(json.dumps(m.normalisation))["channels"] == CHANNEL_NORMALISATION
    assert tuple(CHANNEL_NORMALISATION["channels"]) == CHANNELS == (
        "Nx", "Ny", "Nz", "D", "C", "R", "G", "B")
    assert m.maps.shape == (8, 8, 8) and m.maps.dtype == np.float32
    # Flat face-on plane: Nx = Ny = 0.5, Nz = 1, D = 1 (it is the nose plane), C = 0.5.
    np.testing.assert_allclose(m.maps[:5, m.valid].T, [[0.5, 0.5, 1.0, 1.0, 0.5]] * m.valid.sum())
    assert 0 <= m.maps.min() and m.maps.max() <= 1
