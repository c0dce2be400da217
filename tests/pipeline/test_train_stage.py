"""The training stages' wiring on the reduced sample: splits -> train -> evaluate writes
checkpoints, test metrics and plot files; bad set-ups fail with a clear message."""
import json

import pytest

from data_schema.params import TrainStageParams
from pipeline.stages.train_stage import run_evaluate, run_splits, run_train


def test_splits_train_evaluate(chain_stores, tmp_path):
    p = TrainStageParams(models=("amdfn",), epochs=1, k=3, folds=(0,))
    assert run_splits(str(chain_stores), str(tmp_path / "splits"), p) == 0
    man = json.loads((tmp_path / "splits" / "amdfn.json").read_text())
    fold = man["folds"][0]
    assert not set(fold["train_subjects"]) & set(fold["test_subjects"])
    assert not set(fold["val_subjects"]) & set(fold["test_subjects"])
    assert run_train("amdfn", str(chain_stores), str(tmp_path / "splits"), str(tmp_path / "models" / "amdfn"),
                     str(tmp_path / "metrics" / "amdfn.json"), str(tmp_path / "plots"), p) == 0
    assert (tmp_path / "models" / "amdfn" / "fold0" / "best.pt").exists()
    assert (tmp_path / "models" / "amdfn" / "fold0" / "config.json").exists()
    m = json.loads((tmp_path / "metrics" / "amdfn.json").read_text())["fold0"]
    assert 0.0 <= m["accuracy"] <= 1.0 and m["n_test"] == 6  # one held-out subject x 6 classes
    assert (tmp_path / "plots" / "history" / "amdfn.csv").read_text().startswith("epoch,")
    assert json.loads((tmp_path / "plots" / "confusion" / "amdfn.json").read_text())
    assert run_evaluate(str(tmp_path / "metrics"), str(tmp_path / "evaluation.json"), p) == 0
    assert "amdfn" in json.loads((tmp_path / "evaluation.json").read_text())


def test_more_folds_than_subjects_is_a_clear_error(chain_stores, tmp_path):
    p = TrainStageParams(models=("amdfn",), k=4)
    with pytest.raises(ValueError, match="subject"):
        run_splits(str(chain_stores), str(tmp_path / "splits"), p)


def test_a_config_error_is_one_line_from_the_cli(chain_stores, tmp_path, capsys):
    """The CLI prints a ConfigError (here: more folds than subjects) as one line naming
    the command, exit status 2, no traceback."""
    from pipeline.cli import main

    params = tmp_path / "params.yaml"
    params.write_text("train:\n  models: [amdfn]\n  k: 4\n")
    assert main(["--params", str(params), "splits", "--stores", str(chain_stores),
                 "--out", str(tmp_path / "splits")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fermaps splits: error: ")
    assert "subject-independent folds" in err[0] and "Traceback" not in err[0]


def test_loader_workers_come_from_params_and_never_change_the_batches(chain_stores):
    """train.workers (-1 = the configuration's) sets the DataLoader workers; the batches,
    shuffled, are the same with 0 and 2 workers, so the results do not depend on it."""
    import torch

    from data_schema.store import Store
    from pipeline.stages.train_stage import config_for
    from train.data import MapsDataset, make_loader

    assert config_for("amdfn", TrainStageParams()).workers == 0
    assert config_for("amdfn", TrainStageParams(workers=3)).workers == 3
    keys = [m.key for m in Store(chain_stores / "maps_clean").metas() if m.label >= 0]
    ds = MapsDataset(chain_stores / "maps_clean", keys)
    a, b = (list(make_loader(ds, 4, True, w, 11, drop_last=True)) for w in (0, 2))
    assert len(a) == len(b) > 0
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
