"""Sequence warps against known transforms: ramps, similarities, and a marker painted on
the image that must land where the written landmark says."""
import numpy as np
import pytest

from preprocess.synthetic.astronaut import astronaut_image, astronaut_landmarks
from preprocess.synthetic.expressions import EXPRESSIONS
from preprocess.synthetic.face_model import MM_PER_PX, FaceModel
from preprocess.synthetic.sequences import (
    ExpressionWarp, compose, frame_affines, framing, onset_apex_offset, onset_to_apex,
    random_head_motion, render_frames, similarity, to_gray,
)


def test_ramps():
    r = onset_to_apex(7)
    assert r[0] == 0.0 and r[-1] == 1.0 and np.all(np.diff(r) > 0)
    m = onset_apex_offset(9)
    assert m[0] == 0.0 and m[4] == 1.0 and m[-1] == 0.0 and np.argmax(m) == 4
    m = onset_apex_offset(10)                       # even: apex at frame 5 = 10 // 2
    assert m[5] == 1.0 and m[0] == 0.0 and m[-1] == 0.0 and np.argmax(m) == 5


def test_similarity_known_values():
    # 90 degrees counter-clockwise on screen about (10, 10): (20, 10) -> (10, 0)
    A = similarity(90.0, 1.0, 0.0, 0.0, (10.0, 10.0))
    np.testing.assert_allclose(A @ [20.0, 10.0, 1.0], [10.0, 0.0], atol=1e-12)
    # scale 2 about (0, 0) then shift (3, -4)
    A = similarity(0.0, 2.0, 3.0, -4.0, (0.0, 0.0))
    np.testing.assert_allclose(A @ [1.0, 1.0, 1.0], [5.0, -2.0])
    B = similarity(30.0, 1.1, 1.0, 2.0, (5.0, 5.0))
    p = np.array([7.0, -3.0, 1.0])
    np.testing.assert_allclose(compose(A, B) @ p, A @ np.append(B @ p, 1.0))


def test_head_motion_stays_in_bounds():
    for k in range(20):
        m = random_head_motion(np.random.default_rng(k), 16)
        assert np.abs(m.angle_deg).max() <= 5.0 and np.abs(m.tx).max() <= 10.0
        assert np.abs(m.ty).max() <= 10.0 and np.all((m.scale >= 0.95) & (m.scale <= 1.05))
        # smooth: no jumps between frames
        assert np.abs(np.diff(m.angle_deg)).max() < 2.0


def test_neutral_frame_is_the_shifted_image():
    img = astronaut_image()
    warp = ExpressionWarp(FaceModel(), "neutral", img.shape[:2])
    A = np.array([[[1.0, 0.0, -100.0], [0.0, 1.0, -50.0]]])       # frame = image[50:, 100:]
    frames, marks = render_frames(img, warp, np.zeros(1), A, (64, 48))
    np.testing.assert_array_equal(frames[0], img[50:98, 100:164])
    np.testing.assert_allclose(marks[0], astronaut_landmarks() - [100.0, 50.0])


@pytest.mark.parametrize("expression,k", [("surprise", 8), ("happy", 54), ("anger", 21)])
def test_painted_marker_moves_with_the_landmark(expression, k):
    """Paint a dot on landmark k of a flat grey image, warp it, find the dot."""
    img = np.full((512, 512, 3), 100, np.uint8)
    x, y = astronaut_landmarks()[k].astype(int)
    yy, xx = np.mgrid[0:512, 0:512]
    img[(xx - x) ** 2 + (yy - y) ** 2 <= 4] = 255
    model = FaceModel()
    warp = ExpressionWarp(model, expression, img.shape[:2])
    base = framing((320, 240), 1.4)
    A = np.array([compose(similarity(4.0, 1.03, 5.0, -6.0, (159.5, 119.5)), base)])
    frames, marks = render_frames(img, warp, np.array([0.9]), A, (320, 240))
    g = to_gray(frames)[0].astype(float)
    w = np.clip(g - 100.0, 0, None)
    found = np.array([(w * np.arange(320)[None, :]).sum(), (w * np.arange(240)[:, None]).sum()]) / w.sum()
    np.testing.assert_allclose(found, marks[0, k], atol=0.5)
    # and the landmark moved by the table's displacement (y flipped, 1.5 mm per pixel)
    d_mm = EXPRESSIONS[expression].landmark_displacement[k]
    expected = A[0] @ np.append(astronaut_landmarks()[k] + 0.9 * warp.landmark_displacement[k], 1.0)
    np.testing.assert_allclose(marks[0, k], expected)
    moved = np.linalg.norm(warp.landmark_displacement[k])
    assert moved == pytest.approx(np.linalg.norm(d_mm[:2]) / MM_PER_PX)
    assert np.sign(warp.landmark_displacement[k][1]) == -np.sign(d_mm[1])   # up in mm = up on screen


def test_frame_affines_compose_framing_and_motion():
    m = random_head_motion(np.random.default_rng(0), 5)
    base = framing((320, 240), 1.4)
    A = frame_affines(base, m, (320, 240))
    assert A.shape == (5, 2, 3)
    # the face-box centre of the astronaut lands at the frame centre moved by (tx, ty)
    c = np.array([(175 + 265) / 2.0, (76 + 166) / 2.0, 1.0])
    for f in range(5):
        np.testing.assert_allclose(A[f] @ c, [159.5 + m.tx[f], 119.5 + m.ty[f]], atol=1e-9)
    # the face is at least 100 px wide in the frame
    L = astronaut_landmarks()
    width = np.ptp((L @ A[0, :, :2].T)[:17, 0])
    assert width >= 100.0
