"""`fermaps qa` on small hand-made stores with planted defects: exactly the planted
frames and scans are flagged, the CSV has a row per input frame and per scan, the
sheet puts the worst first, older stores and wrong paths are reported, not fatal."""
import csv
import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from data_schema.schemas import get_schema
from data_schema.store import ItemMeta, ItemRecord, write_failures
from pipeline import qa_rules
from pipeline.cli import main
from pipeline.stages import qa
from preprocess.map_quality import face_region, hole_fraction
from tests.train_stores import write_store

S = 32      # aligned crop side
M = 32      # map side


def _meta(key: str, dataset: str = "ckplus") -> ItemMeta:
    subject, session = key.split("/")[1:3]
    return ItemMeta(key, dataset, subject, session, "x", -1, f"raw/{key}", "ab" * 32, "test")


def _record(schema_name: str, schema, key: str, **arrays) -> ItemRecord:
    """Every dataset of ``schema``: the given arrays, empty (ragged) or zero others."""
    sizes = {"S": S, "H": M, "W": M}
    full = {}
    for d in schema.datasets:
        if d.name in arrays:
            full[d.name] = arrays[d.name]
            continue
        shape = tuple(sizes.get(s, s) for s in d.shape)
        if d.dtype == "str":
            full[d.name] = np.array([], dtype=object) if d.ragged else np.array("", dtype=object)
        else:
            full[d.name] = np.zeros(((0,) if d.ragged else ()) + shape, d.dtype)
    return ItemRecord(_meta(key, "bosphorus" if schema_name != "aligned_frames" else "ckplus"), full)


# ---------------------------------------------------------------------------- frames

def _face68() -> np.ndarray:
    """68 points spread over the middle of an S x S crop (a fixed, face-like cloud)."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    r = 8 + 3 * np.cos(3 * t)
    return np.stack([S / 2 + r * np.cos(t), S / 2 + r * np.sin(t)], axis=1).astype(np.float32)


def frames_item(key: str, n: int, *, methods=None, score=None, face_size=None, sharpness=None,
                pose=None, shift_from=None, dropped=(), index=None, schema=None) -> ItemRecord:
    schema = schema or get_schema("aligned_frames")
    rng = np.random.default_rng(len(key))
    lm = np.repeat(_face68()[None], n, axis=0) + rng.normal(0, 0.05, (n, 68, 2)).astype(np.float32)
    if shift_from is not None:
        lm[shift_from:] += 5.0  # a step of (5, 5) px: RMS 7.07 px = 0.221 of the crop
    methods = list(methods or ["file"] * n)
    arrays = {
        "frames": rng.integers(0, 255, (n, S, S, 3), dtype=np.uint8),
        "landmarks68": lm.astype(np.float32),
        "transforms": np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1)),
        "face_found": np.array([m != "interpolated" for m in methods]),
        "interpolated": np.array([m == "interpolated" for m in methods]),
        "score": np.asarray(score if score is not None else [1.0] * n, np.float32),
        "frame_index": np.asarray(index if index is not None else range(n), np.int64),
        "method": np.array(methods, dtype=object),
        "head_pose": np.asarray(pose if pose is not None else [[5.0, 10.0, 1.0]] * n, np.float32),
        "face_size": np.asarray(face_size if face_size is not None else [150.0] * n, np.float32),
        "sharpness": np.asarray(sharpness if sharpness is not None else [100.0] * n, np.float32),
        "n_frames_in": np.int64(n + len(dropped)),
        "dropped": np.array(json.dumps([list(d) for d in dropped]), dtype=object),
    }
    return _record("aligned_frames", schema, key, **{k: v for k, v in arrays.items()
                                                      if k in {d.name for d in schema.datasets}})


#: item B's planted defects, by input frame index -> the one flag expected
PLANTED_FRAMES = {2: "low_score", 3: "small_face", 4: "blurred", 5: "dropped", 6: "landmark_jump",
                  7: "yaw", 8: "interpolated"}


def defect_item(schema=None) -> ItemRecord:
    # kept frames 0..4, 6..9 (9 frames); frame 5 dropped
    index = [0, 1, 2, 3, 4, 6, 7, 8, 9]
    methods = ["detected", "tracked", "detected", "tracked", "tracked", "tracked", "tracked",
               "interpolated", "tracked"]
    score = [2.0, 1.8, 0.1, 1.9, 2.1, 2.0, 1.7, 0.0, 1.6]
    size = [150.0, 150, 150, 40.0, 150, 150, 150, 150, 150]
    sharp = [100.0, 110, 90, 105, 10.0, 95, 100, 100, 100]
    pose = [[5.0, 10, 0]] * 9
    pose[6] = [50.0, 10, 0]
    return frames_item("ckplus/S010/002/1/002", 9, methods=methods, score=score, face_size=size,
                       sharpness=sharp, pose=pose, shift_from=5, index=index,
                       dropped=[(5, "no face found; 1 consecutive frames without a face")], schema=schema)


# ---------------------------------------------------------------------------- scans

def _disc(radius=13.0) -> np.ndarray:
    r, c = np.mgrid[0:M, 0:M]
    return (r - (M - 1) / 2) ** 2 + (c - (M - 1) / 2) ** 2 <= radius ** 2


def maps_item(key: str, valid: np.ndarray, schema_name="maps_clean") -> ItemRecord:
    r, c = np.mgrid[0:M, 0:M].astype(np.float32)
    depth = np.where(valid, -0.05 * ((r - (M - 1) / 2) ** 2 + (c - (M - 1) / 2) ** 2), 0).astype(np.float32)
    maps = np.zeros((8, M, M), np.float32)
    maps[3] = np.where(valid, 1 + depth / 20, 0)
    maps[4:8] = np.where(valid, 0.5, 0)  # a flat shape index: roughness 0
    return _record(schema_name, get_schema(schema_name), key, maps=maps, depth_mm=depth, valid=valid,
                   landmarks68_px=np.tile(_face68() * (M / S), (1, 1)).astype(np.float32),
                   landmarks68_present=np.ones(68, bool), pixel_size_mm=np.float64(1.0),
                   extent_mm=np.array([-16.0, 16, -16, 16]))


def reg_item(key: str, rmse: float, method="file") -> ItemRecord:
    return _record("registered_mesh", get_schema("registered_mesh"), key, rotation=np.eye(3),
                   translation=np.zeros(3), rmse_mm=np.float64(rmse), n_landmarks_used=np.int64(20),
                   registration_method=np.array(method, dtype=object),
                   registration_tried=np.array("", dtype=object),
                   landmark_provenance=np.array("file", dtype=object))


SCAN_KEYS = {k: f"bosphorus/bs00{i}/0/N/bs00{i}_N_N_0.bnt" for i, k in enumerate("ABCD")}


def holed() -> np.ndarray:
    v = _disc()
    v[8:16, 18:26] = False  # an 8 x 8 hole inside the disc: 64 / 540 of the region
    return v


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa_stores")
    frames = write_store(root / "aligned_frames", "aligned_frames",
                         [frames_item("ckplus/S005/001/1/001", 6), defect_item()])
    reg = write_store(root / "registered_mesh", "registered_mesh",
                      [reg_item(SCAN_KEYS["A"], 2.0), reg_item(SCAN_KEYS["B"], 9.0),
                       reg_item(SCAN_KEYS["C"], 2.5), reg_item(SCAN_KEYS["D"], 1.5, "geometric")])
    clean = write_store(root / "maps_clean", "maps_clean",
                        [maps_item(SCAN_KEYS["A"], _disc()), maps_item(SCAN_KEYS["C"], holed()),
                         maps_item(SCAN_KEYS["D"], _disc())])
    return {"frames": str(frames), "reg": str(reg), "clean": str(clean), "root": root}


@pytest.fixture(scope="module")
def reviewed(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("qa_out")
    res = qa.review([stores["frames"], stores["reg"], stores["clean"]], out, top=48, per_item=3)
    return res, out


def _csv(out):
    with open(out / "qa.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------- tests

def test_exactly_the_planted_frames_are_flagged(reviewed):
    res, out = reviewed
    rows = [r for r in _csv(out) if r["kind"] == "frame"]
    flagged = {(r["key"], int(r["frame_index"])): r["flags"] for r in rows if r["flags"]}
    assert flagged == {("ckplus/S010/002/1/002", i): f for i, f in PLANTED_FRAMES.items()}


def test_exactly_the_planted_scans_are_flagged(reviewed):
    res, out = reviewed
    rows = {r["key"]: r for r in _csv(out) if r["kind"] == "scan"}
    assert {k: r["flags"] for k, r in rows.items()} == {
        SCAN_KEYS["A"]: "", SCAN_KEYS["B"]: "rmse", SCAN_KEYS["C"]: "holes", SCAN_KEYS["D"]: "geometric"}
    a, c = rows[SCAN_KEYS["A"]], rows[SCAN_KEYS["C"]]
    n = int(_disc().sum())  # 540 pixels
    assert float(c["hole_fraction"]) == pytest.approx(64 / n, rel=1e-5)
    assert float(a["hole_fraction"]) == 0.0  # a digital disc is its own hull
    assert float(a["asymmetry_mm"]) == pytest.approx(0.0, abs=1e-6)
    assert float(a["nose_offset_px"]) == pytest.approx(0.0, abs=1e-9)
    assert float(a["valid_fraction"]) == pytest.approx(n / M ** 2, rel=1e-5)
    assert float(a["si_roughness"]) == 0.0
    assert a["store"] == f"{res.stores[1].path}+{res.stores[2].path}"  # joined by key
    b = rows[SCAN_KEYS["B"]]  # in registered_mesh only: map cells empty
    assert b["rmse_mm"] == "9" and b["valid_fraction"] == "" and b["store"] == res.stores[1].path


def test_csv_has_a_row_per_input_frame_and_per_scan(reviewed):
    res, out = reviewed
    text = (out / "qa.csv").read_text()
    assert tuple(text.splitlines()[0].split(",")) == qa.COLUMNS
    rows = _csv(out)
    frames = [r for r in rows if r["kind"] == "frame"]
    assert len(frames) == 6 + 10 and len(rows) == 16 + 4
    b = [r for r in frames if r["key"] == "ckplus/S010/002/1/002"]
    assert [int(r["frame_index"]) for r in b] == list(range(10))  # dropped frame 5 in its place
    drop = b[5]
    assert drop["method"] == "dropped" and drop["note"].startswith("no face found") and drop["score"] == ""
    assert b[6]["landmark_jump"] and float(b[6]["landmark_jump"]) > qa_rules.LANDMARK_JUMP_MAX
    assert b[0]["landmark_jump"] == ""  # nothing to compare the first frame with
    assert float(b[4]["sharpness_rel"]) == pytest.approx(0.1)
    assert (b[7]["yaw"], b[7]["pitch"], b[7]["roll"]) == ("50", "10", "0")
    assert {r["badness"] for r in rows if not r["flags"]} == {"0"}


def test_sheet_puts_the_worst_first_and_caps_one_item(reviewed):
    res, out = reviewed
    # a landmark jump (weight 3, 4.4x its limit) beats the 9 mm scan (weight 3, 1.5x)
    first = res.tiles[0]
    assert (first.values["key"], first.values["frame_index"]) == ("ckplus/S010/002/1/002", 6)
    frames = [t for t in res.tiles if t.values["kind"] == "frame"]
    assert len(frames) == 3  # six flagged frames with an image, one item: capped at 3
    assert [t.values["flags"] for t in frames[:1]] == ["landmark_jump"]
    assert [t.values["key"] for t in res.tiles if t.values["kind"] == "scan"] == [
        SCAN_KEYS["B"], SCAN_KEYS["C"], SCAN_KEYS["D"]]  # rmse (3), holes (2), geometric (1)
    im = Image.open(out / "sheet.png")
    assert im.format == "PNG" and im.mode == "RGB" and im.width == qa.SHEET_W
    scan_w = 3 * M * round(qa.SCAN_TILE_H / M)
    cap = qa.CAPTION_LINES * qa.LINE_H + 6
    grid_h = (qa.FRAME_TILE + cap + qa.PAD) + (scan_w // 3 + cap + qa.PAD) + 2 * qa.PAD
    assert grid_h < im.height <= grid_h + qa.PAD * 2 + 6 * qa.HEAD_H
    # the first grid is the frames' (the worst tile is a frame): left of the header
    # text, the first red pixel down the border column is its tile's red border,
    # which runs down the 200-px crop and stops at the caption
    px = np.asarray(im)
    col = [tuple(p) for p in px[:, qa.PAD - 2]]
    y0 = col.index(qa.RED)
    assert y0 < 8 * qa.HEAD_H
    assert col[y0 + qa.FRAME_TILE] == qa.RED and col[y0 + qa.FRAME_TILE + 10] != qa.RED


def test_output_is_deterministic(stores, reviewed, tmp_path):
    res, out = reviewed
    qa.review([stores["frames"], stores["reg"], stores["clean"]], tmp_path, top=48, per_item=3)
    assert (tmp_path / "qa.csv").read_bytes() == (out / "qa.csv").read_bytes()
    assert (tmp_path / "sheet.png").read_bytes() == (out / "sheet.png").read_bytes()


def test_nothing_flagged_still_draws_the_nearest(tmp_path):
    st = write_store(tmp_path / "af", "aligned_frames", [frames_item("ckplus/S005/001/1/001", 5),
                                                       frames_item("ckplus/S006/001/1/001", 5)])
    res = qa.review([str(st)], tmp_path / "out", top=4, per_item=3)
    assert not res.flagged and not any(r.verdict.flags for r in res.rows)
    assert len(res.tiles) == 4 and max(Counter(t.values["key"] for t in res.tiles).values()) <= 3
    header = qa.sheet_header(res.rows, res.tiles, res.flagged, 3)
    assert "nothing flagged" in header[0]
    assert Image.open(tmp_path / "out" / "sheet.png").width == qa.SHEET_W


def test_failed_items_get_a_flagged_row(tmp_path):
    st = write_store(tmp_path / "af", "aligned_frames", [frames_item("ckplus/S005/001/1/001", 3)])
    write_failures(st, [{"item": "raw/no_face.mp4", "stage": "frames", "error": "InputError",
                         "message": "no face in any frame"}])
    res = qa.review([str(st)], tmp_path / "out")
    failed = [r for r in res.rows if r.verdict.flags]
    assert len(failed) == 1 and failed[0].values["flags"] == "failed" and failed[0].tile is None
    assert failed[0].values["key"] == "raw/no_face.mp4" and "no face" in failed[0].values["note"]


def test_an_older_aligned_frames_store_is_named_and_not_read(tmp_path, capsys):
    v2 = get_schema("aligned_frames")
    new = ("head_pose", "face_size", "sharpness")
    v1 = dataclasses.replace(v2, version=v2.version - 1, datasets=tuple(d for d in v2.datasets if d.name not in new))
    from pipeline.output import StoreOutput
    out = StoreOutput(tmp_path / "old", v1, {}, "test")
    out.write("s", [defect_item(schema=v1)])
    out.close([])
    good = write_store(tmp_path / "af", "aligned_frames", [frames_item("ckplus/S005/001/1/001", 3)])
    rc = main(["qa", str(tmp_path / "old"), str(good), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{tmp_path / 'old'}: schema aligned_frames version {v1.version}" in err
    assert "regenerate the store" in err
    assert {r["store"] for r in _csv(tmp_path / "out")} == {str(good)}


def test_a_wrong_store_type_or_a_non_store_is_named_and_the_rest_reviewed(stores, tmp_path, capsys):
    fs = write_store(tmp_path / "frame_samples", "frame_samples", [_record(
        "frame_samples", get_schema("frame_samples"), "ckplus/S005/001/1/001",
        stcam=np.zeros(7, np.int64), hacn=np.zeros(3, np.int64), wslgan=np.zeros(3, np.int64),
        n_frames=np.int64(6))])
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["qa", str(fs), str(empty), stores["frames"], "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"fermaps qa: error: {fs}: a frame_samples store" in err
    assert f"fermaps qa: error: {empty}: not a store (no index.json)" in err
    assert len(_csv(tmp_path / "out")) == 16  # the good store still reviewed
    with pytest.raises(Exception) as exc:
        qa.open_store(str(fs))
    assert type(exc.value).__name__ == "SchemaError"
    rc = main(["qa", str(fs), "--out", str(tmp_path / "out2")])
    assert rc == 2 and "no store to review" in capsys.readouterr().err


def test_rules_measures():
    lm = np.zeros((3, 68, 2))
    lm[1] += 3.0  # every point moves (3, 3): RMS 3 sqrt 2
    jump = qa_rules.landmark_jump(lm, 100)
    assert math.isnan(jump[0]) and jump[1] == pytest.approx(3 * math.sqrt(2) / 100) and jump[2] == jump[1]
    rel = qa_rules.relative_sharpness(np.array([0.0, 10, 20, 30]))
    assert math.isnan(rel[0]) and rel[1:] == pytest.approx([0.5, 1.0, 1.5])
    v = qa_rules.judge({"method": "interpolated", "score": 0.0, "interpolated": True}, qa_rules.FRAME_RULES)
    assert v.flags == ("interpolated",) and v.badness == 1  # no score rule for interpolated frames
    assert qa_rules.RMSE_MAX_MM == 6.0
    assert qa_rules.judge({"rmse_mm": 7.0}, qa_rules.scan_rules(8.0)).flags == ()


def test_hole_fraction_by_hand():
    # a 10 x 10 square (rows/cols 2..11) with its top-right 3 x 3 corner cut off: the
    # hull's edge runs from centre (2, 8) to (5, 11), i.e. col = row + 6; of the cut
    # pixels (rows 2..4, cols 9..11) those with col <= row + 6 are inside it: (3, 9)
    # on the edge, (4, 9) inside, (4, 10) on the edge -> 3 holes, hull 91 + 3 = 94
    v = np.zeros((14, 14), bool)
    v[2:12, 2:12] = True
    v[2:5, 9:12] = False
    assert sorted(map(tuple, np.argwhere(face_region(v) & ~v))) == [(3, 9), (4, 9), (4, 10)]
    assert hole_fraction(v) == pytest.approx(3 / 94)
    v[7:9, 5:7] = False  # an enclosed 2 x 2 hole: the hull is the same
    assert hole_fraction(v) == pytest.approx(7 / 94)
    line = np.zeros((6, 10), bool)
    line[3, 2:9] = True
    line[3, 5] = False  # one row: the region is the segment of 7 pixels, 1 missing
    assert hole_fraction(line) == pytest.approx(1 / 7)
    assert hole_fraction(np.ones((4, 5), bool)) == 0.0
    assert math.isnan(hole_fraction(np.zeros((4, 5), bool)))
