"""Scale: joining an existing dask cluster with --scheduler gives the same bytes as a
local run; a worker killed in the middle of a run is survived (dask retries the item)."""
import os
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import pytest

from data_schema.params import IngestParams
from pipeline.runner import Failure, dask_client, run_sharded
from pipeline.stages.ingest import run_ingest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A dask scheduler and one worker started as separate processes on loopback."""
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


def test_joining_a_separate_scheduler_gives_identical_bytes(small_sample, tmp_path, cluster):
    assert run_ingest(small_sample, tmp_path / "m1", tmp_path / "f1", IngestParams(workers=1)).exit_code == 0
    res = run_ingest(small_sample, tmp_path / "m2", tmp_path / "f2", IngestParams(scheduler=cluster))
    assert res.exit_code == 0 and res.computed == res.n_items
    assert store_bytes(tmp_path / "m1") == store_bytes(tmp_path / "m2")
    assert store_bytes(tmp_path / "f1") == store_bytes(tmp_path / "f2")


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
