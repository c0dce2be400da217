"""The 3-D chain end to end on the reduced sample: ingest -> register -> crop -> render
-> clean, checked against the generator's truth, and `fermaps maps` giving the same
maps as the stage-by-stage path."""
import dataclasses
import json

import numpy as np
import pytest

from data_schema.errors import InputError
from data_schema.store import Store
from pipeline.chain import masks_step
from pipeline.cli import main
from tests.conftest import CHAIN_PARAMS as PARAMS


@pytest.fixture(scope="module")
def stores(chain_stores):
    return chain_stores


def angle_deg(R):
    return np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


def test_registration_undoes_the_planted_pose(stores, small_sample):
    truth = json.loads((small_sample / "truth.json").read_text())["items"]
    reg = Store(stores / "registered_mesh", "registered_mesh")
    n = 0
    for meta in reg.metas():
        if meta.dataset != "bosphorus":
            continue
        _, a = reg.read(meta.key)
        R_true = np.asarray(truth[meta.source]["pose"]["R"])  # posed = R_true @ frontal + t
        # registered = R @ posed + t, so R @ R_true is the residual rotation; the template
        # is the mean neutral face, so expressions and subjects leave a few degrees.
        assert angle_deg(a["rotation"] @ R_true) < 4.0, meta.key
        assert np.linalg.det(a["rotation"]) == pytest.approx(1.0)
        assert a["rmse_mm"] < PARAMS.register.max_rmse_mm
        n += 1
    assert n == 21


def test_crop_centres_the_nose_and_respects_the_radius(stores, small_sample):
    truth = json.loads((small_sample / "truth.json").read_text())["items"]
    reg = Store(stores / "registered_mesh", "registered_mesh")
    face = Store(stores / "face_mesh", "face_mesh")
    for meta in face.metas():
        _, f = face.read(meta.key)
        assert np.linalg.norm(f["vertices"], axis=1).max() <= PARAMS.crop.radius_mm + 1e-9
        if meta.dataset == "bosphorus":
            _, r = reg.read(meta.key)
            tip_true = r["rotation"] @ np.asarray(truth[meta.source]["nose_tip"]) + r["translation"]
            assert np.linalg.norm(f["nose_tip"] - tip_true) < 3.0, meta.key


def test_maps_are_finite_in_range_and_face_the_camera(stores):
    for name in ("maps", "maps_clean"):
        s = Store(stores / name, name)
        assert len(s) == 21 + 7 + 8  # 3 Bosphorus subjects x 7, 7 BU-3DFE, 8 FaceScape
        for meta, a in s.iter_items():
            m, v = a["maps"], a["valid"]
            assert m.shape == (8, 112, 112) and m.dtype == np.float32
            assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
            assert (m[:, ~v] == 0).all()
            # the nose tip is the origin: the image centre is on the face at depth ~0
            assert v[54:58, 54:58].all(), meta.key
            assert np.abs(a["depth_mm"][55:57, 55:57]).min() < 2.5, meta.key  # coarse meshes: steep tip
            if name == "maps_clean":  # spikes gone: nothing stands in front of the nose
                assert a["depth_mm"][v].max() < 1.5, meta.key
            # registered faces look along +Z: Nz = (nz + 1) / 2 > 0.5 on most of the face
            assert np.median(m[2][v]) > 0.85
        if name == "maps_clean":
            assert sum(int(a["n_filled"]) for _, a in s.iter_items()) > 0


def test_fermaps_maps_equals_the_stage_by_stage_path(stores, small_sample, tmp_path):
    scans = sorted((small_sample / "bosphorus").rglob("*.bnt"))[:2]
    assert main(["maps", *map(str, scans), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--template", PARAMS.register.template]) == 0
    for name in ("maps", "maps_clean"):
        mine = Store(tmp_path / "out" / name, name)
        ref = Store(stores / name, name)
        assert len(mine) == 2
        ref_by_source = {m.source: m.key for m in ref.metas()}
        for meta in mine.metas():
            _, a = mine.read(meta.key)
            _, b = ref.read(ref_by_source["bosphorus/" + meta.source])
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}.{k}")


def test_masks_found_on_rendered_textures_and_agree_with_projection(stores):
    masks = Store(stores / "masks", "masks")
    clean = Store(stores / "maps_clean", "maps_clean")
    assert len(masks) >= 0.95 * len(clean)  # landmarks found on >= 95% of the textures
    errs = []
    for meta, a in masks.iter_items():
        assert a["landmark_source"] == "dlib"
        assert a["mask56"].max() == pytest.approx(1.0) and a["mask28"].max() == pytest.approx(1.0)
        _, c = clean.read(meta.key)
        both = a["landmarks_present"] & c["landmarks68_present"]
        both[:17] = False  # jaw points of files are not anatomical matches
        proj56 = (c["landmarks68_px"] + 0.5) * 56 / 112 - 0.5
        errs.append(np.linalg.norm(a["landmarks68"][both] - proj56[both], axis=1).mean())
    # dlib on the rendered texture vs the scan's own landmarks projected: a few 56-px pixels
    assert np.median(errs) < 2.0, np.median(errs)


def test_texture_without_a_face_gives_a_recorded_error_not_a_mask(stores):
    clean = Store(stores / "maps_clean", "maps_clean")
    meta, rec = next(clean.iter_items())
    rec = dict(rec, maps=rec["maps"].copy())
    rec["maps"][5:8] = 0.5  # a flat gray texture
    with pytest.raises(InputError, match="no face found on the rendered texture"):
        masks_step(rec, PARAMS.masks, meta.key)
    # with the projected fallback the scan's own landmarks make the masks
    fallback = dataclasses.replace(PARAMS.masks, landmarks="detect_or_projected")
    out = masks_step(rec, fallback, meta.key)
    assert out["landmark_source"] == "projected" and out["mask56"].max() == pytest.approx(1.0)


def test_scan_without_landmark_file_is_registered_from_lifted_landmarks(stores):
    """AMDFN Fig. 2: no landmark file -> dlib on the rendered texture, lifted to 3-D;
    the pose agrees with the one from the file landmarks."""
    from pipeline.chain import register_step

    raw = Store(stores / "raw_mesh", "raw_mesh")
    reg = Store(stores / "registered_mesh", "registered_mesh")
    meta = next(m for m in raw.metas() if m.dataset == "bosphorus" and m.expression == "NEUTRAL")
    _, rec = raw.read(meta.key)
    for k in ("landmarks", "landmarks2d"):
        rec[k] = rec[k][:0]
    for k in ("landmark_names", "landmark_vertex", "landmark2d_names"):
        rec[k] = rec[k][:0]
    with pytest.raises(InputError, match=r"tried file: no landmark file beside the scan\)"):
        register_step(rec, dataclasses.replace(PARAMS.register, methods=("file",)), meta.key)
    out = register_step(rec, PARAMS.register, meta.key)
    assert out["registration_method"] == "texture" and out["landmark_provenance"] == "lifted:dlib"
    assert out["registration_tried"] == "file: no landmark file beside the scan"
    assert out["n_landmarks_used"] >= 40
    _, ref = reg.read(meta.key)
    assert angle_deg(out["rotation"] @ ref["rotation"].T) < 3.0
    assert np.abs(out["vertices"] - ref["vertices"]).max() < 5.0
