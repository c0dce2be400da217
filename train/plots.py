"""Files for ``dvc plots``: per-epoch training curves and the confusion matrix.

* :func:`write_history` - the per-epoch history of :func:`train.loop.fit` as CSV (one row
  per epoch, a header line) or JSON (a list of objects), chosen by the file suffix.  DVC
  draws its ``linear`` template from either, e.g. ``x: epoch, y: [train_acc, val_acc]``.
* :func:`write_confusion` - one JSON object per evaluated sample,
  ``{"actual": "happy", "predicted": "sadness"}``: the row format of DVC's ``confusion``
  (and ``confusion_normalized``) template, ``x: actual, y: predicted``.
* :func:`dvc_plots_entries` - the matching ``plots:`` entries for ``dvc.yaml``.

All files are written atomically (temporary file + rename), numbers in full precision,
class names from ``data_schema.labels`` (so the plot's axes read as expressions, not
indices).  Nothing is rendered here: DVC renders the plots (``dvc plots show`` writes
HTML with Vega-Lite), so PNG output would only duplicate it.

Why by hand: the formats are a few lines of ``csv`` / ``json``; DVC reads plain files and
offers no writer API.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from data_schema.store import atomic_write
from train.metrics import as_labels, to_jsonable, write_json_atomic

__all__ = ["HISTORY_FIELDS", "confusion_rows", "confusion_rows_from_matrix", "dvc_plots_entries",
           "write_confusion", "write_history"]

#: Columns every history row has (``train.loop.FitResult.history``), in file order.
HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def _atomic_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _columns(history: Sequence[Mapping[str, object]]) -> list[str]:
    if not history:
        raise ValueError("history is empty: nothing to plot")
    keys = list(history[0])
    missing = [f for f in HISTORY_FIELDS if f not in keys]
    if missing:
        raise ValueError(f"history rows lack {missing}")
    for i, row in enumerate(history):
        if list(row) != keys:
            raise ValueError(f"history row {i} has keys {sorted(row)}, row 0 has {sorted(keys)}")
    # the documented columns first, extra ones after in their own order
    return list(HISTORY_FIELDS) + [k for k in keys if k not in HISTORY_FIELDS]


def write_history(path: str | os.PathLike, history: Sequence[Mapping[str, object]]) -> Path:
    """Write per-epoch rows to ``path``: ``.csv`` (header + one line per epoch) or
    ``.json`` (list of objects).

    history : list of dicts with at least :data:`HISTORY_FIELDS` (numbers) and the same
        keys in every row, e.g. ``FitResult.history``.
    Raises ``ValueError`` for an empty history, differing rows, NaN/inf values or another
    suffix.  Returns the path.
    """
    path = Path(path)
    cols = _columns(history)
    rows = [to_jsonable({c: row[c] for c in cols}, f"history[{i}]") for i, row in enumerate(history)]
    if path.suffix == ".json":
        return write_json_atomic(path, rows)
    if path.suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: repr(v) if isinstance(v, float) else v for c, v in row.items()})
        return _atomic_text(path, buf.getvalue())
    raise ValueError(f"{path}: history files are .csv or .json")


def _names(class_names: Sequence[str], n: int | None = None) -> list[str]:
    names = [str(c) for c in class_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct and non-empty, got {names}")
    if n is not None and len(names) != n:
        raise ValueError(f"{len(names)} class names for {n} classes")
    return names


def confusion_rows(actual, predicted, class_names: Sequence[str]) -> list[dict[str, str]]:
    """One ``{"actual": name, "predicted": name}`` per sample, in sample order.

    actual, predicted : (N,) int class indices in ``[0, len(class_names))``.
    """
    names = _names(class_names)
    a = as_labels(actual, len(names), "actual")
    p = as_labels(predicted, len(names), "predicted")
    if a.shape != p.shape:
        raise ValueError(f"actual ({a.size}) and predicted ({p.size}) differ in length")
    return [{"actual": names[i], "predicted": names[j]} for i, j in zip(a.tolist(), p.tolist())]


def confusion_rows_from_matrix(confusion, class_names: Sequence[str]) -> list[dict[str, str]]:
    """Rows for a (n, n) int count matrix (rows actual): ``C[i, j]`` copies of
    ``{"actual": names[i], "predicted": names[j]}``, row-major order."""
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
        raise ValueError(f"confusion must be a square matrix of non-negative ints, got {c.dtype} {c.shape}")
    names = _names(class_names, c.shape[0])
    return [{"actual": names[i], "predicted": names[j]}
            for i in range(c.shape[0]) for j in range(c.shape[1]) for _ in range(int(c[i, j]))]


def write_confusion(path: str | os.PathLike, actual, predicted, class_names: Sequence[str]) -> Path:
    """Write :func:`confusion_rows` as a JSON list to ``path`` (for DVC's confusion
    template).  ``EvalResult.actual`` / ``.predicted`` are the inputs.  Returns the path."""
    rows = confusion_rows(actual, predicted, class_names)
    if not rows:
        raise ValueError("no sample: an empty confusion plot")
    return write_json_atomic(path, rows)


def dvc_plots_entries(history_path: str, confusion_path: str, prefix: str = "") -> list[dict]:
    """Top-level ``plots:`` entries of a ``dvc.yaml`` for the two files (paths relative to
    the ``dvc.yaml``): ``<prefix>accuracy`` and ``<prefix>loss`` curves over epochs (train
    and validation in one plot each) and the confusion matrix (rows actual)."""
    return [
        {f"{prefix}accuracy": {"x": "epoch", "y": {history_path: ["train_acc", "val_acc"]}}},
        {f"{prefix}loss": {"x": "epoch", "y": {history_path: ["train_loss", "val_loss"]}}},
        {confusion_path: {"template": "confusion", "x": "actual", "y": "predicted"}},
    ]
