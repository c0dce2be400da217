"""Incremental regeneration: reruns reuse unchanged items and shards (pipeline/cache.py)."""
import dataclasses
import shutil

from data_schema.params import ChainParams, IngestParams
from data_schema.store import Store
from tests.conftest import SAMPLE_PARAMS
from pipeline.stages.ingest import run_ingest
from pipeline.stages.scan_chain import run_chain_stage

PARAMS = dataclasses.replace(SAMPLE_PARAMS, run=ChainParams(workers=1))


def snapshot(root):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.glob("*.h5"))}


def test_rerun_add_scan_and_param_change(small_sample, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_sample, raw)
    st = tmp_path / "st"

    def ingest():
        return run_ingest(raw, st / "raw_mesh", st / "raw_frames", IngestParams(workers=1))

    def register(params=PARAMS):
        return run_chain_stage("register", params, st / "raw_mesh", st / "registered_mesh")

    first = ingest()
    assert first.computed == first.n_items
    assert register().computed == len(Store(st / "raw_mesh"))
    mesh0, reg0 = snapshot(st / "raw_mesh"), snapshot(st / "registered_mesh")

    # nothing changed: nothing computed, no shard rewritten, not even the index
    index0 = [(st / s / name).stat().st_mtime_ns for s in ("raw_mesh", "registered_mesh")
              for name in ("index.json", "failures.jsonl")]
    assert ingest().computed == 0 and register().computed == 0
    assert snapshot(st / "raw_mesh") == mesh0 and snapshot(st / "registered_mesh") == reg0
    assert [(st / s / name).stat().st_mtime_ns for s in ("raw_mesh", "registered_mesh")
            for name in ("index.json", "failures.jsonl")] == index0

    # one new scan in a new subject folder: one item computed, exactly one new shard
    new = raw / "bosphorus" / "bs099"
    new.mkdir()
    for f in sorted((raw / "bosphorus").glob("bs000/bs000_E_HAPPY_0.*")):
        shutil.copy(f, new / f.name.replace("bs000", "bs099"))
    assert ingest().computed == 1
    assert register().computed == 1
    mesh1, reg1 = snapshot(st / "raw_mesh"), snapshot(st / "registered_mesh")
    assert set(mesh1) - set(mesh0) == {"bosphorus_bs099.h5"} and set(reg1) - set(reg0) == {"bosphorus_bs099.h5"}
    assert {k: mesh1[k] for k in mesh0} == mesh0 and {k: reg1[k] for k in reg0} == reg0

    # a changed register parameter recomputes register, not ingest
    changed = dataclasses.replace(PARAMS, register=dataclasses.replace(PARAMS.register, max_rmse_mm=9.0))
    assert ingest().computed == 0
    assert register(changed).computed == len(Store(st / "raw_mesh"))

    # a removed scan disappears from the store on the next run
    shutil.rmtree(new)
    ingest()
    assert "bosphorus_bs099.h5" not in snapshot(st / "raw_mesh")
    assert not any("bs099" in k for k in Store(st / "raw_mesh").keys)
