"""A per-item stage from one store to the next (register, crop, render, clean, masks,
align_video, sample_frames).

The main process validates the input store once and hands each worker a (shard, row)
address; the worker reads that one item, applies the step, and returns the output
record with the same identity.  Output shards mirror the input shards.  Incremental: an
item is recomputed only when its input item, the stage params or the stage code
changed (pipeline.cache).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from data_schema.params import ChainParams, as_dict
from data_schema.schemas import StoreSchema, get_schema
from data_schema.store import ItemRecord, Store, read_shard_item
from pipeline.cache import Planned, cache_key, code_version, make_plan, previous_entries
from pipeline.incremental import run_plan
from pipeline.output import StoreOutput
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
                    run: ChainParams, code: Sequence[str] = (), data_version: str = "") -> StageResult:
    """Apply ``step(record, step_params, item_key) -> record`` to every item of the
    input store on dask and write the output store (+ failures.jsonl).  ``code``: the
    project files whose content versions the stage (for the item cache); ``data_version``:
    a digest of data files the step reads besides its input (the register template)."""
    store = Store(in_root, in_schema)
    params = as_dict(step_params)
    version = code_version(code) + data_version
    shards: OrderedDict = OrderedDict()
    for sh in store.index["shards"]:
        path = str(Path(in_root) / sh["file"])
        upstream = sh.get("cache_keys") or [f"{sh['sha256']}:{k}" for k in sh["items"]]
        shards[sh["file"]] = [Planned(ItemAddress(path, i, key), key, cache_key(up, params, version))
                              for i, (key, up) in enumerate(zip(sh["items"], upstream))]
    name = lambda key: Path(key).stem  # noqa: E731 - output shards mirror the input shards
    out = StoreOutput(out_root, out_schema, params, stage)
    plan = make_plan(shards, name, previous_entries(out_root, out_schema.name), out_root)
    failures = run_plan(partial(_apply, step, step_params, in_schema), plan, lambda k: out, name,
                        stage=stage, item_name=lambda a: a.key, execution=run)
    out.close([f.as_dict() for f in failures])
    return finish_stage(stage, len(store), failures, run.max_failed_fraction, {out_schema.name: out.n_items},
                        computed=plan.n_compute)
