"""pose_scan (preprocess.pose.register): the fallbacks tried in order and recorded.

Truths used:
* the landmark template's own points moved by a planted rigid motion ``R p + t`` are
  fitted exactly: the registration is ``(R^T, -R^T t)``, rmse 0;
* their mirror image (x -> -x, names kept) is no rigid motion of them: the Arun fit
  leaves the rmse of :func:`preprocess.registration.fit_rigid` on those point pairs;
* a synthetic face moved by a planted motion is posed by the geometric fit within a
  few degrees / mm (as in test_geometric), a plane by no method;
* the synthetic face's own landmarks (the generator's truth) as the template: dlib on
  the shaded render finds the face (measured when written: 51 inner points, rmse
  6.2 mm -- dlib puts the shaded synthetic brows and eyes ~10 mm high --, pose
  within 1.2 degrees and 2.7 mm at the nose tip for the planted motion used).
"""
from __future__ import annotations

import importlib.util
import re

import numpy as np
from scipy.spatial import cKDTree
import pytest

from data_schema.errors import InputError
from preprocess.landmark_names import IBUG_NAMES
from preprocess.pose.register import METHODS, pose_scan
from preprocess.registration import fit_rigid
from preprocess.template import Template, load_template
from tests.preprocess.pose.conftest import grid_mesh, pose_errors, rotation

R0 = rotation(25.0, -15.0, 20.0)
T0 = np.array([100.0, -40.0, 30.0])
NO_TEXTURE = "texture: the scan has no texture or vertex colours"


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def moved_face(face):
    """The synthetic face under the planted motion (R0, T0): (vertices, faces)."""
    return face.vertices @ R0.T + T0, face.faces


def test_file_landmarks_that_fit_win_first(template, moved_face):
    v, f = moved_face
    pts = template.points @ R0.T + T0
    pose = pose_scan(v, f, template=template, file_landmarks=(pts, template.names, "file:lm3"),
                     max_rmse_mm=1.0, item="scan.bnt")
    assert pose.method == "file" and pose.tried == ()
    assert pose.provenance == "file:lm3"
    np.testing.assert_allclose(pose.registration.R, R0.T, atol=1e-9)
    np.testing.assert_allclose(pose.registration.t, -R0.T @ T0, atol=1e-7)
    assert pose.registration.rmse < 1e-6
    assert set(pose.registration.used_names) == set(template.names)
    np.testing.assert_array_equal(pose.landmarks, pts)
    assert pose.landmark_names == tuple(template.names)


def test_no_file_is_recorded(template, moved_face):
    v, f = moved_face
    empty = (np.zeros((0, 3)), (), "file:lm3")
    for fl in (None, empty):
        with pytest.raises(InputError) as exc:
            pose_scan(v, f, template=template, file_landmarks=fl, methods=("file",),
                      max_rmse_mm=5.0, item="nofile.bnt")
        assert "file: no landmark file beside the scan" in exc.value.reason


def test_mirrored_file_landmarks_fall_back_to_geometric(template, moved_face, synthetic_surface):
    v, f = moved_face
    mirrored = template.points * [-1.0, 1.0, 1.0]
    expect_rmse = fit_rigid(mirrored, template.points).rmse
    limit = 3.0
    assert expect_rmse > limit                    # the premise: a mirror is no rigid motion
    pose = pose_scan(v, f, template=template, surface=synthetic_surface,
                     file_landmarks=(mirrored @ R0.T + T0, template.names, "file:lm3"),
                     methods=("file", "geometric"), max_rmse_mm=limit, item="mirror.bnt")
    assert pose.method == "geometric"
    assert len(pose.tried) == 1 and pose.tried[0].startswith("file:")
    m = re.search(r"rmse ([0-9.]+) mm exceeds max_rmse_mm = 3", pose.tried[0])
    assert m, pose.tried
    assert float(m.group(1)) == pytest.approx(expect_rmse, abs=0.006)
    assert pose.provenance.startswith("template:icp")
    angle, nose = pose_errors(pose.registration, R0, T0)
    assert angle < 3.0 and nose < 4.0, (angle, nose)


def test_geometric_pose_places_the_template_landmarks_on_the_scan(face, moved_face,
                                                                 synthetic_surface):
    """The template's inner 51 points, each on a vertex of the scan, at the face's own
    landmarks under the planted motion when the template is the face's own landmarks
    (up to the pose error and the 1 mm lattice)."""
    from preprocess.landmark_names import IBUG_NAMES
    from preprocess.template import Template

    v, f = moved_face
    own = Template(face.landmarks, IBUG_NAMES, "the test face's own landmarks")
    pose = pose_scan(v, f, template=own, surface=synthetic_surface, methods=("geometric",),
                     max_rmse_mm=5.0, item="bare.ply")
    assert pose.landmark_names == tuple(f"ibug_{k}" for k in range(17, 68))
    assert cKDTree(v).query(pose.landmarks)[0].max() == 0.0        # scan vertices, scan frame
    truth = face.landmarks[17:] @ R0.T + T0
    err = np.linalg.norm(pose.landmarks - truth, axis=1)
    assert np.median(err) < 3.0 and err.max() < 6.0, (np.median(err), err.max())


@pytest.mark.parametrize("colour", [None, {"texture": None, "uv": None, "colors": None}])
def test_no_colour_skips_texture(template, moved_face, synthetic_surface, colour):
    v, f = moved_face
    pose = pose_scan(v, f, template=template, surface=synthetic_surface, colour=colour,
                     methods=("texture", "geometric"), max_rmse_mm=5.0, item="bare.obj")
    assert pose.method == "geometric"
    assert pose.tried == (NO_TEXTURE,)
    angle, nose = pose_errors(pose.registration, R0, T0)
    assert angle < 3.0 and nose < 4.0, (angle, nose)


def test_every_method_failing_names_them_all(template, synthetic_surface):
    v, f = grid_mesh()
    with pytest.raises(InputError) as exc:
        pose_scan(v, f, template=template, surface=synthetic_surface, file_landmarks=None,
                  methods=METHODS, max_rmse_mm=5.0, item="plane.obj")
    assert exc.value.path == "plane.obj"
    reason = exc.value.reason
    assert reason.startswith("no registration method could pose the scan")
    assert "file: no landmark file beside the scan" in reason
    assert NO_TEXTURE in reason
    assert "shaded: " in reason
    assert "geometric: " in reason and "does not match the template face" in reason
    # in the order tried
    assert [reason.index(f"{m}: ") for m in METHODS] == sorted(reason.index(f"{m}: ")
                                                               for m in METHODS)


def test_file_and_geometric_failing_on_a_plane(template, synthetic_surface):
    v, f = grid_mesh()
    with pytest.raises(InputError) as exc:
        pose_scan(v, f, template=template, surface=synthetic_surface,
                  methods=("file", "geometric"), max_rmse_mm=5.0, item="plane.obj")
    assert exc.value.path == "plane.obj"
    assert "file: " in exc.value.reason and "geometric: " in exc.value.reason
    assert "texture" not in exc.value.reason and "shaded" not in exc.value.reason


@pytest.mark.parametrize("methods", [("file", "icp"), ("Geometric",), ()])
def test_unknown_or_no_method(template, methods):
    v, f = grid_mesh(n=5)
    with pytest.raises(ValueError, match="methods"):
        pose_scan(v, f, template=template, methods=methods, max_rmse_mm=5.0)


# ------------------------------------------------------------------------- shaded

def _have_dlib() -> bool:
    return (importlib.util.find_spec("dlib") is not None
            and importlib.util.find_spec("face_recognition_models") is not None)


@pytest.mark.skipif(not _have_dlib(), reason="dlib / face_recognition_models not installed")
def test_textureless_face_is_posed_by_shaded(face, synthetic_surface):
    R, t = rotation(15.0, -10.0, 5.0), np.array([100.0, -40.0, 30.0])
    own = Template(face.landmarks, tuple(IBUG_NAMES), "the synthetic face's own landmarks")
    pose = pose_scan(face.vertices @ R.T + t, face.faces, template=own,
                     surface=synthetic_surface, methods=("texture", "shaded", "geometric"),
                     max_rmse_mm=12.0, item="bare.obj")
    assert pose.method == "shaded"
    assert pose.tried == (NO_TEXTURE,)
    assert pose.provenance == "shaded:lifted:dlib"
    # the 51 inner points (the jaw line is left out), in the scan frame
    assert pose.landmark_names == tuple(f"ibug_{k}" for k in range(17, 68))
    assert pose.landmarks.shape == (51, 3)
    angle, nose = pose_errors(pose.registration, R, t)
    assert angle < 5.0 and nose < 6.0, (angle, nose)
    assert pose.registration.rmse < 12.0
