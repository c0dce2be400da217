"""Geometric registration (preprocess.pose.geometric): a face posed by its surface alone.

Truths used:
* a synthetic face in the canonical frame, nose tip at the origin (conftest), moved by a
  planted rigid motion ``p_scan = R p + t``: the registration must come back as
  ``R^T`` (angle of ``R_est @ R``) and put the scan's nose tip ``t`` on the origin.
  The target is a template surface of *other* synthetic subjects, so the fit is not
  exact: measured when this was written, 0.5-0.9 degrees and 2.5 mm at the nose tip
  (a steady (0.8, -1.6, -1.7) mm offset: the subject's face is not the mean face);
* a plane and a sphere are not faces: the fit is refused;
* the argument checks of the docstring (InputError naming the item).
"""
from __future__ import annotations

import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.pose.geometric import MIN_POINTS, geometric_registration
from preprocess.pose.template_surface import load_template_surface
from tests.preprocess.pose.conftest import grid_mesh, pose_errors, rotation

MAX_ANGLE_DEG = 3.0
MAX_NOSE_MM = 4.0

# (yaw, pitch, roll) degrees, translation mm: every axis turned, up to 30 degrees each
POSES = [
    ((30.0, -20.0, 15.0), (100.0, -40.0, 30.0)),
    ((-25.0, 30.0, -30.0), (-60.0, 80.0, -50.0)),
    ((20.0, 25.0, 30.0), (0.0, 0.0, 100.0)),
]


def _sphere(radius_mm: float):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=5, radius=radius_mm)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)


@pytest.mark.parametrize("angles, t", POSES, ids=lambda p: ",".join(f"{x:g}" for x in p))
def test_planted_pose_is_recovered(face, synthetic_surface, angles, t):
    R, t = rotation(*angles), np.array(t)
    g = geometric_registration(face.vertices @ R.T + t, face.faces, synthetic_surface,
                               item="planted.obj")
    angle, nose = pose_errors(g.registration, R, t)
    assert angle < MAX_ANGLE_DEG, (angle, g.start)
    assert nose < MAX_NOSE_MM, (nose, g.start)
    # the nose tip it found is the planted one (the scan frame's t)
    assert np.linalg.norm(g.nose_tip - t) < MAX_NOSE_MM
    reg = g.registration
    assert reg.R.shape == (3, 3) and np.allclose(reg.R @ reg.R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(reg.R) == pytest.approx(1.0)
    assert reg.used_names == ()
    assert 0.0 < reg.rmse < 3.0
    assert g.coverage >= 0.3 and 0.0 < g.fitness <= 1.0
    assert g.cost == pytest.approx(g.distance + g.nose_distance + g.asymmetry)
    assert g.n_points >= MIN_POINTS


def test_same_input_same_bits(face, synthetic_surface):
    """Stores are byte-stable: open3d's ICP differs in the last bits from call to call
    (parallel sums), so the result is put on a grid (geometric._quantized)."""
    R, t = rotation(25.0, -15.0, 10.0), np.array([5.0, 10.0, -20.0])
    v = face.vertices @ R.T + t
    a = geometric_registration(v, face.faces, synthetic_surface, item="a").registration
    for _ in range(3):
        b = geometric_registration(v, face.faces, synthetic_surface, item="b").registration
        assert a.R.tobytes() == b.R.tobytes() and a.t.tobytes() == b.t.tobytes() and a.rmse == b.rmse


def test_unreferenced_vertices_are_ignored(face, synthetic_surface):
    """With faces given, vertices no face uses do not count: a slab of stray vertices in
    front of the face (where they would be the 'nose') changes nothing."""
    R, t = rotation(*POSES[0][0]), np.array(POSES[0][1])
    rng = np.random.default_rng(1)
    stray = np.column_stack([rng.uniform(-60, 60, (3000, 2)), rng.uniform(30, 60, 3000)])
    v = np.concatenate([face.vertices, stray]) @ R.T + t
    g = geometric_registration(v, face.faces, synthetic_surface, item="stray.obj")
    angle, nose = pose_errors(g.registration, R, t)
    assert angle < MAX_ANGLE_DEG and nose < MAX_NOSE_MM, (angle, nose)


@pytest.mark.parametrize("which", ["shipped", "synthetic"])
def test_plane_is_refused(which, synthetic_surface):
    surface = load_template_surface() if which == "shipped" else synthetic_surface
    v, f = grid_mesh()
    tilt = rotation(10.0, 35.0, 0.0)
    with pytest.raises(InputError, match="does not match the template face") as exc:
        geometric_registration(v @ tilt.T + [5.0, 10.0, 300.0], f, surface, item="plane.obj")
    assert exc.value.path == "plane.obj"


@pytest.mark.parametrize("radius_mm", [80.0, 100.0])
def test_head_sized_sphere_is_refused_by_the_shipped_surface(radius_mm):
    v, f = _sphere(radius_mm)
    with pytest.raises(InputError, match="does not match the template face") as exc:
        geometric_registration(v + [10.0, 20.0, 30.0], f, load_template_surface(),
                               item="sphere.obj")
    assert exc.value.path == "sphere.obj"


@pytest.mark.xfail(reason="the face test is only the template distance and coverage: a "
                          "sphere of head size (r = 80 mm) fits the synthetic mean face at "
                          "cost ~10.5 mm (limit 14), coverage ~0.46 (min 0.3); nothing "
                          "checks that the surface has a nose", strict=False)
def test_head_sized_sphere_is_refused_by_a_synthetic_surface(synthetic_surface):
    v, f = _sphere(80.0)
    with pytest.raises(InputError, match="does not match the template face"):
        geometric_registration(v, f, synthetic_surface, item="sphere.obj")


# ----------------------------------------------------------------------- bad input

def test_nan_vertices(face, synthetic_surface):
    v = face.vertices.copy()
    v[123, 1] = np.nan
    with pytest.raises(InputError, match="NaN") as exc:
        geometric_registration(v, face.faces, synthetic_surface, item="nan.obj")
    assert exc.value.path == "nan.obj"


def test_too_few_points(synthetic_surface):
    v, f = grid_mesh(n=10)                 # 100 vertices < MIN_POINTS
    with pytest.raises(InputError, match="too few") as exc:
        geometric_registration(v, f, synthetic_surface, item="few.obj")
    assert exc.value.path == "few.obj"


def test_too_few_points_after_thinning(synthetic_surface):
    """Many vertices, but all within a few voxels: thinning leaves too few."""
    v = np.random.default_rng(0).uniform(0.0, 4.0, (5000, 3))
    with pytest.raises(InputError, match="after thinning") as exc:
        geometric_registration(v, None, synthetic_surface, item="clump.xyz")
    assert exc.value.path == "clump.xyz"


def test_too_few_referenced_points(face, synthetic_surface):
    """Faces that use only a few of many vertices: the rest do not count."""
    with pytest.raises(InputError, match="too few") as exc:
        geometric_registration(face.vertices, face.faces[:20], synthetic_surface,
                               item="sparse.obj")
    assert exc.value.path == "sparse.obj"


@pytest.mark.parametrize("bad", ["out_of_range", "negative", "float", "shape"])
def test_bad_faces(face, synthetic_surface, bad):
    f = face.faces.copy()
    if bad == "out_of_range":
        f[5, 2] = len(face.vertices)
    elif bad == "negative":
        f[5, 0] = -1
    elif bad == "float":
        f = f.astype(np.float64)
    else:
        f = f[:, :2]
    with pytest.raises(InputError, match="faces") as exc:
        geometric_registration(face.vertices, f, synthetic_surface, item="faces.obj")
    assert exc.value.path == "faces.obj"


def test_bad_vertex_shape(synthetic_surface):
    with pytest.raises(InputError, match=r"\(V, 3\)") as exc:
        geometric_registration(np.zeros((500, 2)), None, synthetic_surface, item="flat.xyz")
    assert exc.value.path == "flat.xyz"
