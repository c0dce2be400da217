"""Classification metrics from predicted and true labels, and the metrics file DVC reads.

Pure numpy on integer label vectors; no torch here, so the metrics of a run can be
recomputed from saved predictions alone.

* :func:`confusion_matrix` ``(n, n) int64``: row = actual class, column = predicted class
  (the orientation of the confusion plots and of most FER papers' tables).
* :func:`accuracy`, :func:`per_class_recall` and :func:`mean_recall` (unweighted average
  recall, the usual figure on class-imbalanced sets such as CK+ or AFEW).
* :func:`write_metrics`: a flat-or-nested JSON object of numbers, the format that
  ``dvc metrics show`` / ``dvc metrics diff`` read; written atomically (temporary file +
  rename) so a crashed run never leaves half a file for DVC to cache.

Written by hand rather than with scikit-learn because the project does not depend on it
and each function is a line of numpy (``np.bincount`` on ``actual * n + predicted``).
A class with no true sample has no defined recall: it is reported as 0.0 together with
its support of 0 (scikit-learn's ``zero_division=0``), never NaN, so every metrics file
stays valid JSON.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from data_schema.store import atomic_write

__all__ = ["accuracy", "as_labels", "confusion_matrix", "mean_recall", "per_class_recall",
           "recall_by_name", "support", "to_jsonable", "write_json_atomic", "write_metrics"]


def as_labels(values, n_classes: int, name: str = "labels") -> np.ndarray:
    """Check and convert class indices: any 1-D integer array-like -> (N,) int64.

    Raises ``ValueError`` for a non-integer dtype, more than one dimension, or a label
    outside ``[0, n_classes)``.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        bad = arr[(arr < 0) | (arr >= n_classes)]
        raise ValueError(f"{name} outside [0, {n_classes}): {sorted(set(bad.tolist()))[:10]}")
    return arr


def confusion_matrix(actual, predicted, n_classes: int) -> np.ndarray:
    """Counts of (actual, predicted) pairs.

    actual, predicted : (N,) integer class indices in ``[0, n_classes)``.
    Returns (n_classes, n_classes) int64; ``C[i, j]`` = samples of class i predicted as j,
    so rows sum to each class's support and the trace counts the correct predictions.
    """
    a = as_labels(actual, n_classes, "actual")
    p = as_labels(predicted, n_classes, "predicted")
    if a.shape != p.shape:
        raise ValueError(f"actual ({a.size}) and predicted ({p.size}) differ in length")
    return np.bincount(a * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _check_confusion(confusion) -> np.ndarray:
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty square matrix, got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
        raise ValueError("confusion must hold non-negative integer counts")
    return c.astype(np.int64, copy=False)


def accuracy(confusion) -> float:
    """Fraction of correct predictions, ``trace / total`` in [0, 1].

    confusion : (n, n) int counts (:func:`confusion_matrix`).  Raises ``ValueError`` when
    it counts no sample (an accuracy of nothing is undefined, not 0).
    """
    c = _check_confusion(confusion)
    total = int(c.sum())
    if total == 0:
        raise ValueError("accuracy of an empty confusion matrix (no samples) is undefined")
    return float(np.trace(c)) / total


def support(confusion) -> np.ndarray:
    """(n,) int64: true samples per class (row sums)."""
    return _check_confusion(confusion).sum(axis=1)


def per_class_recall(confusion) -> np.ndarray:
    """(n,) float64 in [0, 1]: ``C[i, i] / sum_j C[i, j]``; 0.0 for a class with no sample."""
    c = _check_confusion(confusion)
    rows = c.sum(axis=1)
    return np.divide(np.diag(c).astype(np.float64), rows, out=np.zeros(len(rows)), where=rows > 0)


def mean_recall(confusion) -> float:
    """Unweighted mean of the recalls of the classes that have samples (UAR), in [0, 1].

    Classes absent from the evaluated set are left out of the mean (they have no recall).
    Raises ``ValueError`` for an empty matrix.
    """
    c = _check_confusion(confusion)
    present = c.sum(axis=1) > 0
    if not present.any():
        raise ValueError("mean recall of an empty confusion matrix (no samples) is undefined")
    return float(per_class_recall(c)[present].mean())


def to_jsonable(value, where: str = "metrics"):
    """numpy scalars/arrays, tuples and nested mappings -> plain JSON types.

    Raises ``ValueError`` naming the key for NaN/inf (not valid JSON, and a metric that
    is NaN is a bug to surface, not to store) and ``TypeError`` for other objects.
    """
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = to_jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, np.ndarray):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value.tolist())]
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{where} is {f}, which JSON (and dvc metrics) cannot hold")
        return f
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{where}: cannot write {type(value).__name__} as JSON")


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` (JSON types) to ``path`` via a temporary file + fsync + rename.

    Keys keep their insertion order; two-space indent and a final newline keep diffs
    readable in git.  Returns the path.
    """
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_metrics(path: str | os.PathLike, metrics: Mapping[str, object]) -> Path:
    """Write a metrics file for ``dvc metrics show`` (JSON object, nested allowed).

    metrics : mapping of str to numbers, strings, bools, lists or nested mappings; numpy
        values are converted.  Example: ``{"test": {"accuracy": 0.83, "loss": 0.51},
        "per_class_recall": [0.9, 0.7]}``; DVC shows numeric leaves as ``test.accuracy``.
    Raises ``ValueError`` for NaN/inf anywhere (naming the key).  Returns the path.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, got {type(metrics).__name__}")
    return write_json_atomic(path, to_jsonable(metrics))


def recall_by_name(recall: Sequence[float], class_names: Sequence[str]) -> dict[str, float]:
    """``{class name: recall}`` for a metrics file (names from ``data_schema.labels``)."""
    if len(recall) != len(class_names):
        raise ValueError(f"{len(recall)} recalls for {len(class_names)} class names")
    return {str(n): float(r) for n, r in zip(class_names, recall)}
