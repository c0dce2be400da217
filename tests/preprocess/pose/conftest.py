"""Shared material of the pose tests: a synthetic face with its exact landmarks, a
template surface built from *other* synthetic subjects, a plane, and rigid motions.

The face is a neutral subject of the sample's face model
(:mod:`preprocess.synthetic.face_model`), seed 7, nose tip at the origin of the
canonical frame (+Z out of the face, +Y up); the template surface is the mean of the
neutral faces of 8 subjects of seed 0 (the face of seed 7 is not among them).  Tests
that need a known target pass this surface explicitly: the shipped surface
(``preprocess/data/template_surface.npz``) is data that may be rebuilt from other scans.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

FACE_SEED = 7
SURFACE_SEED = 0
SURFACE_SUBJECTS = 8


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) R = Ry(yaw) @ Rx(pitch) @ Rz(roll), right-handed, degrees."""
    a, b, c = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def angle_deg(R: np.ndarray) -> float:
    """Rotation angle of a (3, 3) rotation, degrees (acos((tr R - 1) / 2))."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def pose_errors(registration, R_true: np.ndarray, t_true: np.ndarray) -> tuple[float, float]:
    """A scan made as ``p_scan = R_true p + t_true`` from a canonical face whose nose tip
    is the origin: the registration (``p_canonical ~= R p_scan + t``) should be
    ``R = R_true^T``; returns (angle of R @ R_true, degrees; distance of the scan's nose
    tip ``t_true`` from the origin after the registration, mm)."""
    return (angle_deg(registration.R @ R_true),
            float(np.linalg.norm(registration.apply(np.asarray(t_true, float)[None])[0])))


@dataclass(frozen=True)
class Face:
    vertices: np.ndarray      # (V, 3) mm, canonical frame, nose tip at the origin
    faces: np.ndarray         # (F, 3) int
    landmarks: np.ndarray     # (68, 3) mm, iBUG order, same frame (the generator's truth)


@pytest.fixture(scope="session")
def face() -> Face:
    from preprocess.synthetic.face_model import FaceModel, lattice, random_face_params

    # as preprocess.pose.template_surface.synthetic_meshes(1, FACE_SEED), keeping the model
    model = FaceModel(random_face_params(np.random.default_rng(FACE_SEED)))
    lat = lattice(1.0)
    tip = model.nose_tip("neutral", 0.0)
    return Face(model.surface(lat.points * model.scale) - tip, lat.triangles(),
                model.landmarks3d("neutral", 0.0) - tip)


@pytest.fixture(scope="session")
def synthetic_surface():
    from preprocess.pose.template_surface import surface_from_meshes, synthetic_meshes

    return surface_from_meshes(synthetic_meshes(SURFACE_SUBJECTS, SURFACE_SEED),
                               provenance=f"tests: {SURFACE_SUBJECTS} synthetic subjects, "
                                          f"seed {SURFACE_SEED}")


def grid_mesh(n: int = 101, half_mm: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    """The plane z = 0 over [-half, half]^2 mm as an n x n vertex grid, two triangles a
    cell (counter-clockwise seen from +Z)."""
    s = np.linspace(-half_mm, half_mm, n)
    X, Y = np.meshgrid(s, s)
    v = np.column_stack([X.ravel(), Y.ravel(), np.zeros(n * n)])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    f = np.concatenate([np.column_stack([a.ravel(), b.ravel(), c.ravel()]),
                        np.column_stack([a.ravel(), c.ravel(), d.ravel()])])
    return v, f
