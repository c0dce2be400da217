"""FFNet-M depth cleaning: truth from analytic surfaces sampled on the pixel grid,
planted spikes/holes/NaN, and hand-computed 3x3 neighbourhoods.

Grid: x grows with the column, y grows UP (rows go down), pixel 0.9 mm.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from data_schema.errors import InputError
from preprocess.depth_clean import (clean_depth, fill_holes, gaussian_3x3,
                                    normals_from_depth, remove_outliers)

N, H_MM = 112, 0.9
_c = (np.arange(N) - N / 2 + 0.5) * H_MM
X = np.broadcast_to(_c[None, :], (N, N))
Y = np.broadcast_to(-_c[:, None], (N, N))
RHO2 = X ** 2 + Y ** 2
FACE = RHO2 < 45.0 ** 2                         # a disc of radius 45 mm
INNER = RHO2 < 42.0 ** 2                        # 3 mm away from its border


def paraboloid(R=60.0):
    """z = 30 - rho^2 / (2R) on FACE, 0 off it (curvature radius R at the apex)."""
    return np.where(FACE, 30.0 - RHO2 / (2 * R), 0.0)


def sphere_cap(R=50.0):
    """z = sqrt(R^2 - rho^2): slope 2.1 at the 45 mm face border."""
    return np.where(FACE, np.sqrt(np.maximum(R ** 2 - RHO2, 0.0)), 0.0)


def planted(truth, seed=0, n_spikes=30):
    """Spikes of 2..10 mm (both signs) >= 4 px apart and away from the planted
    holes, a 5x6 hole, three single-pixel holes and two NaN pixels (valid=True)."""
    rng = np.random.default_rng(seed)
    d, v = truth.copy(), FACE.copy()
    hole = np.zeros_like(FACE)
    hole[50:55, 60:66] = True
    hole[[30, 70, 80], [40, 30, 75]] = True
    nan = np.zeros_like(FACE)
    nan[[45, 65], [50, 45]] = True
    busy = ndimage.binary_dilation(hole | nan, iterations=4) | ~INNER
    spikes = np.zeros_like(FACE)
    for r, c in rng.permutation(np.argwhere(~busy)):
        if len(np.argwhere(spikes)) == n_spikes:
            break
        if not spikes[max(r - 4, 0):r + 5, max(c - 4, 0):c + 5].any():
            spikes[r, c] = True
    amp = rng.choice([-1.0, 1.0], n_spikes) * rng.uniform(2.0, 10.0, n_spikes)
    d[spikes] += amp
    d[hole], v[hole] = 0.0, False
    d[nan] = np.nan
    return d, v, spikes, hole, nan


# ----------------------------------------------------------------- remove_outliers

def test_outlier_rule_on_a_hand_computed_neighbourhood():
    # Neighbours: seven 10s and one 12 -> mean 10.25, sigma = sqrt(3.5 / 8) = 0.6614;
    # 0.6 sigma = 0.3969.  Centre 10.7 differs by 0.45 (outlier), 10.6 by 0.35 (kept).
    def centre_is_outlier(centre, floor):
        d = np.full((3, 3), 10.0)
        d[0, 2], d[1, 1] = 12.0, centre
        return remove_outliers(d, np.ones((3, 3), bool), 0.6, sigma_floor_mm=floor,
                               min_neighbours=8).outliers[1, 1]
    assert centre_is_outlier(10.7, 0.0)
    assert not centre_is_outlier(10.6, 0.0)
    assert not centre_is_outlier(10.7, 1.0)     # floor: threshold 0.6 mm


@pytest.mark.parametrize("surface", [paraboloid, sphere_cap])
def test_planted_spikes_are_exactly_the_outliers(surface):
    d, v, spikes, hole, nan = planted(surface())
    out = remove_outliers(d, v)
    np.testing.assert_array_equal(out.outliers, spikes)
    np.testing.assert_array_equal(out.valid, FACE & ~hole & ~nan & ~spikes)
    assert np.isfinite(out.depth).all() and (out.depth[~out.valid] == 0).all()


def test_clean_sloped_face_border_is_not_flagged():
    # On the sphere cap the border pixels see one-sided neighbours on a slope of ~2;
    # the plane-through-neighbours reading flags none of them (the plain mean would
    # flag 216 of 7860 here: |z - mean| ~ slope * pixel on one side).
    assert remove_outliers(sphere_cap(), FACE).outliers.sum() == 0
    assert remove_outliers(paraboloid(), FACE).outliers.sum() == 0


def test_sigma_floor_keeps_sub_floor_noise_on_a_flat_patch():
    rng = np.random.default_rng(3)
    d = 20.0 + rng.uniform(-0.05, 0.05, (40, 40))
    m = np.ones_like(d, bool)
    assert remove_outliers(d, m).outliers.sum() == 0                 # floor 0.5 mm
    assert remove_outliers(d, m, sigma_floor_mm=0.0).outliers.sum() > 100


def test_isolated_pixels_are_not_judged():
    d = np.zeros((5, 5))
    v = np.zeros((5, 5), bool)
    d[2, 2], v[2, 2] = 99.0, True
    assert not remove_outliers(d, v).outliers.any()


# ---------------------------------------------------------------------- fill_holes

def test_holes_are_filled_from_the_surface_and_background_stays_zero():
    truth = paraboloid()
    d, v, _, hole, nan = planted(truth, n_spikes=0)
    out = fill_holes(d, v, FACE)
    filled = hole | nan
    # Clough-Tocher on a quadratic sampled every 0.9 mm: measured max error 0.004 mm
    # (worst in the 5x6 hole; single pixels ~0.001 mm).
    assert np.abs(out - truth)[filled].max() < 0.01
    np.testing.assert_array_equal(out[v & ~nan], truth[v & ~nan].astype(np.float32))
    assert (out[~FACE] == 0).all() and np.isfinite(out).all()


def test_hole_on_the_face_border_falls_back_to_nearest_and_is_finite():
    truth = paraboloid()
    v = FACE.copy()
    edge = FACE & ~ndimage.binary_erosion(FACE)
    v[edge & (Y > 0)] = False                    # the whole upper rim missing
    out = fill_holes(np.where(v, truth, 0.0), v, FACE)
    assert np.isfinite(out).all() and (out[~FACE] == 0).all()
    # Rim slope <= 0.75 mm/mm, nearest valid pixel <= ~1.3 px away.
    assert np.abs(out - truth)[FACE].max() < 1.0


def test_fill_without_any_valid_pixel_raises():
    with pytest.raises(InputError, match="no valid depth"):
        fill_holes(np.zeros((8, 8)), np.zeros((8, 8), bool), np.ones((8, 8), bool))


# --------------------------------------------------------------------- gaussian_3x3

def test_gaussian_is_normalised_over_face_pixels():
    d = np.where(FACE, 30.0, 0.0)
    np.testing.assert_allclose(gaussian_3x3(d, FACE)[FACE], 30.0, rtol=1e-7)
    assert (gaussian_3x3(d, FACE)[~FACE] == 0).all()
    # Hand-computed impulse response: weights exp(-r^2 / 2) / (1 + 4 e^-1/2 + 4 e^-1).
    imp = np.zeros((5, 5))
    imp[2, 2] = 1.0
    s = 1 + 4 * np.exp(-0.5) + 4 * np.exp(-1.0)
    g = gaussian_3x3(imp, np.ones((5, 5), bool))
    assert g[2, 2] == pytest.approx(1 / s, rel=1e-6)
    assert g[1, 2] == pytest.approx(np.exp(-0.5) / s, rel=1e-6)
    assert g[1, 1] == pytest.approx(np.exp(-1.0) / s, rel=1e-6)


def test_gaussian_border_plane_reproduces_a_plane_up_to_the_face_border():
    # A symmetric kernel leaves a plane unchanged on full windows; on the one-sided
    # border windows only the "plane" border rule does (the "mean" rule is off by
    # ~ slope x 0.3 px there).
    d = np.where(FACE, 0.6 * X - 0.3 * Y + 10.0, 0.0)
    border = FACE & ~ndimage.binary_erosion(FACE, np.ones((3, 3), bool))  # window not full
    g = gaussian_3x3(d, FACE)
    np.testing.assert_allclose(g[FACE], d[FACE], atol=1e-5)
    gm = gaussian_3x3(d, FACE, border="mean")
    np.testing.assert_allclose(gm[FACE & ~border], d[FACE & ~border], atol=1e-5)
    assert np.abs(gm - d)[border].max() > 0.1


def test_gaussian_rejects_nan_on_the_face():
    d = np.full((4, 4), 1.0)
    d[1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        gaussian_3x3(d, np.ones((4, 4), bool))


# ----------------------------------------------------------------------- normals

def test_normals_of_a_tilted_plane_are_analytic_with_y_up():
    a, b = 0.4, -0.7                                  # z = a x + b y + 5
    d = np.where(FACE, a * X + b * Y + 5.0, 0.0)
    n = normals_from_depth(d, FACE, H_MM)
    want = np.array([-a, -b, 1.0]) / np.linalg.norm([-a, -b, 1.0])
    # Exact for a plane, border pixels (one-sided differences) included.
    np.testing.assert_allclose(n[:, FACE].T, np.tile(want, (FACE.sum(), 1)), atol=1e-5)
    assert (n[:, ~FACE] == 0).all()
    # Sign check by hand: the surface rises to the right (a > 0) and falls upwards
    # (b < 0), so the normal leans left (nx < 0) and up (ny > 0).
    assert n[0, 56, 56] < 0 and n[1, 56, 56] > 0


# --------------------------------------------------------------------- clean_depth

@pytest.mark.parametrize("surface, tol_truth", [(paraboloid, 0.02), (sphere_cap, 0.05)])
def test_clean_depth_removes_planted_defects(surface, tol_truth):
    truth = surface()
    d, v, spikes, hole, nan = planted(truth)
    r = clean_depth(d, v, H_MM)
    ref = gaussian_3x3(truth, FACE)                  # what the Gaussian alone makes
    # Measured: max |r - ref| = 0.0034 (paraboloid) / 0.0041 mm (sphere) on the face.
    assert np.abs(r.depth - ref)[FACE].max() < 0.01
    # Against the analytic surface (Gaussian bias included), 3 mm inside the border.
    assert np.abs(r.depth - truth)[INNER].max() < tol_truth
    np.testing.assert_array_equal(r.outliers, spikes)
    assert r.n_outliers == spikes.sum() == 30
    assert r.n_filled == (spikes | hole | nan).sum()
    np.testing.assert_array_equal(r.valid, FACE)
    for a in (r.depth, r.normals):
        assert np.isfinite(a).all()
    assert (r.depth[~FACE] == 0).all() and (r.normals[:, ~FACE] == 0).all()


def test_clean_smooth_map_changes_only_as_much_as_the_gaussian():
    truth = paraboloid()
    r = clean_depth(truth, FACE, H_MM)
    assert r.n_outliers == 0 and r.n_filled == 0
    np.testing.assert_allclose(r.depth, gaussian_3x3(truth, FACE), atol=1e-5)
    # Normals of the cleaned paraboloid vs analytic (-dz/dx, -dz/dy, 1) = (x, y, R)/|.|.
    nt = np.stack([X, Y, np.full_like(X, 60.0)])
    nt /= np.linalg.norm(nt, axis=0)
    ang = np.degrees(np.arccos(np.clip((r.normals * nt).sum(axis=0), -1, 1)))
    assert ang[INNER].max() < 0.1                     # measured 0.016 deg
    assert ang[FACE].max() < 1.0                      # border ring: measured 0.70 deg
    assert np.abs(r.depth - truth)[FACE].max() < 0.02  # measured 0.0074 mm


def test_background_never_becomes_valid():
    truth = paraboloid()
    v = FACE & (X < 10)                  # half a disc, with a notch open to outside
    v[20:30, 40:45] = False              # an inner hole
    v[0:5, 0:5] = True                   # a stray speck in the corner
    r = clean_depth(np.where(v, truth, 0.0), v, H_MM)
    outline = ndimage.binary_fill_holes(v)
    np.testing.assert_array_equal(r.valid, outline)
    assert r.valid[20:30, 40:45].all()
    assert not r.valid[FACE & (X >= 12)].any() and (r.depth[~outline] == 0).all()


def test_outliers_on_the_outline_are_dropped_not_invented():
    # A hemisphere sampled up to its silhouette: the last ring drops ~10 mm per pixel,
    # and a spike planted on the border of the paraboloid.  Both lie on the outline:
    # they are dropped (valid False), and no depth is made up for them.
    R = 45.0
    hemi = np.where(FACE, np.sqrt(np.maximum(R ** 2 - RHO2, 0.0)), 0.0)
    d = paraboloid()
    edge = FACE & ~ndimage.binary_erosion(FACE)
    r0, c0 = np.argwhere(edge & (np.abs(X) < 1))[0]
    d[r0, c0] += 8.0
    for depth, n_min in ((hemi, 1), (d, 1)):
        r = clean_depth(depth, FACE, H_MM)
        assert r.n_outliers >= n_min and r.n_filled == 0
        assert not r.valid[r.outliers].any() and edge[r.outliers].all()
        np.testing.assert_array_equal(r.valid, FACE & ~r.outliers)
        np.testing.assert_allclose(r.depth, gaussian_3x3(depth, r.valid), atol=1e-6)
    assert r.outliers[r0, c0]


def test_nan_in_input_is_invalid_and_all_invalid_raises():
    d = paraboloid()
    d[~FACE] = np.nan                   # NaN background, even flagged valid
    r = clean_depth(d, np.ones_like(FACE), H_MM)
    np.testing.assert_array_equal(r.valid, FACE)
    assert np.isfinite(r.depth).all() and np.isfinite(r.normals).all()
    with pytest.raises(InputError, match="no valid depth"):
        clean_depth(np.full((8, 8), np.nan), np.ones((8, 8), bool), H_MM)
    with pytest.raises(InputError, match="pixel_size_mm"):
        clean_depth(paraboloid(), FACE, 0.0)


def test_one_pixel_hole_is_filled_exactly_on_a_cubic_surface():
    """A lone missing pixel takes the value of the least-squares cubic through its 24
    neighbours: exact on any bivariate cubic."""
    from preprocess.depth_clean import fill_holes

    rows, cols = np.mgrid[0:20, 0:20].astype(float)
    x, y = cols - 9.3, rows - 8.1
    z = 3.0 + 0.2 * x - 0.1 * y + 0.01 * x * y - 0.02 * x ** 2 + 1e-3 * x ** 3 - 2e-3 * x * y ** 2
    valid = np.ones_like(z, bool)
    valid[10, 10] = False
    out = fill_holes(np.where(valid, z, 0.0), valid, np.ones_like(valid))
    assert abs(out[10, 10] - z[10, 10]) < 1e-4  # float32 output
