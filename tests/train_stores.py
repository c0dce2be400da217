"""Small training stores for the robustness tests, written with the project's own writer.

The items are real ones (chain output of the embedded sample) copied under new subjects
and labels, so that a split protocol has enough subjects while the stores stay a few
megabytes; the arrays are never altered here (the tests damage them afterwards).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from data_schema.schemas import get_schema
from data_schema.store import ItemMeta, ItemRecord
from pipeline.output import StoreOutput


def write_store(root: str | Path, schema: str, records: Iterable[ItemRecord],
                per_shard: int = 4) -> Path:
    """A complete store (index, shards of ``per_shard`` items in key order, no
    failures) of ``records`` at ``root``.  Returns ``root``."""
    out = StoreOutput(root, get_schema(schema), {}, "test")
    records = sorted(records, key=lambda r: r.meta.key)
    for i in range(0, len(records), per_shard):
        out.write(f"shard{i // per_shard:03d}", records[i:i + per_shard])
    out.close([])
    return Path(root)


def copies(meta: ItemMeta, arrays: Mapping[str, np.ndarray], labels: Mapping[str, Iterable[int]],
           dataset: str) -> list[ItemRecord]:
    """One copy of the item per (subject, label) of ``labels`` (subject -> store labels),
    keyed ``<dataset>/<subject>/<label>`` with ``dataset`` as its dataset."""
    return [ItemRecord(dataclasses.replace(meta, key=f"{dataset}/{s}/{lab}", dataset=dataset, subject=s,
                                           session="0", label=int(lab)), dict(arrays))
            for s, labs in labels.items() for lab in labs]
