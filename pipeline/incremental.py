"""Run a per-item stage incrementally: plan (pipeline.cache), compute what changed on
dask, write shards that mix computed and reused items, keep unchanged shards."""
from __future__ import annotations

from typing import Callable, Hashable

from data_schema.store import ItemRecord, read_shard_item
from pipeline.cache import Plan
from pipeline.output import StoreOutput
from pipeline.runner import Failure, dask_client, run_inline, run_sharded


def run_plan(func: Callable, plan: Plan, out: Callable[[Hashable], StoreOutput],
             shard_name: Callable[[Hashable], str], *, stage: str, item_name: Callable,
             execution) -> list[Failure]:
    """Compute ``plan.compute`` with ``func(item)`` and write every shard of ``plan`` into
    ``out(shard key)``; returns the failures.  ``execution``: the stage's execution
    params (``workers``, ``scheduler``, ``inline_items``): with no scheduler and at most
    ``inline_items`` items to compute, they are computed in this process."""
    for key, entry in plan.keep.items():
        out(key).keep(entry)

    def on_shard(key, results):
        rows = []
        for p, r in zip(plan.compute.get(key, []), results):
            if not isinstance(r, Failure):
                rows.append((r, p.cache_id, p.cache_key))
        if key in plan.reuse:
            path, reused = plan.reuse[key]
            for row, cid, ck in reused:
                meta, arrays = read_shard_item(path, out(key).schema, row)
                rows.append((ItemRecord(meta, arrays), cid, ck))
        out(key).write(shard_name(key), [r for r, _, _ in rows],
                       cache={r.meta.key: (cid, ck) for r, cid, ck in rows})

    work = {k: [p.item for p in v] for k, v in plan.compute.items()}
    work = type(plan.compute)(work)
    n = plan.n_compute
    if n == 0 or (n <= execution.inline_items and not execution.scheduler):
        return run_inline(func, work, on_shard, stage=stage, item_name=item_name)
    with dask_client(execution.workers, execution.scheduler) as client:
        return run_sharded(client, func, work, on_shard, stage=stage, item_name=item_name, desc=stage)
