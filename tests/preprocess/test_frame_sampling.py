"""Frame sampling (STCAM 4.2, HACN 3.1, WS-LGAN IV-A/IV-B) and WS-LGAN's 48 x 48 view.

Every expected index array below was worked out by hand from the rules in the module
docstring, not printed from the code:

* STCAM: peak p = n - 1 ("last") or n // 2 ("middle"); out[j] = p * j / 6 rounded half
  up.  E.g. n = 8, last: 7j/6 = 0, 1.17, 2.33, 3.5, 4.67, 5.83, 7 -> 0 1 2 4 5 6 7;
  n = 60, last: 59j/6 = 0, 9.83, 19.67, 29.5, 39.33, 49.17, 59 -> 0 10 20 30 39 49 59.
* HACN: segment i = [floor(i n / 5), floor((i + 1) n / 5)), centre (lo + hi) // 2;
  n = 7: bounds 0 1 2 4 5 7 -> centres 0 1 3 4 6; n = 8: 0 1 3 4 6 8 -> 0 2 3 5 7.
* WS-LGAN: n-3, n-2, n-1, the last repeated when n < 3.

The view tests plant pixels where the crop must land (a bright square exactly the size
of the margin-expanded box) and a known rotation (the levelled view of a rotated frame
must match the view of the unrotated one).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.frame_sampling import (
    STCAM_PEAK,
    hacn_segment_bounds,
    hacn_segments,
    stcam_indices,
    stcam_jitter,
    stcam_peak_index,
    wslgan_last3,
    wslgan_view,
)

LENGTHS = (1, 2, 5, 7, 8, 60)

STCAM_LAST = {
    1: [0, 0, 0, 0, 0, 0, 0],
    2: [0, 0, 0, 1, 1, 1, 1],   # j/6: 0.5 -> 1 (half up)
    5: [0, 1, 1, 2, 3, 3, 4],   # 4j/6
    7: [0, 1, 2, 3, 4, 5, 6],
    8: [0, 1, 2, 4, 5, 6, 7],
    60: [0, 10, 20, 30, 39, 49, 59],
}
STCAM_MIDDLE = {            # MMI: peak n // 2
    1: [0, 0, 0, 0, 0, 0, 0],
    2: [0, 0, 0, 1, 1, 1, 1],   # p = 1
    5: [0, 0, 1, 1, 1, 2, 2],   # p = 2: 2j/6
    7: [0, 1, 1, 2, 2, 3, 3],   # p = 3: j/2, 0.5 / 1.5 / 2.5 round up
    8: [0, 1, 1, 2, 3, 3, 4],   # p = 4
    60: [0, 5, 10, 15, 20, 25, 30],
}
HACN_EVAL = {
    1: [0],
    2: [0, 1],
    5: [0, 1, 2, 3, 4],
    7: [0, 1, 3, 4, 6],
    8: [0, 2, 3, 5, 7],
    60: [6, 18, 30, 42, 54],   # segments of 12: upper middle of 0..11 is 6
}
WSLGAN = {
    1: [0, 0, 0],
    2: [0, 1, 1],
    5: [2, 3, 4],
    7: [4, 5, 6],
    8: [5, 6, 7],
    60: [57, 58, 59],
}


def _check(got, want):
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64))


# ---------------------------------------------------------------- exact tables

@pytest.mark.parametrize("n", LENGTHS)
def test_stcam_last_peak_table(n):
    _check(stcam_indices(n), STCAM_LAST[n])
    _check(stcam_indices(n, peak="last", k=7), STCAM_LAST[n])


@pytest.mark.parametrize("n", LENGTHS)
def test_stcam_middle_peak_table(n):
    _check(stcam_indices(n, peak=STCAM_PEAK["mmi"]), STCAM_MIDDLE[n])


@pytest.mark.parametrize("n", LENGTHS)
def test_hacn_evaluation_table(n):
    _check(hacn_segments(n), HACN_EVAL[n])
    _check(hacn_segments(n, 5, None), HACN_EVAL[n])


@pytest.mark.parametrize("n", LENGTHS)
def test_wslgan_last3_table(n):
    _check(wslgan_last3(n), WSLGAN[n])


def test_stcam_other_k_rounds_half_up():
    _check(stcam_indices(60, k=3), [0, 30, 59])        # 29.5 -> 30
    _check(stcam_indices(10, k=2), [0, 9])
    _check(stcam_indices(4, k=5), [0, 1, 2, 2, 3])     # 3j/4 = 0 .75 1.5 2.25 3
    _check(stcam_indices(np.int64(8)), STCAM_LAST[8])  # numpy integers accepted


# ---------------------------------------------------------------- MMI peak

def test_mmi_peak_is_the_middle_frame():
    assert STCAM_PEAK == {"ckplus": "last", "oulu": "last", "mmi": "middle"}
    assert [stcam_peak_index(n, "middle") for n in (1, 2, 3, 7, 8, 60)] == [0, 1, 1, 3, 4, 30]
    assert [stcam_peak_index(n, "last") for n in (1, 2, 8, 60)] == [0, 1, 7, 59]
    # neutral -> peak -> neutral intensity ramp: the sampled peak is the ramp's apex,
    # every sample lies on the rising half, and the first sample is the neutral frame
    ramp = np.array([0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0])
    idx = stcam_indices(len(ramp), peak="middle")
    assert idx[-1] == np.argmax(ramp) == 5
    assert idx[0] == 0 and ramp[idx[0]] == 0
    assert (np.diff(ramp[idx]) >= 0).all()


# ---------------------------------------------------------------- STCAM jitter

@pytest.mark.parametrize("peak", ["last", "middle"])
@pytest.mark.parametrize("n", (*LENGTHS, 3, 18))
@pytest.mark.parametrize("shift", [0, 1, 3, 100])
def test_jitter_in_range_and_ordered_over_1000_draws(n, peak, shift):
    rng = np.random.default_rng(1000 * n + shift)
    base = stcam_indices(n, peak=peak)
    p = stcam_peak_index(n, peak)
    draws = np.stack([stcam_jitter(n, rng, peak=peak, max_shift=shift) for _ in range(1000)])
    assert draws.dtype == np.int64 and draws.shape == (1000, 7)
    assert (draws >= 0).all() and (draws <= n - 1).all() and (draws <= p).all()
    assert (np.diff(draws, axis=1) >= 0).all()                    # order kept
    assert (draws[:, 0] == 0).all() and (draws[:, -1] == p).all()  # neutral, peak fixed
    assert (np.abs(draws - base) <= shift).all()
    rising = np.diff(base) > 0                                     # no new repeats
    assert (np.diff(draws, axis=1)[:, rising] > 0).all()
    if shift == 0:
        assert (draws == base).all()


def test_jitter_windows_by_hand():
    # n = 60, CK+ peak: base 0 10 20 30 39 49 59; pair midpoints (a + b) // 2 =
    # 5 15 25 34 44 54 go to the left index, so with an unbounded shift the inner
    # windows are 6..15, 16..25, 26..34, 35..44, 45..54.
    rng = np.random.default_rng(7)
    draws = np.stack([stcam_jitter(60, rng, max_shift=100) for _ in range(1000)])
    windows = [(6, 15), (16, 25), (26, 34), (35, 44), (45, 54)]
    for j, (lo, hi) in enumerate(windows, start=1):
        assert set(draws[:, j].tolist()) == set(range(lo, hi + 1))
    # max_shift 3: index 1 (base 10) ranges over 7..13, uniformly
    draws = np.stack([stcam_jitter(60, rng, max_shift=3) for _ in range(1000)])
    assert set(draws[:, 1].tolist()) == set(range(7, 14))
    counts = np.bincount(draws[:, 1] - 7, minlength=7)
    assert counts.min() > 100  # expected 1000 / 7 = 143 each


def test_jitter_is_deterministic_given_the_rng():
    a = [stcam_jitter(40, np.random.default_rng(5), max_shift=2) for _ in range(3)]
    assert all((x == a[0]).all() for x in a)
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    s1 = [stcam_jitter(40, g1, max_shift=2) for _ in range(20)]
    s2 = [stcam_jitter(40, g2, max_shift=2) for _ in range(20)]
    assert all((x == y).all() for x, y in zip(s1, s2, strict=True))
    assert len({tuple(x) for x in s1}) > 1  # the generator advances
    _check(stcam_jitter(40, 5, max_shift=2), a[0])  # an int seed = default_rng(seed)
    with pytest.raises(TypeError, match="rng"):
        stcam_jitter(40, None, max_shift=2)


# ---------------------------------------------------------------- HACN

def test_hacn_bounds_by_hand():
    _check(hacn_segment_bounds(7), [0, 1, 2, 4, 5, 7])
    _check(hacn_segment_bounds(8), [0, 1, 3, 4, 6, 8])
    _check(hacn_segment_bounds(60), [0, 12, 24, 36, 48, 60])
    _check(hacn_segment_bounds(5), [0, 1, 2, 3, 4, 5])
    _check(hacn_segment_bounds(10, k=3), [0, 3, 6, 10])
    with pytest.raises(ValueError, match="segments"):
        hacn_segment_bounds(4)


@pytest.mark.parametrize("n", [5, 7, 8, 13, 60])
def test_hacn_training_frame_lies_in_its_own_segment(n):
    rng = np.random.default_rng(n)
    bounds = hacn_segment_bounds(n)
    draws = np.stack([hacn_segments(n, rng=rng) for _ in range(1000)])
    assert draws.dtype == np.int64 and draws.shape == (1000, 5)
    assert (draws >= bounds[:-1]).all() and (draws < bounds[1:]).all()
    for i in range(5):  # every frame of every segment can be drawn
        assert set(draws[:, i].tolist()) == set(range(bounds[i], bounds[i + 1]))
    assert ((bounds[:-1] <= hacn_segments(n)) & (hacn_segments(n) < bounds[1:])).all()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_hacn_short_sequence_takes_all_frames(n):
    _check(hacn_segments(n, rng=np.random.default_rng(0)), list(range(n)))


def test_hacn_deterministic_given_the_rng():
    a = hacn_segments(60, rng=np.random.default_rng(3))
    b = hacn_segments(60, rng=np.random.default_rng(3))
    _check(a, b.tolist())
    _check(hacn_segments(60, rng=3), a.tolist())


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("fn", [
    lambda n: stcam_indices(n), lambda n: stcam_jitter(n, 0, max_shift=1),
    lambda n: hacn_segments(n), lambda n: wslgan_last3(n), lambda n: stcam_peak_index(n),
])
@pytest.mark.parametrize("n", [0, -3])
def test_no_frames_is_a_value_error(fn, n):
    with pytest.raises(ValueError, match="n_frames"):
        fn(n)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="peak"):
        stcam_indices(10, peak="first")
    with pytest.raises(ValueError, match="k"):
        stcam_indices(10, k=1)
    with pytest.raises(ValueError, match="max_shift"):
        stcam_jitter(10, 0, max_shift=-1)
    with pytest.raises(TypeError):
        stcam_indices(True)
    with pytest.raises(TypeError):
        stcam_indices(7.0)
    with pytest.raises(TypeError, match="rng"):
        hacn_segments(10, rng="seed")


# ---------------------------------------------------------------- WS-LGAN view

def _landmarks(x0, y0, x1, y1, eye_y, seed=0):
    """68 points inside [x0, x1] x [y0, y1] touching all four sides, the 12 eye points
    (iBUG 36-47) on the row eye_y, right eye (36-41) left of the left eye (42-47)."""
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(x0 + 1, x1 - 1, 68), rng.uniform(y0 + 1, y1 - 1, 68)])
    pts[0], pts[16] = (x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)   # jaw ends
    pts[8], pts[19] = ((x0 + x1) / 2, y1), ((x0 + x1) / 2, y0)   # chin, brow
    xm = (x0 + x1) / 2
    pts[36:42, 0] = np.linspace(x0 + 4, xm - 4, 6)
    pts[42:48, 0] = np.linspace(xm + 4, x1 - 4, 6)
    pts[36:48, 1] = eye_y
    return pts


def test_view_margin_zero_is_the_exact_box():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    pts = _landmarks(100, 60, 147, 107, eye_y=75)  # box 48 x 48 pixels
    out = wslgan_view(frame, pts, margin=0.0)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    assert out.shape == (48, 48) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, gray[60:108, 100:148])
    # gray input gives the same
    np.testing.assert_array_equal(wslgan_view(gray, pts, margin=0.0), gray[60:108, 100:148])


def test_view_margin_crops_the_planted_square():
    # box 48 px, margin 0.25 -> side 48 * 1.5 = 72 around the box centre (123.5, 83.5):
    # columns 88..159, rows 48..119.  Exactly that square is bright.
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[48:120, 88:160] = 200
    pts = _landmarks(100, 60, 147, 107, eye_y=75)
    out = wslgan_view(frame, pts, margin=0.25)
    assert out.shape == (48, 48)
    assert (out == 200).all()
    # the same landmarks one pixel to the right take in one dark column
    shifted = wslgan_view(frame, pts + np.array([1.0, 0.0]), margin=0.25)
    assert shifted.min() < 200 and (shifted[:, :-1] == 200).all()


def test_view_without_landmarks_uses_the_central_square():
    # 2 x 2 blocks of known values: INTER_AREA halves them to their means
    frame = np.zeros((96, 96), np.uint8)
    frame[0::2, 0::2], frame[0::2, 1::2], frame[1::2, 0::2], frame[1::2, 1::2] = 10, 20, 30, 40
    np.testing.assert_array_equal(wslgan_view(frame), np.full((48, 48), 25, np.uint8))
    # non-square: the central 60 x 60 square (columns 20..79) is used, side strips not
    wide = np.zeros((60, 100, 3), np.uint8)
    wide[:, 20:80] = (200, 100, 50)  # gray = .299*200 + .587*100 + .114*50 = 124.2
    out = wslgan_view(wide)
    assert out.shape == (48, 48)
    assert (out == 124).all()


def test_view_levels_a_planted_rotation():
    # a smooth textured face-sized patch, then the same frame rotated by 20 degrees
    # about (150, 140): the levelled view of the rotated frame must match the view of
    # the upright one (up to bilinear resampling), the unlevelled one must not.
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (300, 300)).astype(np.float32)
    upright = cv2.GaussianBlur(noise, (0, 0), 6)
    upright = cv2.normalize(upright, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    pts = _landmarks(100, 90, 199, 189, eye_y=120)
    phi = math.radians(20.0)
    c, s = math.cos(phi), math.sin(phi)
    centre = np.array([150.0, 140.0])
    R = np.array([[c, -s], [s, c]])
    M = np.hstack([R, (centre - R @ centre)[:, None]])
    rotated = cv2.warpAffine(upright, M, (300, 300), flags=cv2.INTER_LINEAR)
    pts_r = (pts - centre) @ R.T + centre
    d = pts_r[42:48].mean(0) - pts_r[36:42].mean(0)
    assert math.degrees(math.atan2(d[1], d[0])) == pytest.approx(20.0)

    want = wslgan_view(upright, pts).astype(float)
    got = wslgan_view(rotated, pts_r).astype(float)
    unlevelled = wslgan_view(rotated, pts_r, level_eyes=False).astype(float)
    # measured: 0.14 vs 30 grey levels mean absolute difference
    assert np.abs(got - want).mean() < 1.0
    assert np.abs(unlevelled - want).mean() > 10.0


def test_view_ignores_absent_points():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    pts = _landmarks(50, 40, 129, 139, eye_y=70)
    holed = pts.copy()
    holed[60:68] = 0.0  # missing mouth points held as 0.0, as LandmarkResult does
    present = np.ones(68, bool)
    present[60:68] = False
    # those points were inside the box, so the box and the view do not change
    np.testing.assert_array_equal(wslgan_view(frame, holed, present=present),
                                  wslgan_view(frame, pts))
    # without the mask the (0, 0) rows would stretch the box
    assert not np.array_equal(wslgan_view(frame, holed), wslgan_view(frame, pts))


def test_view_small_face_and_other_sizes():
    frame = np.full((100, 100, 3), 90, np.uint8)
    tiny = wslgan_view(frame, _landmarks(40, 40, 59, 59, eye_y=45))  # 20 px face
    assert tiny.shape == (48, 48) and tiny.dtype == np.uint8 and (tiny == 90).all()
    assert wslgan_view(frame, None, size=64).shape == (64, 64)


def test_view_face_at_the_border_is_padded_black():
    frame = np.full((100, 100), 255, np.uint8)
    pts = _landmarks(-20, 10, 27, 57, eye_y=25)  # box 48 px, 20 columns off the left
    out = wslgan_view(frame, pts, margin=0.0)
    assert (out[:, :20] == 0).all() and (out[:, 20:] == 255).all()


@pytest.mark.parametrize("frame, pts, reason", [
    (np.zeros((50, 50, 3), np.float32), None, "uint8"),
    (np.zeros((50, 50, 4), np.uint8), None, "shape"),
    (np.zeros((0, 50, 3), np.uint8), None, "empty"),
    (np.zeros((50, 50, 3), np.uint8), np.zeros((67, 2)), "wrong landmark count"),
    (np.zeros((50, 50, 3), np.uint8), np.full((68, 2), np.nan), "NaN"),
    (np.zeros((50, 50, 3), np.uint8), np.full((68, 2), 20.0), "degenerate"),
    (np.zeros((50, 50, 3), np.uint8), _landmarks(200, 200, 230, 230, 210), "outside"),
    (np.zeros((50, 50, 3), np.uint8), _landmarks(0, 0, 1e6, 1e6, 10), "larger than twice"),
])
def test_view_bad_input(frame, pts, reason):
    with pytest.raises(InputError, match=reason) as e:
        wslgan_view(frame, pts, item="S005/001")
    assert str(e.value).startswith("S005/001: ")


def test_view_too_few_present_points_and_bad_margin():
    frame = np.zeros((50, 50, 3), np.uint8)
    present = np.zeros(68, bool)
    present[3] = True
    with pytest.raises(InputError, match="present"):
        wslgan_view(frame, _landmarks(5, 5, 40, 40, 20), present=present)
    with pytest.raises(ValueError, match="margin"):
        wslgan_view(frame, None, margin=-0.1)
