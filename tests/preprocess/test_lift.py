"""Lifting 2-D landmarks to 3-D through the render (preprocess.lift).

Truths used:
* the renderer's camera (preprocess.render): render pixel (col c, row r), centres at
  integer coordinates, stands for x = xmin + (c + 0.5) p, y = ymax - (r + 0.5) p;
* planes z = a x + b y + c textured with scikit-image's astronaut: a lifted point must
  satisfy the plane equation and the pixel formula exactly, and land near the hand
  annotation (tests/data/astronaut_landmarks_manual.json) carried through the known
  texture mapping;
* the embedded sample's landmark files (written from the generator's exact 3-D
  landmarks) and truth.json poses, under rotations planted by the test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_schema.errors import InputError
from data_schema.params import SynthParams
from preprocess.landmark_names import ibug_index
from preprocess.lift import (
    FrontalView,
    _unturn,
    frontal_view,
    lift_landmarks,
    pixels_to_mesh,
)

MANUAL = Path(__file__).resolve().parents[1] / "data" / "astronaut_landmarks_manual.json"

# Astronaut crop used as the plane's texture: 200 x 200 texels round the face, mapped
# onto [-50, 50]^2 mm (0.5 mm per texel); the render (448 px) then shows a ~200 px face.
CROP_X0, CROP_Y0, CROP = 124, 28, 200
HALF = 50.0


@pytest.fixture(scope="module")
def crop():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[CROP_Y0:CROP_Y0 + CROP, CROP_X0:CROP_X0 + CROP])


@pytest.fixture(scope="module")
def manual_mm():
    """Hand-annotated astronaut points -> plane (x, y) mm through the texture mapping:
    texel column a covers u in [a, a+1) / CROP, row b covers v = 1 - [b, b+1) / CROP."""
    pts = json.loads(MANUAL.read_text(encoding="utf-8"))["points"]
    out = {}
    for k, (a, b) in pts.items():
        u = (a - CROP_X0 + 0.5) / CROP
        v = 1.0 - (b - CROP_Y0 + 0.5) / CROP
        out[int(k)] = np.array([-HALF + 2 * HALF * u, -HALF + 2 * HALF * v])
    return out


def plane(n, height, drop_cells=None):
    """n x n vertex grid over [-HALF, HALF]^2, z = height(x, y), uv = the square's
    position (v up); ``drop_cells(xc, yc) -> bool`` removes whole grid cells (both
    triangles) by their centre."""
    t = np.linspace(-HALF, HALF, n)
    x, y = np.meshgrid(t, t)
    v = np.column_stack([x.ravel(), y.ravel(), height(x.ravel(), y.ravel())])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    keep = np.ones(a.shape, dtype=bool)
    if drop_cells is not None:
        xc = (t[:-1] + t[1:])[None, :] / 2 + 0 * a
        yc = (t[:-1] + t[1:])[:, None] / 2 + 0 * a
        keep = ~drop_cells(xc, yc)
    f = np.concatenate([np.column_stack([a[keep], b[keep], c[keep]]),
                        np.column_stack([a[keep], c[keep], d[keep]])])
    uv = (v[:, :2] + HALF) / (2 * HALF)
    return v, f, uv


def pixel_to_mm(points2d, extent, p):
    xmin, _, _, ymax = extent
    return np.column_stack([xmin + (points2d[:, 0] + 0.5) * p, ymax - (points2d[:, 1] + 0.5) * p])


def angle_deg(R):
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


# ------------------------------------------------------------------ exact geometry

@pytest.mark.parametrize("a, b, c", [(0.0, 0.0, 12.5), (0.3, -0.2, 20.0)])
def test_plane_lift_is_exact_and_lands_on_the_hand_annotation(crop, manual_mm, a, b, c):
    v, f, uv = plane(11, lambda x, y: a * x + b * y + c)
    res = lift_landmarks(v, f, texture=crop, uv=uv, size=448)
    assert res.found and res.reason == "" and res.provenance == "lifted:dlib"
    assert res.confidence > 0 and res.turns == 0
    assert res.present.all()                       # the plane fills the render
    assert res.extent == pytest.approx((-HALF, HALF, -HALF, HALF))
    assert res.pixel_size_mm == pytest.approx(2 * HALF / 448)
    P = res.points3d
    # on the plane, exactly
    np.testing.assert_allclose(P[:, 2], a * P[:, 0] + b * P[:, 1] + c, atol=1e-9)
    # x, y = the detector's pixels through the camera formula, exactly
    np.testing.assert_allclose(P[:, :2], pixel_to_mm(res.points2d, res.extent,
                                                     res.pixel_size_mm), atol=1e-9)
    # and where a person put them on the texture (0.5 mm = 1 texel); measured: mean
    # 1.43 mm, max 2.86 mm (brow ends, which dlib and the annotator place differently)
    err = np.array([np.hypot(*(P[k, :2] - xy)) for k, xy in manual_mm.items()])
    assert err.mean() <= 2.5 and err.max() <= 4.0
    assert (res.triangle_id >= 0).all()
    np.testing.assert_allclose(res.bary.sum(axis=1), 1.0)


def test_points_over_a_hole_are_absent_never_nan(crop, manual_mm):
    # cut a square hole (whole 1 mm grid cells, 11 mm across) round the annotated nose
    # tip: dlib still finds the face and puts the lower nose points on the hole
    cx, cy = manual_mm[30]
    lo_x, hi_x = np.floor(cx - 5), np.ceil(cx + 5)
    lo_y, hi_y = np.floor(cy - 5), np.ceil(cy + 5)
    v, f, uv = plane(101, lambda x, y: 0 * x + 7.0,
                     lambda xc, yc: (xc > lo_x) & (xc < hi_x) & (yc > lo_y) & (yc < hi_y))
    res = lift_landmarks(v, f, texture=crop, uv=uv)
    assert res.found
    xy = pixel_to_mm(res.points2d, res.extent, res.pixel_size_mm)
    inside = (xy[:, 0] > lo_x) & (xy[:, 0] < hi_x) & (xy[:, 1] > lo_y) & (xy[:, 1] < hi_y)
    assert 3 <= inside.sum() <= 20                     # measured: 8 (31-35, 50-52)
    np.testing.assert_array_equal(res.present, ~inside)
    assert (res.points3d[inside] == 0).all() and (res.triangle_id[inside] == -1).all()
    assert (res.bary[inside] == 0).all() and np.isfinite(res.points3d).all()
    np.testing.assert_allclose(res.points3d[~inside, 2], 7.0, atol=1e-12)
    lm = res.as_landmarks()
    assert lm.points.shape == (68 - inside.sum(), 3)
    assert lm.names == tuple(f"ibug_{k}" for k in np.flatnonzero(~inside))
    assert lm.provenance == "lifted:dlib"


def test_pixels_to_mesh_hand_computed():
    # Triangle (0,0,1) (4,0,1) (0,4,5): z = 1 + y.  A second, lower one under it (z = -3)
    # must never be seen.  Extent [0, 4]^2 at 1 mm pixels: pixel (c, r) -> x = c + 0.5,
    # y = 3.5 - r.
    v = np.array([[0, 0, 1], [4, 0, 1], [0, 4, 5], [0, 0, -3], [4, 0, -3], [0, 4, -3]], float)
    f = np.array([[3, 4, 5], [0, 1, 2]])
    pix = np.array([[0.0, 3.0],     # (0.5, 0.5)
                    [1.5, 2.5],     # (2.0, 1.0)
                    [3.0, 0.0]])    # (3.5, 3.5): outside the triangle
    mp = pixels_to_mesh(v, f, pix, (0, 4, 0, 4), 1.0)
    np.testing.assert_array_equal(mp.present, [True, True, False])
    np.testing.assert_array_equal(mp.triangle_id, [1, 1, -1])
    np.testing.assert_allclose(mp.points3d, [[0.5, 0.5, 1.5], [2.0, 1.0, 2.0], [0, 0, 0]],
                               atol=1e-12)
    # barycentrics of (2, 1): 1 - 2/4 - 1/4, 2/4, 1/4
    np.testing.assert_allclose(mp.bary[1], [0.25, 0.5, 0.25], atol=1e-12)
    np.testing.assert_array_equal(mp.bary[2], 0.0)
    # In a turned view the same render pixel stands for the turned-back input point:
    # view = 90 degrees about z, shifted by (10, 0, 0).
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    t = np.array([10.0, 0.0, 0.0])
    w = (v - t) @ R                        # input such that R w + t = v
    mp2 = pixels_to_mesh(w, f, pix, (0, 4, 0, 4), 1.0, view=(R, t))
    np.testing.assert_array_equal(mp2.present, mp.present)
    np.testing.assert_allclose(mp2.points3d[:2], (mp.points3d[:2] - t) @ R, atol=1e-9)
    assert pixels_to_mesh(v, f, np.zeros((0, 2)), (0, 4, 0, 4), 1.0).points3d.shape == (0, 3)


def test_blank_texture_and_no_colour_are_not_found_with_a_reason():
    v, f, uv = plane(3, lambda x, y: 0 * x)
    res = lift_landmarks(v, f, texture=np.full((8, 8, 3), 128, np.uint8), uv=uv)
    assert not res.found and "no face found on the 448x448 render" in res.reason
    assert "texture" in res.reason and res.confidence == 0.0
    assert not res.present.any() and (res.triangle_id == -1).all()
    for a in (res.points3d, res.points2d, res.bary):
        assert np.isfinite(a).all() and (a == 0).all()
    assert res.as_landmarks().points.shape == (0, 3)
    res = lift_landmarks(v, f, try_turns=True)
    assert not res.found and "colour from none" in res.reason and "270 degrees" in res.reason


def test_unturn_inverts_rot90():
    img = np.zeros((5, 5), np.uint8)
    img[1, 3] = 1                                          # (x, y) = (3, 1)
    for k in range(4):
        r, c = np.argwhere(np.rot90(img, k))[0]
        np.testing.assert_array_equal(_unturn(np.array([[c, r]]), k, 5), [[3, 1]])


@pytest.mark.parametrize("deg", [180, 90])
def test_turned_render_is_recovered_by_try_turns(crop, deg):
    v, f, uv = plane(11, lambda x, y: 0 * x + 3.0)
    upright = lift_landmarks(v, f, texture=crop, uv=uv)
    R = Rotation.from_euler("z", deg, degrees=True).as_matrix()
    res = lift_landmarks(v, f, texture=crop, uv=uv, view=(R, np.zeros(3)), try_turns=True)
    assert res.found and res.turns == {180: 2, 90: 3}[deg]   # rot90 is counter-clockwise
    # the same detection on the same pixels: the same points of the input plane
    assert np.abs(res.points3d - upright.points3d).max() < 0.3
    assert res.present.all()


# ------------------------------------------------------------ the embedded sample

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from preprocess.io import read_scan
    from preprocess.synthetic.sample import write_sample

    root = tmp_path_factory.mktemp("lift_sample")
    man = write_sample(root, SynthParams(seed=3, bosphorus_subjects=1, bu3dfe_subjects=0,
                                         facescape_subjects=0, ckplus_subjects=0,
                                         mmi_videos=0))
    truth = json.loads(Path(man.truth).read_text(encoding="utf-8"))["items"]
    scans = {it.path: read_scan(man.root / it.path) for it in man.items}
    return scans, truth


def file_ibug(scan):
    return {ibug_index(n): p for n, p in zip(scan.landmarks.names, scan.landmarks.points)
            if ibug_index(n) is not None}


def test_sample_scans_lift_close_to_their_landmark_files(sample):
    scans, _ = sample
    errors, medians = [], []
    for path, s in scans.items():
        res = lift_landmarks(s.vertices, s.faces, texture=s.texture, uv=s.uv,
                             face_uv=s.face_uv, item=path)
        assert res.found, res.reason
        e = [np.linalg.norm(res.points3d[k] - p) for k, p in file_ibug(s).items()
             if res.present[k]]
        assert len(e) >= 14                    # 17 iBUG points in the file; holes may hide some
        errors += e
        medians.append(np.median(e))
    # measured (seed 3, 7 scans, 116 points): mean 1.47 mm, per-scan medians <= 1.9 mm;
    # the largest single error (17 mm) is the FEAR scan, where a planted hole sits on
    # the nose and dlib puts the nose and upper lip too high.
    assert np.mean(errors) <= 3.0
    assert max(medians) <= 3.0


ROTATIONS = [(30, -40, 25), (0, 0, 180), (50, 0, 90), (-20, 160, -70)]


@pytest.mark.parametrize("euler", ROTATIONS)
def test_frontal_view_undoes_a_planted_rotation(sample, euler):
    scans, truth = sample
    Q = Rotation.from_euler("xyz", euler, degrees=True).as_matrix()
    shift = np.array([120.0, -40.0, 900.0])
    worst = 0.0
    for path in [p for p in scans if any(e in p for e in ("_N_N_", "HAPPY", "SURPRISE"))]:
        s = scans[path]
        P = np.array(truth[path]["pose"]["R"])           # model -> file frame
        w = s.vertices @ Q.T + shift
        fv = frontal_view(w, s.faces, item=path)
        assert fv.method == "pca+symmetry+nose-ridge"
        np.testing.assert_allclose(fv.R @ fv.R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(fv.R) == pytest.approx(1.0)
        np.testing.assert_allclose(fv.apply(w.mean(axis=0)), 0.0, atol=1e-9)
        # view frame = model frame: R Q P = I.  Measured <= 2.3 degrees over 58 scans
        # of the three sample styles under random rotations (and all 7 scans here).
        worst = max(worst, angle_deg(fv.R @ Q @ P))
    assert worst <= 5.0


def test_lift_with_auto_view_returns_points_in_the_input_frame(sample):
    scans, _ = sample
    path = next(p for p in scans if "_N_N_" in p)
    s = scans[path]
    Q = Rotation.from_euler("xyz", (25, -35, 120), degrees=True).as_matrix()
    shift = np.array([-300.0, 20.0, 55.0])
    w = s.vertices @ Q.T + shift
    res = lift_landmarks(w, s.faces, texture=s.texture, uv=s.uv, face_uv=s.face_uv,
                         view="auto", item=path)
    assert res.found and res.view.method == "pca+symmetry+nose-ridge" and res.turns == 0
    e = [np.linalg.norm(res.points3d[k] - (Q @ p + shift)) for k, p in file_ibug(s).items()
         if res.present[k]]
    assert len(e) >= 14 and np.mean(e) <= 3.0         # measured: 1.1 mm


def test_frontal_view_identity_and_unpacking(sample):
    scans, _ = sample
    s = next(iter(scans.values()))
    R, t = frontal_view(s.vertices, assume_frontal=True)
    np.testing.assert_array_equal(R, np.eye(3))
    np.testing.assert_array_equal(t, np.zeros(3))
    fv = frontal_view(s.vertices, s.faces)
    assert isinstance(fv, FrontalView)
    R, t = fv
    assert R is fv.R and t is fv.t


# ------------------------------------------------------------------- bad input

def test_bad_input():
    tri = np.array([[0, 1, 2]])
    with pytest.raises(InputError, match="NaN"):
        frontal_view(np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]))
    with pytest.raises(InputError, match="collinear"):
        frontal_view(np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3.0]]))
    with pytest.raises(InputError, match="collinear"):
        frontal_view(np.ones((5, 3)))
    with pytest.raises(InputError, match="need at least 3"):
        frontal_view(np.array([[0, 0, 0], [1, 0, 0.0]]))
    with pytest.raises(InputError, match="empty"):
        frontal_view(np.zeros((0, 3)))
    with pytest.raises(InputError, match=r"must be \(V, 3\)"):
        lift_landmarks(np.zeros((3, 2)), tri)
    with pytest.raises(InputError, match="NaN"):
        lift_landmarks(np.array([[0, 0, 0], [1, 0, 0], [0, np.inf, 0]]), tri)
    with pytest.raises(InputError, match="out of range"):
        lift_landmarks(np.eye(3), np.array([[0, 1, 3]]))
    with pytest.raises(InputError, match="empty"):
        lift_landmarks(np.eye(3), np.zeros((0, 3), np.int64))
    with pytest.raises(InputError, match="finite"):
        pixels_to_mesh(np.eye(3), tri, np.array([[np.nan, 0.0]]), (0, 1, 0, 1), 0.5)
    with pytest.raises(InputError, match=r"pixels must be \(N, 2\)"):
        pixels_to_mesh(np.eye(3), tri, np.zeros(4), (0, 1, 0, 1), 0.5)
    with pytest.raises(ValueError, match="view"):
        lift_landmarks(np.eye(3), tri, view="sideways")
    with pytest.raises(ValueError, match="proper rotation"):
        lift_landmarks(np.eye(3), tri, view=(np.diag([1.0, 1.0, -1.0]), np.zeros(3)))
    with pytest.raises(ValueError, match="size"):
        lift_landmarks(np.eye(3), tri, size=(64, 32))
