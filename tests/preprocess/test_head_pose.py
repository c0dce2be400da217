"""Head pose from 68 landmarks: planted 3-D rotations projected by a pinhole camera
built here from first principles, and the sample's known in-plane head motion."""
from __future__ import annotations

import math

import numpy as np
import pytest

from data_schema.errors import InputError
from data_schema.params import SynthParams
from preprocess.head_pose import (
    camera_matrix, euler_from_rotation, head_pose, rotation_from_euler,
)
from preprocess.synthetic.astronaut import astronaut_image, astronaut_landmarks
from preprocess.synthetic.sample import render_sequence
from preprocess.synthetic.sequences import onset_to_apex
from preprocess.template import load_template

W, H = 640, 480


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _photo(yaw, pitch, roll, distance=600.0, shift=(0.0, 0.0)) -> np.ndarray:
    """(68, 2) pixels of the template head turned by Rz(roll) Ry(yaw) Rx(pitch) (x
    right, y up, z toward the camera), its nose tip ``distance`` mm in front of a pinhole
    camera with f = max(W, H) looking along -z: u = cx + f X / (d - Z), v = cy - f Y / (d - Z)."""
    P = load_template().points @ (_rot("z", roll) @ _rot("y", yaw) @ _rot("x", pitch)).T
    P = P + [shift[0], shift[1], 0.0]
    f, cx, cy = max(W, H), (W - 1) / 2, (H - 1) / 2
    depth = distance - P[:, 2]
    return np.column_stack([cx + f * P[:, 0] / depth, cy - f * P[:, 1] / depth])


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (0, -20, 0), (0, 0, 15),
                                    (-30, 15, -10), (12, 28, 35)])
def test_planted_rotations_are_recovered_exactly(angles):
    got = head_pose(_photo(*angles)[None], W, H)[0]
    np.testing.assert_allclose(got, angles, atol=1e-3)


def test_the_sign_conventions():
    # yaw > 0: the nose tip (30) swings to image right of the eyes' midpoint
    p = _photo(20, 0, 0)
    assert p[30, 0] > 0.5 * (p[36, 0] + p[45, 0]) + 10
    # pitch > 0: the face tilts down, the nose tip drops further below the eyes
    def drop(p):
        return p[30, 1] - 0.5 * (p[36, 1] + p[45, 1])
    assert drop(_photo(0, 20, 0)) > drop(_photo(0, 0, 0)) + 5
    # roll > 0: counter-clockwise on screen, the subject's left eye (45, image right) rises
    p = _photo(0, 0, 15)
    assert p[45, 1] < p[36, 1] - 10
    assert head_pose(p[None], W, H)[0, 2] == pytest.approx(15, abs=1e-3)


def test_one_pixel_noise_costs_little():
    rng = np.random.default_rng(3)
    truth = np.array([15.0, -10.0, 5.0])
    pts = _photo(*truth, shift=(40.0, -30.0)) + rng.normal(0, 1.0, (200, 68, 2))
    err = np.abs(head_pose(pts, W, H) - truth)
    assert err.mean(axis=0).max() < 1.5 and err.max() < 5.0


def test_euler_round_trip_and_camera():
    for a in [(10, 20, 30), (-45, 5, -170), (80, -60, 90)]:
        np.testing.assert_allclose(euler_from_rotation(rotation_from_euler(*a)), a, atol=1e-9)
        np.testing.assert_allclose(rotation_from_euler(*a),
                                   _rot("z", a[2]) @ _rot("y", a[0]) @ _rot("x", a[1]), atol=1e-12)
    np.testing.assert_allclose(camera_matrix(640, 480), [[640, 0, 319.5], [0, 640, 239.5], [0, 0, 1]])


def test_the_sample_head_motion_is_recovered():
    """The sample's CK+ sequences turn the astronaut photo in the image plane by known
    angles; the head's roll is the photo's own (measured on its landmarks) plus that."""
    photo = astronaut_image()
    base = head_pose(astronaut_landmarks()[None], photo.shape[1], photo.shape[0])[0]
    for subject, session, expr in [("S005", "001", "happy"), ("S010", "002", "surprise")]:
        frames, landmarks, rec = render_sequence(SynthParams(), "ckplus", subject, session, expr,
                                                 onset_to_apex)
        angle = np.asarray(rec["head_motion"]["angle_deg"])
        assert np.ptp(angle) > 1.0                      # the motion is there to recover
        pose = head_pose(landmarks, frames.shape[2], frames.shape[1])
        # frame to frame, the roll follows the known angle (the expression moves the
        # eyes a little); its offset is the photo's own tilt, to within the perspective
        # of a face placed elsewhere in a smaller frame
        offset = pose[:, 2] - angle
        assert np.ptp(offset) < 0.5
        assert abs(offset.mean() - base[2]) < 2.0
        # no turn, no nod: the sample's faces are drawn flat (orthographic) and slide
        # across the frame; the pinhole model reads a slide of s pixels as a turn of up
        # to atan(s / f) (~2 degrees here)
        assert np.ptp(pose[:, 0]) < 3.0 and np.ptp(pose[:, 1]) < 3.0


@pytest.mark.parametrize("pts, reason", [
    (np.zeros((2, 67, 2)), r"expected \(T, 68, 2\)"),
    (np.full((1, 68, 2), np.nan), "NaN"),
])
def test_bad_landmarks(pts, reason):
    with pytest.raises(InputError, match=reason):
        head_pose(pts, W, H)
    with pytest.raises(ValueError, match="positive"):
        head_pose(_photo(0, 0, 0)[None], 0, H)
