"""Crash safety: a stage killed with SIGKILL at random points leaves no half shard (or
half checkpoint) that a reader accepts, and the rerun completes with a result equal to
a clean run's: ``ingest``, the 3-D chain stage ``render`` (shards written through
pipeline/output.py) and ``train`` (killed mid-epoch, resumed from ``last.pt``)."""
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_schema.errors import SchemaError
from data_schema.params import IngestParams, TrainStageParams
from data_schema.store import Store
from pipeline.stages.ingest import run_ingest
from pipeline.stages.scan_chain import run_chain_stage
from pipeline.stages.train_stage import run_splits
from tests.conftest import CHAIN_PARAMS
from train.loop import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
#: Wall-clock fields: the only ones a resumed run may not reproduce.
TIMING = {"seconds", "train_samples_per_second", "test_samples_per_second"}


def store_bytes(root: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def fermaps(folder: Path, params: dict, *args: str) -> list[str]:
    """The ``fermaps`` command line with ``folder``/params.yaml holding ``params``."""
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return [sys.executable, "-m", "pipeline", "--params", str(folder / "params.yaml"), *args]


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(cmd: list[str]) -> None:
    """Run ``cmd`` to the end; it must succeed."""
    proc = start(cmd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def kill_when(cmd: list[str], reached: Callable[[], bool], timeout: float = 120) -> bool:
    """Run ``cmd`` and SIGKILL its whole process group (the stage and its dask workers)
    as soon as ``reached()``; True when it was killed, False when it finished first."""
    proc = start(cmd)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if reached():
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return killed


def shards_on_disk(*roots: Path) -> int:
    """Shard files, final or temporary, under ``roots``: the progress of a store stage."""
    return sum(len(list(d.glob("*.h5*"))) + len(list(d.glob(".*.h5.tmp-*"))) for d in roots if d.exists())


def assert_whole_or_refused(root: Path, schema: str) -> None:
    """Whatever a killed run left: a reader refuses the store or reads only whole shards."""
    if (root / "index.json").exists():
        try:
            Store(root, schema)
        except SchemaError:
            pytest.fail(f"index of a killed run lists a shard that does not verify: {root}")
    for p in root.glob("*.h5") if root.exists() else ():
        assert not p.name.startswith("."), "temporary shards never carry the final name"


def kill_store_stage_at_random_points(cmd: list[str], outs: dict[Path, str], n_shards: int,
                                      attempts: int, seed: int) -> int:
    """Kill the stage ``attempts`` times, each at a random number of shards on disk (its
    progress, not a time: machines differ in speed); returns how many kills landed."""
    rng = random.Random(seed)
    killed = 0
    for _ in range(attempts):
        target = rng.randint(1, n_shards - 1)
        killed += kill_when(cmd, lambda target=target: shards_on_disk(*outs) >= target)
        for root, schema in outs.items():
            assert_whole_or_refused(root, schema)
    return killed


def test_ingest_killed_at_random_points_then_rerun_equals_clean(small_sample, tmp_path):
    clean_m, clean_f = tmp_path / "clean_m", tmp_path / "clean_f"
    assert run_ingest(small_sample, clean_m, clean_f, IngestParams(workers=1)).exit_code == 0
    m, f = tmp_path / "m", tmp_path / "f"
    cmd = fermaps(tmp_path, {"ingest": {"workers": 1}}, "ingest", "--raw", str(small_sample),
                  "--mesh-out", str(m), "--frames-out", str(f))
    n_shards = len(list(clean_m.glob("*.h5"))) + len(list(clean_f.glob("*.h5")))
    killed = kill_store_stage_at_random_points(cmd, {m: "raw_mesh", f: "raw_frames"}, n_shards, 3, 7)
    assert killed >= 1, "the stage finished before every kill: raise the sample size"
    assert run_ingest(small_sample, m, f, IngestParams(workers=1)).exit_code == 0
    assert store_bytes(m) == store_bytes(clean_m)
    assert store_bytes(f) == store_bytes(clean_f)


def test_render_killed_at_random_points_then_rerun_equals_clean(chain_stores, tmp_path):
    """``render`` writes its shards through pipeline/output.py; the clean run is the
    shared fixture's ``maps`` store (same parameters)."""
    clean, out = chain_stores / "maps", tmp_path / "maps"
    cmd = fermaps(tmp_path, {"run": {"workers": 1}}, "render", "--in", str(chain_stores / "face_mesh"),
                  "--out", str(out))
    n_shards = len(list(clean.glob("*.h5")))
    killed = kill_store_stage_at_random_points(cmd, {out: "maps"}, n_shards, 2, 11)
    assert killed >= 1, "the stage finished before every kill: raise the sample size"
    assert run_chain_stage("render", CHAIN_PARAMS, chain_stores / "face_mesh", out).exit_code == 0
    assert store_bytes(out) == store_bytes(clean)


def assert_same(a, b, where: str = "") -> None:
    """``a`` equals ``b`` exactly (tensors bit for bit), wall-clock fields aside."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(set(a) ^ set(b)))
        for k in a:
            if k not in TIMING:
                assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def history_rows(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(path.open())]


def test_train_killed_mid_epoch_resumes_to_the_uninterrupted_result(chain_stores, tmp_path):
    """AMDFN, 2 epochs on one fold: killed during epoch 2 (after epoch 1's ``last.pt``),
    rerun: it resumes from epoch 1 and ends with the uninterrupted run's checkpoints,
    curves and test metrics, bit for bit.  Every run is a ``fermaps train`` process with
    the same environment: float sums, hence weights, depend on torch's thread count."""
    p = TrainStageParams(models=("amdfn",), epochs=2, k=3, folds=(0,))
    stores, splits = str(chain_stores), str(tmp_path / "splits")
    assert run_splits(stores, splits, p) == 0
    params = {"train": {"models": ["amdfn"], "epochs": 2, "k": 3, "folds": [0]}}

    def train(run: str) -> tuple[list[str], Path, Path, Path]:
        models, metrics, plots = (tmp_path / run / x for x in ("models", "metrics.json", "plots"))
        cmd = fermaps(tmp_path, params, "train", "amdfn", "--stores", stores, "--splits", splits,
                      "--out", str(models), "--metrics", str(metrics), "--plots", str(plots))
        return cmd, models / "fold0", metrics, plots

    cmd, clean_fold, clean_metrics, clean_plots = train("clean")
    run(cmd)
    cmd, fold, metrics, plots = train("killed")
    delay = random.Random(3).uniform(0.0, 0.3)   # somewhere early in epoch 2
    appeared: list[float] = []

    def in_epoch_2() -> bool:
        if not appeared and (fold / "last.pt").exists():
            appeared.append(time.time())
        return bool(appeared) and time.time() >= appeared[0] + delay
    assert kill_when(cmd, in_epoch_2), "the run finished before the kill"
    assert load_checkpoint(fold / "last.pt")["epoch"] == 1, "killed after epoch 1's checkpoint, before epoch 2's"
    assert not metrics.exists()

    run(cmd)
    for name in ("last.pt", "best.pt"):
        assert_same(load_checkpoint(clean_fold / name), load_checkpoint(fold / name), name)
    assert (fold / "config.json").read_bytes() == (clean_fold / "config.json").read_bytes()
    assert_same(json.loads(clean_metrics.read_text()), json.loads(metrics.read_text()), "metrics")
    assert history_rows(plots / "history" / "amdfn.csv") == history_rows(clean_plots / "history" / "amdfn.csv")
    assert (plots / "confusion" / "amdfn.json").read_bytes() == \
        (clean_plots / "confusion" / "amdfn.json").read_bytes()
