"""The template face surface (preprocess.pose.template_surface).

Truths used (hand-made depth grids, values known by construction):
* pixel (i, j) of an H x W grid stands for x = (j - (W - 1) / 2) g, y = ((H - 1) / 2 - i) g;
* each pixel's depth is the mean over the faces *and their mirror images* (columns
  reversed) that cover it, so the result is exactly symmetric: points come in
  (x, y, z) / (-x, y, z) pairs and normals in (nx, ny, nz) / (-nx, ny, nz) pairs;
* a plane z = a x + b y + c symmetrised is z = b y + c (the x tilt cancels), whose unit
  normal is (0, -b, 1) / sqrt(1 + b^2), on the border pixels too (one-sided differences
  are exact on a plane);
* a pixel is kept when at least ``min_valid_fraction`` of the 2S mirrored faces cover it.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

from preprocess.pose.template_surface import (
    TemplateSurface,
    build_template_surface,
    grid_extent,
    grid_size,
    load_template_surface,
    read_template_surface,
    write_template_surface,
)

H, W, G = 11, 15, 2.0          # odd grid, 2 mm pixels: x in [-14, 14], y in [-10, 10]
BIG_R = 1e3                    # a radius that keeps every pixel


def _xy():
    x = (np.arange(W) - (W - 1) / 2) * G
    y = ((H - 1) / 2 - np.arange(H)) * G
    return np.meshgrid(x, y)


def _by_xy(surface: TemplateSurface) -> dict[tuple[float, float], int]:
    return {(float(p[0]), float(p[1])): k for k, p in enumerate(surface.points)}


def _asymmetric_depths(s: int = 3) -> np.ndarray:
    rng = np.random.default_rng(5)
    X, Y = _xy()
    return np.stack([0.4 * X - 0.2 * Y + rng.normal(0.0, 3.0, X.shape) for _ in range(s)])


def test_pixel_centres_and_mirror_mean():
    """Row i -> y, column j -> x, depth = mean of the faces and their mirror images."""
    d = _asymmetric_depths()
    ok = np.ones_like(d, dtype=bool)
    s = build_template_surface(d, ok, G, radius_mm=BIG_R, min_valid_fraction=0.5)
    assert len(s.points) == H * W and s.n_faces == 3
    X, Y = _xy()
    expected = 0.5 * (d.mean(axis=0) + d[:, :, ::-1].mean(axis=0))
    where = _by_xy(s)
    for i in range(H):
        for j in range(W):
            k = where[(float(X[i, j]), float(Y[i, j]))]
            assert s.points[k, 2] == pytest.approx(expected[i, j], abs=1e-12)
    # the nose-tip pixel (the centre) sits on x = y = 0, written as exact zeros
    centre = s.points[where[(0.0, 0.0)]]
    assert centre[0] == 0.0 and centre[1] == 0.0
    assert not np.signbit(s.points[s.points[:, 0] == 0.0, 0]).any()      # no "-0.0"


def test_mirror_symmetry_is_exact():
    d = _asymmetric_depths()
    ok = np.ones_like(d, dtype=bool)
    ok[0, :4, :3] = False                       # an uneven hole: still symmetric
    ok[1, 7:, 10:] = False
    s = build_template_surface(d, ok, G, radius_mm=BIG_R, min_valid_fraction=0.5)
    where = _by_xy(s)
    for k, (x, y, z) in enumerate(s.points):
        m = where[(float(-x) + 0.0, float(y))]
        assert s.points[m, 2] == z                                          # exact
        assert s.normals[m, 0] == pytest.approx(-s.normals[k, 0], abs=1e-12)
        np.testing.assert_allclose(s.normals[m, 1:], s.normals[k, 1:], atol=1e-12)


@pytest.mark.parametrize("a, b, c", [(0.0, 0.3, -5.0), (0.7, -0.45, 2.0)])
def test_tilted_plane_gives_its_normal(a, b, c):
    X, Y = _xy()
    d = np.stack([a * X + b * Y + c] * 2)
    s = build_template_surface(d, np.ones_like(d, dtype=bool), G, radius_mm=BIG_R)
    np.testing.assert_allclose(s.points[:, 2], b * s.points[:, 1] + c, atol=1e-12)
    n = np.array([0.0, -b, 1.0]) / np.hypot(1.0, b)
    np.testing.assert_allclose(s.normals, np.broadcast_to(n, s.normals.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(s.normals, axis=1), 1.0, atol=1e-12)
    assert (s.normals[:, 2] > 0).all()


def test_pixels_covered_by_too_few_faces_are_dropped():
    """Face 0 covers every pixel, face 1 only the top 3 rows: with the mirror images, 4
    of 4 faces cover the top rows and 2 of 4 the rest."""
    X, Y = _xy()
    d = np.stack([np.full(X.shape, -1.0), np.full(X.shape, -3.0)])
    ok = np.ones_like(d, dtype=bool)
    ok[1, 3:] = False
    d[1, 3:] = 1e6                               # not covered: must not count
    top = Y >= Y[2, 0]
    keep_all = build_template_surface(d, ok, G, radius_mm=BIG_R, min_valid_fraction=0.5)
    assert len(keep_all.points) == H * W
    z = {xy: keep_all.points[k, 2] for xy, k in _by_xy(keep_all).items()}
    for i in range(H):
        for j in range(W):
            expect = -2.0 if top[i, j] else -1.0
            assert z[(float(X[i, j]), float(Y[i, j]))] == pytest.approx(expect)
    strict = build_template_surface(d, ok, G, radius_mm=BIG_R, min_valid_fraction=0.75)
    assert len(strict.points) == top.sum()
    assert (strict.points[:, 1] >= Y[2, 0]).all()
    np.testing.assert_allclose(strict.points[:, 2], -2.0)
    # a pixel no face covers is never kept, not even with min_valid_fraction = 0
    ok0 = np.ones_like(d, dtype=bool)
    ok0[:, 0, 0] = ok0[:, 0, -1] = False
    none = build_template_surface(d, ok0, G, radius_mm=BIG_R, min_valid_fraction=0.0)
    assert len(none.points) == H * W - 2


def test_radius_limits_the_points():
    X, Y = _xy()
    d = np.zeros((1, H, W))
    s = build_template_surface(d, np.ones_like(d, dtype=bool), G, radius_mm=9.0)
    assert len(s.points) == int((X ** 2 + Y ** 2 <= 81.0).sum())
    assert (np.hypot(s.points[:, 0], s.points[:, 1]) <= 9.0).all()
    assert s.radius_mm == 9.0 and s.grid_mm == G


@pytest.mark.parametrize("h, w", [(10, 15), (11, 14)])
def test_even_grid_is_refused(h, w):
    with pytest.raises(ValueError, match="odd"):
        build_template_surface(np.zeros((1, h, w)), np.ones((1, h, w), dtype=bool), G)


def test_bad_shapes_and_nothing_kept():
    with pytest.raises(ValueError):
        build_template_surface(np.zeros((1, H, W)), np.ones((2, H, W), dtype=bool), G)
    with pytest.raises(ValueError):
        build_template_surface(np.zeros((0, H, W)), np.ones((0, H, W), dtype=bool), G)
    with pytest.raises(ValueError, match="no pixel"):
        build_template_surface(np.zeros((1, H, W)), np.zeros((1, H, W), dtype=bool), G)


def test_grid_size_and_extent():
    assert grid_size(2.0, 80.0) == 81
    assert grid_size(3.0, 10.0) == 9                     # 2 * ceil(10 / 3) + 1
    assert grid_extent(2.0, 80.0) == (-81.0, 81.0, -81.0, 81.0)
    with pytest.raises(ValueError):
        grid_size(0.0, 80.0)


# ------------------------------------------------------------------------- file

def _surface() -> TemplateSurface:
    d = _asymmetric_depths()
    return build_template_surface(d, np.ones_like(d, dtype=bool), G, radius_mm=12.0,
                                  provenance="tests: three noisy planes, ünïcode")


@pytest.mark.parametrize("as_file_object", [False, True])
def test_write_read_round_trip(tmp_path, as_file_object):
    s = _surface()
    path = tmp_path / "surface.npz"
    write_template_surface(path, s)
    back = read_template_surface(io.BytesIO(path.read_bytes()) if as_file_object else path)
    assert back.points.dtype == np.float64 and back.normals.dtype == np.float64
    np.testing.assert_array_equal(back.points, s.points.astype(np.float32))   # float32 stored
    np.testing.assert_allclose(back.normals, s.normals, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(back.normals, axis=1), 1.0, atol=1e-12)
    assert (back.grid_mm, back.radius_mm, back.n_faces, back.provenance) == \
        (s.grid_mm, s.radius_mm, s.n_faces, s.provenance)
    for a in (back.points, back.normals):
        assert not a.flags.writeable


# --------------------------------------------------------------------- shipped

def test_shipped_surface_is_symmetric_and_faces_outward():
    s = load_template_surface()
    assert s is load_template_surface()                  # cached
    assert len(s.points) > 500 and s.n_faces >= 1
    assert s.provenance.strip()
    p, n = s.points, s.normals
    assert np.isfinite(p).all() and np.isfinite(n).all()
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-9)
    assert (n[:, 2] > 0).all()
    # pixel centres of the grid, within the radius, nose-tip pixel present
    np.testing.assert_allclose(p[:, :2] / s.grid_mm, np.round(p[:, :2] / s.grid_mm), atol=1e-4)
    assert (np.hypot(p[:, 0], p[:, 1]) <= s.radius_mm + 1e-6).all()
    # exact mirror pairs (x -> -x of a float32 is exact), normals mirrored
    where = {(float(x), float(y)): k for k, (x, y) in enumerate(p[:, :2])}
    mate = np.array([where[(float(-x) + 0.0, float(y))] for x, y in p[:, :2]])
    np.testing.assert_array_equal(p[mate, 2], p[:, 2])
    np.testing.assert_allclose(n[mate] * [-1.0, 1.0, 1.0], n, atol=1e-6)
    assert (0.0, 0.0) in where
