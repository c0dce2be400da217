"""Scale: the same store bytes whether items are computed in the stage's own process
(inline), on 1 or 2 local workers, or on an existing dask cluster joined with
--scheduler; a worker killed in the middle of a run is survived (dask retries the item)."""
import os
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import dataclasses

import pytest

from data_schema.params import ChainParams, IngestParams
from tests.conftest import SAMPLE_PARAMS
from pipeline.runner import Failure, dask_client, run_sharded
from pipeline.stages.ingest import run_ingest
from pipeline.stages.scan_chain import run_chain_stage

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A dask scheduler and two workers started as separate processes on loopback."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    bindir = Path(sys.executable).parent
    sched = subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([str(bindir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                               "--nworkers", "2", "--no-dashboard"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    try:
        from dask.distributed import Client
        deadline = time.time() + 60
        while True:
            try:
                with Client(address, timeout=5) as c:
                    if len(c.scheduler_info()["workers"]) >= 2:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "cluster did not start"
            time.sleep(0.5)
        yield address
    finally:
        for p in (worker, sched):
            p.terminate()
        for p in (worker, sched):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def store_bytes(root: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


INLINE, POOL = 10**6, 0  # inline_items: every run inline / never inline


def test_ingest_bytes_inline_1_worker_2_workers_and_a_separate_scheduler(small_sample, tmp_path, cluster):
    runs = {"inline": IngestParams(workers=1, inline_items=INLINE), "1 worker": IngestParams(workers=1, inline_items=POOL),
            "2 workers": IngestParams(workers=2, inline_items=POOL), "scheduler": IngestParams(scheduler=cluster)}
    stores = {}
    for name, params in runs.items():
        res = run_ingest(small_sample, tmp_path / name / "m", tmp_path / name / "f", params)
        assert res.exit_code == 0 and res.computed == res.n_items > 0
        stores[name] = (store_bytes(tmp_path / name / "m"), store_bytes(tmp_path / name / "f"))
    for name in runs:
        assert stores[name] == stores["inline"], name


def test_3d_chain_bytes_inline_and_on_a_separate_scheduler(small_sample, tmp_path, cluster):
    """Numerical stages computed in the test's own process (multi-threaded BLAS, as
    the libraries were imported) give the bytes of single-threaded dask workers."""
    stages = [("register", "raw_mesh", "registered_mesh"), ("crop", "registered_mesh", "face_mesh"),
              ("render", "face_mesh", "maps"), ("clean", "maps", "maps_clean"), ("masks", "maps_clean", "masks")]
    out = {}
    for name, run in (("inline", ChainParams(inline_items=INLINE)), ("scheduler", ChainParams(scheduler=cluster))):
        st = tmp_path / name
        run_ingest(small_sample, st / "raw_mesh", st / "raw_frames", IngestParams(workers=1, inline_items=INLINE))
        params = dataclasses.replace(SAMPLE_PARAMS, run=run)
        for stage, src, dst in stages:
            res = run_chain_stage(stage, params, st / src, st / dst)
            assert res.computed == res.n_items > 0
        out[name] = {dst: store_bytes(st / dst) for _, _, dst in stages}
    for _, _, dst in stages:
        assert out["inline"][dst] == out["scheduler"][dst], dst
        assert any(name.endswith(".h5") for name in out["inline"][dst]), dst


def die_once(marker_dir: str, item: int) -> int:
    """Kill this worker process the first time item 3 is computed (a crash mid-run)."""
    marker = Path(marker_dir) / "killed"
    if item == 3 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return item * item


def test_a_killed_worker_is_survived(tmp_path):
    from functools import partial

    got: dict = {}
    shards = OrderedDict([("a", [0, 1, 2]), ("b", [3, 4, 5])])
    with dask_client(workers=2) as client:
        failures = run_sharded(client, partial(die_once, str(tmp_path)), shards,
                               lambda k, r: got.__setitem__(k, r), stage="t", item_name=str)
    assert (tmp_path / "killed").exists(), "the worker really died"
    assert failures == [] or all(isinstance(f, Failure) and "worker" in f.message for f in failures)
    assert got == {"a": [0, 1, 4], "b": [9, 16, 25]}  # item 3 was retried on a live worker
