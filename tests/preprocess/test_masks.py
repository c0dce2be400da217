"""FFNet-M masks (seed ffnet_m 2.2, eq. 1-2): every expected patch below was worked out
by hand from w = 1 - 0.1 * |P - L|_1 within Chebyshev distance 2 (mask-1) or 1
(mask-2, landmarks halved), landmarks rounded half up, max over landmarks."""
from __future__ import annotations

import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.masks import LandmarkMasks, landmark_masks, mask1, mask2

# One landmark, mask-1: Manhattan distances 0..4 over the 5 x 5 square.
ONE_5x5 = np.array([
    [.6, .7, .8, .7, .6],
    [.7, .8, .9, .8, .7],
    [.8, .9, 1., .9, .8],
    [.7, .8, .9, .8, .7],
    [.6, .7, .8, .7, .6],
], dtype=np.float32)

# One landmark, mask-2: 3 x 3 square.
ONE_3x3 = np.array([
    [.8, .9, .8],
    [.9, 1., .9],
    [.8, .9, .8],
], dtype=np.float32)


def expect_only(mask: np.ndarray, top: int, left: int, patch: np.ndarray) -> None:
    """``mask`` equals ``patch`` at (top, left) and is 0 everywhere else."""
    want = np.zeros_like(mask)
    want[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    np.testing.assert_allclose(mask, want, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- mask-1

def test_mask1_one_landmark():
    m = mask1(np.array([[5.0, 7.0]]))  # x = column 5, y = row 7
    assert m.shape == (56, 56) and m.dtype == np.float32
    expect_only(m, 5, 3, ONE_5x5)


def test_mask1_rounds_landmark_to_nearest_pixel():
    expect_only(mask1(np.array([[5.4, 6.6]])), 5, 3, ONE_5x5)   # -> (5, 7)
    expect_only(mask1(np.array([[5.5, 7.5]])), 6, 4, ONE_5x5)   # half up -> (6, 8)
    expect_only(mask1(np.array([[5.49, 7.49]])), 5, 3, ONE_5x5)


def test_mask1_two_overlapping_landmarks_take_the_max():
    m = mask1(np.array([[5.0, 5.0], [7.0, 5.0]]))  # two apart along a row
    patch = np.array([
        # cols 3..9 ; rows 3..7
        [.6, .7, .8, .7, .8, .7, .6],
        [.7, .8, .9, .8, .9, .8, .7],
        [.8, .9, 1., .9, 1., .9, .8],
        [.7, .8, .9, .8, .9, .8, .7],
        [.6, .7, .8, .7, .8, .7, .6],
    ], dtype=np.float32)
    expect_only(m, 3, 3, patch)


def test_mask1_diagonal_overlap():
    m = mask1(np.array([[10.0, 10.0], [11.0, 11.0]]))
    # pixel (x=11, y=10): from L1 0.9, from L2 0.9 -> 0.9; (12, 12): L1 0.6 (d=2, |.|1=4)
    # L2 0.8 -> 0.8; (9, 9): L1 0.8, L2 0.6 -> 0.8.
    assert m[10, 11] == pytest.approx(0.9)
    assert m[12, 12] == pytest.approx(0.8)
    assert m[9, 9] == pytest.approx(0.8)
    assert m[13, 13] == pytest.approx(0.6)     # only L2 reaches it (d = 2)
    assert m[8, 8] == pytest.approx(0.6)       # only L1
    assert m[13, 8] == 0.0                     # Chebyshev 3 from L2, L1 d = 3 too
    assert np.count_nonzero(m) == 25 + 25 - 16  # union of two 5x5 squares offset (1, 1)


def test_mask1_landmark_on_the_border():
    expect_only(mask1(np.array([[0.0, 0.0]])), 0, 0, ONE_5x5[2:, 2:])
    expect_only(mask1(np.array([[55.0, 30.0]])), 28, 53, ONE_5x5[:, :3])


def test_mask1_landmark_off_the_image_contributes_its_in_image_part():
    # x = -1: columns 0 and 1 are at dx = 1 and 2.
    expect_only(mask1(np.array([[-1.0, 10.0]])), 8, 0, ONE_5x5[:, 3:])
    # (57, 57): only pixel (55, 55), dx = dy = 2 -> 1 - 0.4.
    expect_only(mask1(np.array([[57.0, 57.0]])), 55, 55, np.array([[.6]], np.float32))
    # Chebyshev 3 or more from every pixel: nothing.
    assert not mask1(np.array([[-3.0, 10.0], [58.0, 20.0], [20.0, -2.6]])).any()
    # absurd coordinates: still nothing, no overflow
    assert not mask1(np.array([[1e300, -1e300]])).any()


def test_mask1_no_landmarks_is_all_zero():
    m = mask1(np.zeros((0, 2)))
    assert m.shape == (56, 56) and not m.any()


def test_mask1_other_size():
    expect_only(mask1(np.array([[2.0, 2.0]]), size=5), 0, 0, ONE_5x5)


# ---------------------------------------------------------------- mask-2

def test_mask2_one_landmark_halved():
    m = mask2(np.array([[10.0, 12.0]]))   # -> (5, 6) on 28 x 28
    assert m.shape == (28, 28) and m.dtype == np.float32
    expect_only(m, 5, 4, ONE_3x3)


def test_mask2_halving_then_rounding_half_up():
    expect_only(mask2(np.array([[11.0, 12.0]])), 5, 5, ONE_3x3)   # 5.5 -> 6
    expect_only(mask2(np.array([[10.9, 12.9]])), 5, 4, ONE_3x3)   # 5.45 -> 5, 6.45 -> 6


def test_mask2_two_overlapping_landmarks():
    m = mask2(np.array([[10.0, 10.0], [14.0, 10.0]]))   # -> (5, 5), (7, 5)
    patch = np.array([
        [.8, .9, .8, .9, .8],
        [.9, 1., .9, 1., .9],
        [.8, .9, .8, .9, .8],
    ], dtype=np.float32)
    expect_only(m, 4, 4, patch)


def test_mask2_border_and_off_image():
    expect_only(mask2(np.array([[0.0, 0.0]])), 0, 0, ONE_3x3[1:, 1:])
    expect_only(mask2(np.array([[-2.0, 20.0]])), 9, 0, ONE_3x3[:, 2:])   # x -> -1
    assert not mask2(np.array([[-4.0, 20.0]])).any()                       # x -> -2


# ---------------------------------------------------------------- both masks

def test_landmark_masks_use_only_the_51_inner_points():
    pts = np.full((68, 2), 40.0)
    pts[:17] = [5.0, 5.0]            # jaw: must not show up
    pts[17:] = [30.0, 20.0]          # every inner point at one pixel
    r = landmark_masks(pts)
    assert isinstance(r, LandmarkMasks)
    expect_only(r.mask56, 18, 28, ONE_5x5)
    expect_only(r.mask28, 9, 14, ONE_3x3)
    assert r.inner51.shape == (51, 2) and r.present51.all()
    np.testing.assert_array_equal(r.inner51, pts[17:])


def test_landmark_masks_rescale_from_a_larger_image_with_pixel_centres():
    pts = np.full((68, 2), 21.0)     # on 112 x 112: (21 + .5) / 2 - .5 = 10.25 on 56
    r = landmark_masks(pts, image_size=112)
    np.testing.assert_allclose(r.inner51, 10.25)
    expect_only(r.mask56, 8, 8, ONE_5x5)         # 10.25 -> 10
    expect_only(r.mask28, 4, 4, ONE_3x3)         # 5.125 -> 5


def test_landmark_masks_leave_out_missing_points():
    pts = np.zeros((68, 2))
    pts[30] = [20.0, 20.0]
    pts[36] = [40.0, 40.0]
    present = np.zeros(68, dtype=bool)
    present[30] = True
    r = landmark_masks(pts, present=present)
    expect_only(r.mask56, 18, 18, ONE_5x5)
    assert r.present51.sum() == 1 and r.present51[30 - 17]


@pytest.mark.parametrize("bad, reason", [
    (np.array([[np.nan, 1.0]]), "NaN or infinite"),
    (np.array([[1.0, np.inf]]), "NaN or infinite"),
    (np.zeros((3, 3)), r"expected \(L, 2\) landmarks"),
    (np.zeros(4), r"expected \(L, 2\) landmarks"),
])
def test_bad_landmarks_are_input_errors(bad, reason):
    with pytest.raises(InputError, match=reason):
        mask1(bad)
    with pytest.raises(InputError, match=reason):
        mask2(bad)


def test_landmark_masks_need_68_points():
    with pytest.raises(InputError, match="expected 68 landmarks, got 51"):
        landmark_masks(np.zeros((51, 2)), item="bs000_N_N_0")
    with pytest.raises(InputError, match="bs000_N_N_0: NaN"):
        landmark_masks(np.full((68, 2), np.nan), item="bs000_N_N_0")


def test_bad_sizes_are_value_errors():
    with pytest.raises(ValueError, match="positive integer"):
        mask1(np.zeros((1, 2)), size=0)
    with pytest.raises(ValueError, match="present must be"):
        landmark_masks(np.zeros((68, 2)), present=np.ones(51, bool))
