"""Crash safety: a stage killed with SIGKILL at random points leaves no half shard that
a reader accepts, and the rerun completes with a store equal to a clean run's."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from data_schema.errors import SchemaError
from data_schema.params import IngestParams
from data_schema.store import Store
from pipeline.stages.ingest import run_ingest

ROOT = Path(__file__).resolve().parents[2]


def store_bytes(root: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_ingest_killed_at_random_points_then_rerun_equals_clean(small_sample, tmp_path):
    clean_m, clean_f = tmp_path / "clean_m", tmp_path / "clean_f"
    assert run_ingest(small_sample, clean_m, clean_f, IngestParams(workers=1)).exit_code == 0
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"ingest": {"workers": 1}}))
    m, f = tmp_path / "m", tmp_path / "f"
    cmd = [sys.executable, "-m", "pipeline", "--params", str(params), "ingest", "--raw", str(small_sample),
           "--mesh-out", str(m), "--frames-out", str(f)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    n_shards = len(list(clean_m.glob("*.h5"))) + len(list(clean_f.glob("*.h5")))
    rng = random.Random(7)
    killed = 0
    for attempt in range(3):
        # kill at a random point of the run's progress (k shard files, final or
        # temporary, on disk), not at a random time: machines differ in speed
        target = rng.randint(1, n_shards - 1)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            written = sum(len(list(d.glob("*.h5*"))) + len(list(d.glob(".*.h5.tmp-*")))
                          for d in (m, f) if d.exists())
            if written >= target:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the stage and its dask workers
            killed += 1
        proc.wait()
        # whatever is on disk now: a reader either refuses the store or reads only whole shards
        for root, schema in ((m, "raw_mesh"), (f, "raw_frames")):
            if (root / "index.json").exists():
                try:
                    Store(root, schema)
                except SchemaError:
                    pytest.fail(f"index of a killed run lists a shard that does not verify: {root}")
            for p in root.glob("*.h5") if root.exists() else ():
                assert not p.name.startswith("."), "temporary shards never carry the final name"
    assert killed >= 1, "the stage finished before every kill: raise the sample size"
    assert run_ingest(small_sample, m, f, IngestParams(workers=1)).exit_code == 0
    assert store_bytes(m) == store_bytes(clean_m)
    assert store_bytes(f) == store_bytes(clean_f)
