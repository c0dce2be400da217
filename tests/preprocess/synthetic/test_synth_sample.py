"""The written sample: layout, determinism, truth.json, and every file read back by the
real readers of ``preprocess/io``."""
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from data_schema.labels import FACESCAPE20_CLASSES, label_map
from data_schema.params import SynthParams
from preprocess.io import list_items, read_item
from preprocess.io.bu3dfe import read_wrl
from preprocess.synthetic.astronaut import astronaut_landmarks
from preprocess.synthetic.expressions import EXPRESSIONS
from preprocess.synthetic.sample import (
    FACESCAPE_EXPRESSIONS, has_emotion_file, subject_model, write_sample,
)
from preprocess.synthetic.scans import bosphorus_landmark_material, landmark_positions, texture_box

SMALL = SynthParams(seed=7, bosphorus_subjects=1, bu3dfe_subjects=1, facescape_subjects=2,
                    ckplus_subjects=2, ckplus_sequences_per_subject=2, mmi_videos=1,
                    frames_min=5, frames_max=7, grid_rows=96, grid_cols=80, grid_spacing_mm=2.0)
CHECKED = (".bnt", ".lm3", ".lm2", ".wrl", ".bnd", ".obj", ".png", ".bmp", ".jpg", ".avi", ".txt")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return write_sample(root, SMALL)


def _bytes(root: Path, suffixes=CHECKED) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in suffixes}


def test_layout_and_manifest(sample):
    root = sample.root
    files = set(sample.files)
    for stem in ("bs000_N_N_0", "bs000_E_HAPPY_0", "bs000_E_SURPRISE_0"):
        for ext in ("bnt", "lm3", "lm2", "png"):
            assert f"bosphorus/bs000/{stem}.{ext}" in files
    for stem in ("F0001_NE00WH_F3D", "F0001_AN04WH_F3D", "F0001_SU04WH_F3D"):
        for ext in ("wrl", "bnd", "bmp"):
            assert f"bu3dfe/F0001/{stem}.{ext}" in files
    assert "facescape/landmark_indices.txt" in files
    for subject in ("1", "2"):
        for name in FACESCAPE_EXPRESSIONS:
            k = FACESCAPE20_CLASSES.index(name) + 1
            for ext in ("obj", "mtl", "jpg"):
                assert f"facescape/{subject}/models_reg/{k}_{name}.{ext}" in files
    assert "ckplus/cohn-kanade-images/S005/001/S005_001_00000001.png" in files
    assert "ckplus/Landmarks/S010/002/S010_002_00000001_landmarks.txt" in files
    assert "mmi/S001_001_anger.avi" in files and "truth.json" in files
    assert [it.path for it in sample.items] == sorted(it.path for it in sample.items)
    assert Counter(it.dataset for it in sample.items) == {
        "bosphorus": 7, "bu3dfe": 7, "facescape": 16, "ckplus": 4, "mmi": 1}
    assert sample.total_bytes == sum((root / f).stat().st_size for f in sample.files)


def test_same_seed_same_bytes_other_seed_differs(sample, tmp_path):
    again = write_sample(tmp_path / "again", SMALL)
    a, b = _bytes(sample.root), _bytes(again.root)
    assert a.keys() == b.keys() and len(a) > 100
    assert [k for k in a if a[k] != b[k]] == []
    assert (sample.root / "truth.json").read_bytes() == (again.root / "truth.json").read_bytes()
    other = write_sample(tmp_path / "other", replace(SMALL, seed=8, ckplus_subjects=0, mmi_videos=0))
    c = _bytes(other.root, (".bnt", ".lm3", ".wrl", ".obj", ".png"))
    assert c and all(c[k] != a[k] for k in c if not k.endswith(".png"))
    assert any(c[k] != a[k] for k in c if k.endswith(".png"))


def test_adding_a_subject_keeps_the_others(sample, tmp_path):
    more = write_sample(tmp_path / "more", replace(SMALL, bosphorus_subjects=2, ckplus_subjects=3))
    a, b = _bytes(sample.root), _bytes(more.root)
    assert set(a) < set(b)
    assert all(a[k] == b[k] for k in a)
    assert any(k.startswith("bosphorus/bs001/") for k in b)


def test_every_item_reads_back_with_the_real_readers(sample):
    root = sample.root
    items = list_items(root)
    assert Counter(it.format for it in items) == {"bnt": 7, "wrl": 7, "facescape_obj": 16,
                                                  "ckplus": 4, "video": 1}
    by_path = {str(root / it.path): it for it in sample.items}
    for raw in items:
        obj = read_item(raw.path, raw.format)
        mine = by_path[raw.path]
        assert obj.ids.dataset == mine.dataset and obj.ids.subject == mine.subject
        if raw.kind == "scan":
            assert obj.extra.get("warnings", []) == [], raw.path
            assert obj.texture is not None and obj.uv is not None and obj.landmarks is not None
            assert np.isfinite(obj.vertices).all() and len(obj.faces) > 1000
            assert obj.ids.label >= 0
        code = "NEUTRAL" if mine.code == "N" else mine.code      # Bosphorus N_N
        assert obj.ids.label == label_map(mine.dataset).label_of(code), raw.path
        if raw.kind == "sequence":
            frames = list(obj.iter_frames())
            assert len(frames) == obj.n_frames and 5 <= obj.n_frames <= 7
            assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    wrl = read_wrl(root / "bu3dfe/F0001/F0001_HA04WH_F3D.wrl")
    sizes = set(np.diff(wrl.offsets).tolist())
    assert sizes == {3, 4}                                  # fan triangulation exercised


def test_bosphorus_files_match_the_truth(sample):
    root = sample.root
    truth = json.loads((root / "truth.json").read_text())["items"]
    scan = read_item(root / "bosphorus/bs000/bs000_E_FEAR_0.bnt")
    t = truth["bosphorus/bs000/bs000_E_FEAR_0.bnt"]
    R, tr = np.array(t["pose"]["R"]), np.array(t["pose"]["t"])
    assert t["expression"] == "fear" and 0.75 <= t["intensity"] <= 1.0
    model = subject_model(SMALL.seed, "bosphorus", "bs000")
    labels, m, sources = bosphorus_landmark_material(model)
    unposed = landmark_positions(model, m, sources, "fear", t["intensity"])
    assert scan.landmarks.names == labels
    np.testing.assert_allclose(scan.landmarks.points, unposed @ R.T + tr, atol=1e-5)
    tip = np.array(t["nose_tip"])
    np.testing.assert_allclose(tip, R @ model.nose_tip("fear", t["intensity"]) + tr, atol=1e-6)
    # the scan's vertex nearest the true tip is on it, up to grid sampling and noise
    d = np.linalg.norm(scan.vertices - tip, axis=1)
    assert d.min() < 0.5 * 2.0 * np.sqrt(2) + 0.5
    # the 2-D landmarks are the astronaut's own pixels in the texture crop (dlib put the
    # nose tip at (225, 127))
    i = labels.index("Nose tip")
    x0, y0, x1, y1 = texture_box()
    np.testing.assert_allclose(scan.landmarks2d.points[i], [225 - x0, 127 - y0])
    assert scan.texture.shape == (y1 - y0, x1 - x0, 3)
    # texture coordinates of the grid point nearest the tip point at the tip's texel
    k = np.argmin(d)
    H, W = scan.texture.shape[:2]
    texel = scan.uv[k] * [W, -H] + [0, H] - 0.5
    assert np.linalg.norm(texel - scan.landmarks2d.points[i]) < 2.5


def test_bu3dfe_and_facescape_landmarks(sample):
    root = sample.root
    scan = read_item(root / "bu3dfe/F0001/F0001_DI04WH_F3D.wrl")
    assert scan.landmarks.points.shape == (83, 3)
    np.testing.assert_allclose(scan.landmarks.points, scan.vertices[scan.landmarks.vertex_index], atol=1e-6)
    idx = np.loadtxt(root / "facescape/landmark_indices.txt", dtype=np.int64)
    faces = None
    for subject in ("1", "2"):
        model = subject_model(SMALL.seed, "facescape", subject)
        for path in sorted((root / "facescape" / subject / "models_reg").glob("*.obj")):
            scan = read_item(path)
            np.testing.assert_array_equal(scan.landmarks.vertex_index, idx)
            faces = scan.faces if faces is None else faces
            np.testing.assert_array_equal(scan.faces, faces)          # one topology for all
            expr = "happy" if scan.ids.expression == "smile" else scan.ids.expression
            truth = json.loads((root / "truth.json").read_text())["items"]
            rel = str(path.relative_to(root))
            lm = model.landmarks3d(expr, truth[rel]["intensity"])
            np.testing.assert_allclose(scan.landmarks.points[17:], lm[17:], atol=2e-6)
            assert int(np.argmax(scan.vertices[:, 2])) == idx[30]    # nose tip is the max


def test_ckplus_emotions_and_landmarks(sample):
    root = sample.root
    seqs = [read_item(root / it.path) for it in sample.items if it.dataset == "ckplus"]
    codes = [s.ids.expression for s in seqs]
    # CK+ codes of anger, contempt, disgust; the fourth sequence (fear) has no emotion file
    assert codes == ["1", "2", "3", ""]
    assert [has_emotion_file(n) for n in range(8)] == [True, True, True, False] * 2
    truth = json.loads((root / "truth.json").read_text())["items"]
    for s, it in zip(seqs, [it for it in sample.items if it.dataset == "ckplus"]):
        t = truth[it.path]
        assert t["weights"][0] == 0.0 and t["weights"][-1] == pytest.approx(t["intensity"])
        assert len(t["frame_affines"]) == s.n_frames and len(s.landmarks) == s.n_frames
        # the first frame's landmarks are the astronaut's under the first affine
        A = np.array(t["frame_affines"][0])
        np.testing.assert_allclose(s.landmarks[0].points, astronaut_landmarks() @ A[:, :2].T + A[:, 2],
                                   atol=1e-4)
        # the last frame's: plus the expression at its intensity
        A = np.array(t["frame_affines"][-1])
        assert np.abs(s.landmarks[-1].points - (astronaut_landmarks() @ A[:, :2].T + A[:, 2])).max() > 2.0


def test_mmi_video_apex_in_the_middle(sample):
    root = sample.root
    truth = json.loads((root / "truth.json").read_text())["items"]
    t = truth["mmi/S001_001_anger.avi"]
    w = np.array(t["weights"])
    assert w[0] == 0.0 and w[-1] == 0.0 and np.argmax(w) == len(w) // 2 == t["apex_frame"]
    assert EXPRESSIONS["anger"].landmark_displacement.any()
