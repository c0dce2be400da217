"""A per-item stage from one store to the next (register, crop, render, clean).

The main process validates the input store once and hands each worker a (shard, row)
address; the worker reads that one item, applies the step, and returns the output
record with the same identity.  Output shards mirror the input shards.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from data_schema.params import ChainParams, as_dict
from data_schema.schemas import StoreSchema, get_schema
from data_schema.store import ItemRecord, Store, read_shard_item
from pipeline.output import StoreOutput
from pipeline.runner import dask_client, run_sharded
from pipeline.summary import StageResult, finish_stage


@dataclass(frozen=True)
class ItemAddress:
    """Where one input item lives: shard file, row, and its key (for messages)."""

    shard: str
    row: int
    key: str


def _apply(step: Callable, step_params, in_schema: str, addr: ItemAddress) -> ItemRecord:
    meta, arrays = read_shard_item(addr.shard, get_schema(in_schema), addr.row)
    return ItemRecord(meta, step(arrays, step_params, meta.key))


def run_store_stage(stage: str, step: Callable, step_params, in_root: str | os.PathLike,
                    in_schema: str, out_root: str | os.PathLike, out_schema: StoreSchema,
                    run: ChainParams) -> StageResult:
    """Apply ``step(record, step_params, item_key) -> record`` to every item of the
    input store on dask and write the output store (+ failures.jsonl)."""
    store = Store(in_root, in_schema)
    shards: OrderedDict = OrderedDict()
    for sh in store.index["shards"]:
        path = str(Path(in_root) / sh["file"])
        shards[sh["file"]] = [ItemAddress(path, i, key) for i, key in enumerate(sh["items"])]
    out = StoreOutput(out_root, out_schema, as_dict(step_params), stage)
    with dask_client(run.workers, run.scheduler) as client:
        failures = run_sharded(client, partial(_apply, step, step_params, in_schema), shards,
                               lambda key, recs: out.write(Path(key).stem, recs),
                               stage=stage, item_name=lambda a: a.key, desc=stage)
    out.close([f.as_dict() for f in failures])
    return finish_stage(stage, len(store), failures, run.max_failed_fraction, {out_schema.name: out.n_items})
