"""The ``template`` stage on small hand-made raw_mesh stores whose landmark sets are a
known face under planted rigid transforms: neutral-only selection, per-item failures,
the fallback to the shipped default, the CLI and ``register.template``."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_schema.errors import ConfigError
from data_schema.params import RegisterParams
from data_schema.schemas import RAW_MESH
from data_schema.store import ItemMeta, ItemRecord, read_failures
from pipeline.cli import main
from pipeline.output import StoreOutput
from pipeline.stages.template import run_template, template_digest, template_for
from preprocess.landmark_names import BOSPHORUS_TO_IBUG
from preprocess.registration import apply_rigid
from preprocess.template import load_template

SIGMA = 0.3   # landmark noise per coordinate, mm


def record(key, dataset, expression, label, points, names):
    """A raw_mesh item: one triangle, the given landmarks."""
    meta = ItemMeta(key, dataset, key.split("/")[1], "0", expression, label, key, "0" * 64, "test")
    z3 = np.zeros((0, 3))
    arrays = {
        "vertices": np.eye(3), "faces": np.array([[0, 1, 2]], np.int32), "colors": np.zeros((0, 3), np.uint8),
        "uv": np.zeros((0, 2)), "face_uv": np.zeros((0, 3), np.int32), "texture_png": np.zeros(0, np.uint8),
        "landmarks": np.asarray(points, np.float64).reshape(-1, 3) if len(points) else z3,
        "landmark_names": np.asarray(names, dtype=object),
        "landmark_vertex": np.full(len(names), -1, np.int64),
        "landmarks2d": np.zeros((0, 2)), "landmark2d_names": np.asarray([], dtype=object),
        "grid_index": np.zeros(0, np.int64), "grid_shape": np.zeros(2, np.int64),
        "landmark_provenance": np.asarray("file:test", dtype=object),
        "warnings": np.asarray([], dtype=object),
    }
    return ItemRecord(meta, arrays)


def posed(points, rng):
    """points (N, 3) + N(0, SIGMA) noise, then a random rotation and translation."""
    R = Rotation.random(random_state=rng).as_matrix()
    return apply_rigid(points + rng.normal(0, SIGMA, points.shape), R, rng.uniform(-100, 100, 3))


def write_store(root, records):
    out = StoreOutput(root, RAW_MESH, {}, "test")
    out.write("all", records)
    out.close([])


@pytest.fixture
def store(tmp_path):
    """4 Bosphorus subjects (neutral + a distorted expression each, Bosphorus names), 4
    generic scans (no labels, iBUG names), one generic scan with 2 iBUG points and one
    with no landmarks."""
    rng = np.random.default_rng(0)
    ref = load_template()
    bos_names = list(BOSPHORUS_TO_IBUG)
    bos_pts = ref.points[[BOSPHORUS_TO_IBUG[n] for n in bos_names]]
    recs = []
    for s in range(4):
        recs.append(record(f"bosphorus/bs{s:03d}/0/NEUTRAL/n.bnt", "bosphorus", "NEUTRAL", 6,
                           posed(bos_pts, rng), bos_names))
        grin = bos_pts.copy()
        grin[[bos_names.index("Left mouth corner"), bos_names.index("Right mouth corner")]] += [0, 25, 10]
        recs.append(record(f"bosphorus/bs{s:03d}/0/HAPPY/h.bnt", "bosphorus", "HAPPY", 3, posed(grin, rng), bos_names))
    for s in range(4):
        recs.append(record(f"generic/g{s}/0/-/g.ply", "generic", "", -1, posed(ref.points, rng), ref.names))
    recs.append(record("generic/bad/0/-/two.ply", "generic", "", -1, ref.points[:2], ref.names[:2]))
    recs.append(record("generic/none/0/-/none.ply", "generic", "", -1, [], []))
    root = tmp_path / "raw_mesh"
    write_store(root, recs)
    return root


def test_stage_builds_the_known_face_from_neutral_scans(store, tmp_path):
    out = tmp_path / "template" / "template.json"
    res = run_template(store, out)
    assert res.exit_code == 0 and res.n_failed == 2
    doc = json.loads(out.read_text())
    b = doc["build"]
    assert b["fallback"] is None
    assert b["selection"] == {"bosphorus": "neutral", "generic": "all"}
    assert b["items"] == sorted([f"bosphorus/bs{s:03d}/0/NEUTRAL/n.bnt" for s in range(4)]
                                + [f"generic/g{s}/0/-/g.ply" for s in range(4)])
    assert b["n_items"] == 8 and b["n_selected"] == 10 and b["n_failed"] == 2
    assert b["converged"] and b["iterations"] >= 1 and b["origin"] == "ibug_30"
    assert set(b["spread_mm"]) == set(load_template().names)
    # Bosphorus points are in 8 sets, the others in the 4 generic ones
    assert b["count"]["ibug_30"] == 8 and b["count"]["ibug_0"] == 4
    # per-point spread ~ SIGMA * sqrt(3) (6 dof of each fit absorb a little)
    assert np.mean(list(b["spread_mm"].values())) == pytest.approx(SIGMA * np.sqrt(3), rel=0.3)
    # the template is the known face: the expressions (mouth corners 25 mm off) are left out.
    # Error: each point is the mean of count_p sets (variance 3 sigma^2 / count_p, 3-D),
    # plus the nose tip's own error (count 8) from the shift to the origin; 1.5x for chance
    tpl, ref = load_template(out), load_template()
    assert tpl.names == ref.names
    err = np.sqrt(np.mean(np.sum((tpl.points - ref.points) ** 2, axis=1)))
    counts = np.array([b["count"][n] for n in ref.names])
    assert err < 1.5 * SIGMA * np.sqrt(3 * (np.mean(1 / counts) + 1 / 8))
    assert np.linalg.norm(tpl.point("ibug_54") - ref.point("ibug_54")) < 2.0
    fails = {f["item"]: f["message"] for f in read_failures(out.parent)}
    assert set(fails) == {"generic/bad/0/-/two.ply", "generic/none/0/-/none.ply"}
    assert "2 landmark(s) in the iBUG-68 vocabulary" in fails["generic/bad/0/-/two.ply"]
    assert "no 3-D landmarks" in fails["generic/none/0/-/none.ply"]
    # byte-stable: a rerun writes the same file
    before = out.read_bytes()
    run_template(store, out)
    assert out.read_bytes() == before


def test_too_few_sets_write_the_default_and_say_so(tmp_path):
    rng = np.random.default_rng(1)
    ref = load_template()
    root = tmp_path / "raw_mesh"
    write_store(root, [record(f"generic/g{s}/0/-/g.ply", "generic", "", -1, posed(ref.points, rng), ref.names)
                       for s in range(2)])
    out = tmp_path / "t" / "template.json"
    assert main(["template", "--in", str(root), "--out", str(out)]) == 0
    b = json.loads(out.read_text())["build"]
    assert b["n_items"] == 0 and b["items"] == [] and "need 3" in b["fallback"]
    tpl = load_template(out)
    np.testing.assert_array_equal(tpl.points, ref.points)
    assert tpl.provenance.startswith("the shipped default template")


def test_register_template_picks_the_default_the_dataset_or_a_path(store, tmp_path):
    assert template_for(RegisterParams()) is load_template()
    with pytest.raises(ConfigError, match="fermaps template"):
        template_for(RegisterParams(template="dataset"), root=tmp_path)
    out = tmp_path / "data" / "template" / "template.json"
    run_template(store, out)
    ds = template_for(RegisterParams(template="dataset"), root=tmp_path)
    np.testing.assert_array_equal(ds.points, load_template(out).points)
    by_path = template_for(RegisterParams(template=str(out)))
    np.testing.assert_array_equal(by_path.points, ds.points)
    assert template_digest(RegisterParams(template="dataset"), root=tmp_path) != template_digest(RegisterParams())
    with pytest.raises(ConfigError):
        template_for(RegisterParams(template=str(tmp_path / "absent.json")))
