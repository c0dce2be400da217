"""Face size and sharpness on hand-made frames whose answers are computed by hand."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.frame_quality import face_size, sharpness

S = 64


def _square_landmarks(x0, y0, x1, y1) -> np.ndarray:
    """68 points on the border of the box (x0, y0)-(x1, y1)."""
    t = np.linspace(0, 1, 17, endpoint=False)
    top = np.column_stack([x0 + t * (x1 - x0), np.full(17, y0)])
    right = np.column_stack([np.full(17, x1), y0 + t * (y1 - y0)])
    bottom = np.column_stack([x1 - t * (x1 - x0), np.full(17, y1)])
    left = np.column_stack([np.full(17, x0), y1 - t * (y1 - y0)])
    return np.concatenate([top, right, bottom, left])


def test_face_size_is_the_side_of_the_landmark_box():
    pts = np.stack([_square_landmarks(10, 20, 110, 45), _square_landmarks(0, 0, 30, 30)])
    np.testing.assert_allclose(face_size(pts), [50.0, 30.0])   # sqrt(100 x 25), 30


def test_sharpness_of_stripes_is_hand_computed():
    # columns alternating 0 / 10: the 4-neighbour Laplacian is +20 on the 0 columns and
    # -20 on the 10 columns (rows are constant), so its variance is 400 exactly
    img = np.zeros((S, S, 3), np.uint8)
    img[:, 1::2] = 10
    pts = _square_landmarks(8, 8, 55, 55)[None]
    assert sharpness(img[None], pts)[0] == pytest.approx(400.0)
    flat = np.full((1, S, S, 3), 77, np.uint8)
    assert sharpness(flat, pts)[0] == 0.0


def test_blur_lowers_sharpness_and_the_background_does_not_count():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    pts = _square_landmarks(16, 16, 47, 47)[None].repeat(2, axis=0)
    sharp, soft = sharpness(np.stack([img, blurred]), pts)
    assert soft < 0.1 * sharp
    # noise outside the hull leaves the measure of a flat face at 0
    noisy_bg = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    noisy_bg[12:52, 12:52] = 90
    assert sharpness(noisy_bg[None], pts[:1])[0] == 0.0


def test_bad_input():
    pts = _square_landmarks(8, 8, 55, 55)[None]
    with pytest.raises(InputError, match="landmarks"):
        face_size(np.zeros((1, 5, 2)))
    with pytest.raises(InputError, match="frames"):
        sharpness(np.zeros((1, S, S, 3), np.float32), pts)
    with pytest.raises(InputError, match="NaN"):
        sharpness(np.zeros((1, S, S, 3), np.uint8), np.full((1, 68, 2), np.nan))
