"""Map quality measures against values worked out by hand."""
import numpy as np
import pytest

from preprocess.map_quality import (asymmetry_mm, horizontal_roughness, map_quality, masked_median,
                                    nose_offset, valid_fraction)

H = W = 112
ROWS, COLS = np.mgrid[0:H, 0:W].astype(np.float64)
ALL = np.ones((H, W), bool)


def symmetric_face():
    """A depth map mirror-symmetric about the vertical centre line (c <-> W-1-c)."""
    x = COLS - (W - 1) / 2
    return -0.01 * x ** 2 - 0.003 * (ROWS - 40) ** 2 + 2.0 * np.cos(ROWS / 9.0)


def test_a_mirror_symmetric_map_has_no_asymmetry():
    assert asymmetry_mm(symmetric_face(), ALL) == pytest.approx(0.0, abs=1e-12)


def test_a_planted_antisymmetric_term_gives_the_hand_computed_asymmetry():
    # d - mirror(d) = 2a (c - 55.5); mean over c = 0..111 of |c - 55.5| is
    # 2 (0.5 + 1.5 + ... + 55.5) / 112 = 2 * 1568 / 112 = 28, so the mean is 56 a.
    a = 0.05
    assert asymmetry_mm(symmetric_face() + a * (COLS - (W - 1) / 2), ALL) == pytest.approx(56 * a)


def test_asymmetry_counts_only_pixels_valid_on_both_sides():
    # W = 4, d = a (c - 1.5): |d - mirror d| = 3a on columns 0 and 3, a on 1 and 2.
    a = 2.0
    d = np.tile(a * (np.arange(4) - 1.5), (3, 1))
    assert asymmetry_mm(d, np.ones((3, 4), bool)) == pytest.approx(2 * a)
    v = np.ones((3, 4), bool)
    v[:, 0] = False  # column 3 loses its mirror too: only columns 1, 2 remain
    d[:, 3] = 1e6  # ...so its value no longer matters
    assert asymmetry_mm(d, v) == pytest.approx(a)
    assert np.isnan(asymmetry_mm(d, np.zeros((3, 4), bool)))


def test_a_single_peak_gives_its_offset_from_the_centre():
    r0, c0 = 40, 70  # centre is (55.5, 55.5): offset hypot(15.5, 14.5)
    d = -0.02 * ((ROWS - r0) ** 2 + (COLS - c0) ** 2)
    n = nose_offset(d, ALL)
    assert (n.row, n.col) == (r0, c0)
    assert n.distance_px == pytest.approx(np.hypot(15.5, 14.5))


def test_the_nose_ignores_a_lone_spike_and_invalid_pixels():
    r0, c0 = 60, 50
    d = -0.02 * ((ROWS - r0) ** 2 + (COLS - c0) ** 2)
    d[10, 100] = 50.0  # one-pixel scanner spike, valid: the median removes it
    v = ALL.copy()
    v[100:, :] = False
    d[105, 5] = 80.0  # a high invalid pixel is not the face
    n = nose_offset(d, v)
    assert (n.row, n.col) == (r0, c0)
    assert n.distance_px == pytest.approx(np.hypot(4.5, 5.5))
    assert nose_offset(d, v, smooth_radius_px=0).col == 100  # without smoothing the spike wins
    assert np.isnan(nose_offset(d, np.zeros_like(v)).distance_px)


def test_a_flat_top_gives_the_centroid_of_its_pixels():
    d = np.zeros((5, 6))
    d[1:4, 1:5] = 1.0  # plateau rows 1..3, columns 1..4 -> centre (2, 2.5)
    n = nose_offset(d, np.ones((5, 6), bool), smooth_radius_px=0)
    assert (n.row, n.col) == (2.0, 2.5)
    assert n.distance_px == pytest.approx(0.0)


def test_masked_median_leaves_out_invalid_neighbours():
    a = np.array([[1.0, 2.0, 100.0], [3.0, 4.0, 100.0], [5.0, 6.0, 100.0]])
    v = np.ones((3, 3), bool)
    v[:, 2] = False
    m = masked_median(a, v, 1)
    assert m[1, 1] == pytest.approx(3.5)  # median of 1..6
    assert m[0, 0] == pytest.approx(2.5)  # median of 1, 2, 3, 4
    assert np.isnan(m[:, 2]).all()


def test_roughness_of_a_checkerboard_is_twice_its_amplitude():
    a = 0.3
    board = 0.5 + a * np.where((ROWS + COLS) % 2 == 0, 1.0, -1.0)
    assert horizontal_roughness(board, ALL) == pytest.approx(2 * a)
    assert horizontal_roughness(np.full((H, W), 0.7), ALL) == pytest.approx(0.0)


def test_roughness_uses_only_pairs_valid_on_both_pixels():
    c = np.array([[0.0, 0.2, 0.9, 0.1], [0.4, 0.4, 0.0, 1.0]])
    v = np.array([[True, True, False, True], [True, True, True, False]])
    # valid pairs: row 0 (0,1) -> 0.2; row 1 (0,1) -> 0.0, (1,2) -> 0.4
    assert horizontal_roughness(c, v) == pytest.approx(0.6 / 3)
    assert np.isnan(horizontal_roughness(c, np.eye(2, 4, dtype=bool)))


def test_valid_fraction_and_map_quality():
    v = np.zeros((4, 5), bool)
    v[:, :2] = True
    assert valid_fraction(v) == pytest.approx(8 / 20)
    # a paraboloid peaking at row 40 on the centre line: columns 55 and 56 tie, so the
    # tip is (40, 55.5), 15.5 px above the centre (55.5, 55.5)
    d = -0.01 * (COLS - (W - 1) / 2) ** 2 - 0.01 * (ROWS - 40) ** 2
    q = map_quality(d, ALL, np.full((H, W), 0.5))
    assert q.asymmetry_mm == pytest.approx(0.0, abs=1e-12)
    assert q.valid_fraction == 1.0 and q.shape_index_roughness == 0.0
    assert q.nose_offset_px == pytest.approx(15.5)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError):
        asymmetry_mm(np.zeros((3, 4)), np.ones((4, 3), bool))
