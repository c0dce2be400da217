"""Metrics and plot files: hand-made predictions with hand-counted matrices, and the real
``dvc metrics show`` / ``dvc plots show`` reading what we write."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from train.metrics import (
    accuracy,
    confusion_matrix,
    mean_recall,
    per_class_recall,
    recall_by_name,
    support,
    write_metrics,
)
from train.plots import (
    HISTORY_FIELDS,
    confusion_rows,
    confusion_rows_from_matrix,
    dvc_plots_entries,
    write_confusion,
    write_history,
)

BIN = Path(sys.executable).parent

# 10 samples, 3 classes; counted by hand:
#   actual 0: predicted 0, 0, 1        -> row [2, 1, 0]
#   actual 1: predicted 1, 1, 1, 2     -> row [0, 3, 1]
#   actual 2: predicted 0, 2, 2        -> row [1, 0, 2]
ACTUAL = [0, 1, 2, 0, 1, 2, 0, 1, 2, 1]
PREDICTED = [0, 1, 0, 0, 1, 2, 1, 1, 2, 2]
HAND = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 2]])


def test_confusion_matrix_counts_by_hand():
    c = confusion_matrix(ACTUAL, PREDICTED, 3)
    assert c.dtype == np.int64 and c.shape == (3, 3)
    np.testing.assert_array_equal(c, HAND)
    np.testing.assert_array_equal(support(c), [3, 4, 3])
    assert accuracy(c) == pytest.approx(7 / 10)
    np.testing.assert_allclose(per_class_recall(c), [2 / 3, 3 / 4, 2 / 3])
    assert mean_recall(c) == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)


def test_row_is_actual_column_is_predicted():
    # one sample of class 0 predicted as 2: C[0, 2] = 1, not C[2, 0]
    c = confusion_matrix([0], [2], 3)
    assert c[0, 2] == 1 and c.sum() == 1


def test_absent_class_has_zero_recall_and_is_left_out_of_the_mean():
    # class 2 never occurs (but is predicted once): recall 0 with support 0, never NaN
    c = confusion_matrix([0, 0, 1, 1], [0, 2, 1, 1], 3)
    np.testing.assert_array_equal(c, [[1, 0, 1], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(per_class_recall(c), [0.5, 1.0, 0.0])
    assert mean_recall(c) == pytest.approx(0.75)
    assert recall_by_name(per_class_recall(c), ["a", "b", "c"]) == {"a": 0.5, "b": 1.0, "c": 0.0}


def test_perfect_and_all_wrong():
    assert accuracy(confusion_matrix([0, 1, 2], [0, 1, 2], 3)) == 1.0
    assert accuracy(confusion_matrix([0, 1, 2], [1, 2, 0], 3)) == 0.0


@pytest.mark.parametrize("actual, predicted, match", [
    ([0, 3], [0, 1], "outside"),
    ([0, -1], [0, 1], "outside"),
    ([0, 1], [0], "differ in length"),
    ([0.0, 1.0], [0, 1], "integer"),
    ([[0, 1]], [[0, 1]], "1-D"),
])
def test_bad_labels_are_rejected(actual, predicted, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(actual, predicted, 3)


def test_empty_matrix_has_no_accuracy():
    c = confusion_matrix([], [], 2)
    np.testing.assert_array_equal(c, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no samples"):
        accuracy(c)
    with pytest.raises(ValueError, match="square"):
        accuracy(np.zeros((2, 3), dtype=int))


def test_write_metrics_json_and_nan(tmp_path):
    path = write_metrics(tmp_path / "m" / "metrics.json",
                         {"test": {"accuracy": np.float32(0.5), "n": np.int64(4)},
                          "per_class_recall": np.array([0.25, 1.0])})
    data = json.loads(path.read_text())
    assert data == {"test": {"accuracy": 0.5, "n": 4}, "per_class_recall": [0.25, 1.0]}
    assert type(data["test"]["n"]) is int
    with pytest.raises(ValueError, match=r"metrics\.test\.loss is nan"):
        write_metrics(tmp_path / "bad.json", {"test": {"loss": math.nan}})
    assert not (tmp_path / "bad.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary file left behind


HISTORY = [
    {"epoch": 1, "train_loss": 1.5, "train_acc": 0.25, "val_loss": 1.75, "val_acc": 0.2,
     "lr": 0.01, "seconds": 3.0, "extra": 7},
    {"epoch": 2, "train_loss": 0.5, "train_acc": 0.875, "val_loss": 0.625, "val_acc": 0.8,
     "lr": 0.001, "seconds": 2.5, "extra": 8},
]


def test_history_csv_and_json(tmp_path):
    rows = list(csv.DictReader(write_history(tmp_path / "h.csv", HISTORY).open()))
    assert list(rows[0]) == [*HISTORY_FIELDS, "extra"]
    assert [float(r["val_acc"]) for r in rows] == [0.2, 0.8]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert json.loads(write_history(tmp_path / "h.json", HISTORY).read_text()) == [
        {k: r[k] for k in (*HISTORY_FIELDS, "extra")} for r in HISTORY]
    with pytest.raises(ValueError, match="empty"):
        write_history(tmp_path / "e.csv", [])
    with pytest.raises(ValueError, match="lack"):
        write_history(tmp_path / "e.csv", [{"epoch": 1}])
    with pytest.raises(ValueError, match=".csv or .json"):
        write_history(tmp_path / "h.txt", HISTORY)


def test_confusion_rows_by_hand():
    names = ["anger", "happy", "surprise"]
    rows = confusion_rows(ACTUAL[:3], PREDICTED[:3], names)
    assert rows == [{"actual": "anger", "predicted": "anger"},
                    {"actual": "happy", "predicted": "happy"},
                    {"actual": "surprise", "predicted": "anger"}]
    from_matrix = confusion_rows_from_matrix(HAND, names)
    assert len(from_matrix) == 10
    assert from_matrix.count({"actual": "happy", "predicted": "surprise"}) == 1
    assert from_matrix.count({"actual": "happy", "predicted": "happy"}) == 3
    # the per-sample rows and the expanded matrix hold the same multiset
    key = lambda r: (r["actual"], r["predicted"])
    assert sorted(map(key, confusion_rows(ACTUAL, PREDICTED, names))) == sorted(map(key, from_matrix))
    with pytest.raises(ValueError, match="distinct"):
        confusion_rows([0], [0], ["a", "a"])
    with pytest.raises(ValueError, match="2 class names for 3"):
        confusion_rows_from_matrix(HAND, names[:2])


def _dvc(args: str, cwd: Path) -> str:
    exe = shutil.which("dvc", path=str(BIN))
    if exe is None:
        pytest.fail("dvc is not installed in this environment (make test installs it)")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    out = subprocess.run(f"{exe} {args}", check=False, cwd=cwd, env=env, shell=True, capture_output=True, text=True)
    assert out.returncode == 0, f"dvc {args}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_dvc_reads_our_metrics_and_plots(tmp_path):
    _dvc("init --no-scm -q", tmp_path)
    write_metrics(tmp_path / "metrics.json", {"test": {"accuracy": 0.7, "loss": 0.5},
                                              "per_class_recall": {"anger": 2 / 3}})
    write_history(tmp_path / "history.csv", HISTORY)
    write_confusion(tmp_path / "confusion.json", ACTUAL, PREDICTED, ["anger", "happy", "surprise"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"metrics": ["metrics.json"], "plots": dvc_plots_entries("history.csv", "confusion.json")}))

    shown = json.loads(_dvc("metrics show --json", tmp_path))
    data = next(iter(shown.values()))["data"]["metrics.json"]["data"]
    assert data["test"]["accuracy"] == 0.7 and data["per_class_recall"]["anger"] == pytest.approx(2 / 3)

    plots = json.loads(_dvc("plots show --json", tmp_path))["data"]
    acc = plots["accuracy"][0]["content"]["data"]["values"]
    assert sorted((r["field"], float(r["dvc_inferred_y_value"])) for r in acc) == [
        ("train_acc", 0.25), ("train_acc", 0.875), ("val_acc", 0.2), ("val_acc", 0.8)]
    conf = plots["confusion.json"][0]["content"]
    assert conf["spec"]["encoding"]["x"]["field"] == "actual"
    values = conf["data"]["values"]
    assert len(values) == 10
    assert sum(v["actual"] == "happy" and v["predicted"] == "surprise" for v in values) == 1
