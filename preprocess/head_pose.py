"""Head pose (yaw, pitch, roll) of a face from its 68 image landmarks.

The 68 landmarks are fitted to the 3-D iBUG-68 points of the registration template
(:func:`preprocess.template.load_template`, mm, a real face) by OpenCV's ``solvePnP``
(SQPnP, the globally optimal solver, polished by Levenberg-Marquardt on the
reprojection error), on the points that an
expression moves least: the nose (27-35) and the eyes (36-47), 21 points, not coplanar
(the nose stands out ~30 mm).  The jaw line (0-16) is a silhouette, not a fixed point
of the head, and the brows and mouth move with the expression.

Camera model: a pinhole with square pixels, focal length ``f = max(W, H)`` pixels
(a ~53 degree field of view across the larger side, typical of webcams and the
datasets' cameras; the true focal length is unknown), principal point at the image
centre ``((W - 1) / 2, (H - 1) / 2)``, no lens distortion.  A wrong focal length mostly
changes the fitted distance; the angles change little for faces that fill a small part
of the field of view.

Angles (degrees) are of the head in the camera-facing frame: x image-right, y image-up,
z toward the camera (the registration frame of DESIGN.md seen by the camera), with
``R_head = Rz(roll) Ry(yaw) Rx(pitch)`` taking the frontal template to the observed
head.  yaw > 0 turns the face toward image right (the subject's left), pitch > 0 tilts
it down (the face direction +Z toward -Y), roll > 0 turns it counter-clockwise on the
screen.  Rotations are relative to the camera axis, so a frontal face far off the
image centre has a small yaw/pitch from the perspective.

Why by hand: the PnP solve is OpenCV's; only the choice of points, the camera model and
the angle convention are this module's.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from data_schema.errors import InputError
from preprocess.landmarks import check_landmark_frames

#: iBUG-68 points (0-based) the pose is fitted on: the nose and the eyes.
POSE_POINTS = tuple(range(27, 48))
# OpenCV's camera looks along +z with y down; the template's face looks along +Z with
# +Y up, so object points are the template turned 180 degrees about x.
_TO_CV = np.diag([1.0, -1.0, -1.0])


@lru_cache(maxsize=1)
def _model_points() -> np.ndarray:
    from preprocess.template import load_template

    return np.ascontiguousarray(load_template().points[list(POSE_POINTS)] @ _TO_CV)


def camera_matrix(width: int, height: int) -> np.ndarray:
    """(3, 3) float64 pinhole intrinsics of the module docstring for a W x H image."""
    f = float(max(width, height))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def euler_from_rotation(R: np.ndarray) -> np.ndarray:
    """(3,) float64 (yaw, pitch, roll) degrees of a (3, 3) rotation
    ``R = Rz(roll) Ry(yaw) Rx(pitch)`` (yaw in [-90, 90])."""
    yaw = math.asin(max(-1.0, min(1.0, -float(R[2, 0]))))
    pitch = math.atan2(float(R[2, 1]), float(R[2, 2]))
    roll = math.atan2(float(R[1, 0]), float(R[0, 0]))
    return np.degrees([yaw, pitch, roll])


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) float64 ``Rz(roll) Ry(yaw) Rx(pitch)``, angles in degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def project_model(R_head: np.ndarray, t_cv: np.ndarray, width: int, height: int) -> np.ndarray:
    """(68, 2) float64 pixels of the template's 68 points for head rotation ``R_head``
    (camera-facing frame) and translation ``t_cv`` (mm, OpenCV camera frame: x right,
    y down, z away from the camera).  For tests and planted poses."""
    from preprocess.template import load_template

    P = load_template().points @ _TO_CV
    R_cv = _TO_CV @ R_head @ _TO_CV
    cam = P @ R_cv.T + np.asarray(t_cv, np.float64)
    K = camera_matrix(width, height)
    return (cam[:, :2] / cam[:, 2:3]) * [K[0, 0], K[1, 1]] + K[:2, 2]


def head_pose(points68: np.ndarray, width: int, height: int) -> np.ndarray:
    """Yaw, pitch, roll of each face, degrees (module docstring).

    points68 : (T, 68, 2) float, input-frame pixels (x right, y down) of T faces.
    width, height : frame size, pixels.
    Returns (T, 3) float32 (yaw, pitch, roll).  Raises InputError for a wrong shape or
    NaN/inf points; ValueError for a non-positive frame size.
    """
    p = check_landmark_frames(points68)
    if not (width > 0 and height > 0):
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    K = camera_matrix(int(width), int(height))
    model = _model_points()
    out = np.zeros((len(p), 3), np.float32)
    for i, pts in enumerate(p):
        img = np.ascontiguousarray(pts[list(POSE_POINTS)])
        # SQPnP finds the global minimum (no flipped local solution from a poor start,
        # which the default DLT start gives under ~1 px noise); LM then polishes it
        ok, rv, tv = cv2.solvePnP(model, img, K, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            raise InputError("landmarks", f"face {i}: no head pose fits the landmarks")
        rv, tv = cv2.solvePnPRefineLM(model, img, K, None, rv, tv)
        R_cv, _ = cv2.Rodrigues(rv)
        out[i] = euler_from_rotation(_TO_CV @ R_cv @ _TO_CV)
    return out
