"""Run a per-item function over many items on dask and stream the results to shards.

Items are grouped into shards up front (the shard key is known from the raw path).
Shards are submitted in order with a bounded number of items in flight, so memory holds
at most the window plus the shards still being completed; as soon as a shard's items
are all back, ``on_shard`` writes it and its results are dropped.  Errors never stop the
run: the worker turns any exception into a :class:`Failure` (error class + message),
recorded per item.

Scheduler: a ``dask.distributed.LocalCluster`` of worker processes (one thread each)
by default, or an existing cluster when ``scheduler`` is an address
(``tcp://host:8786``).  ``run_inline`` keeps the same contract in this process, for
reruns with a handful of items where starting workers would cost more than the work.
dask and tqdm are imported only where a cluster is used: a rerun that computes nothing
or a few items does not pay for them.
"""
from __future__ import annotations

import sys
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

# The thread settings dask's nanny gives every worker process (its
# distributed.nanny.pre-spawn-environ): one BLAS/OpenMP thread per process.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Failure:
    """A per-item error: which item, which stage, the error class and its message."""

    item: str
    stage: str
    error: str
    message: str

    def as_dict(self) -> dict:
        return {"item": self.item, "stage": self.stage, "error": self.error, "message": self.message}


def guarded(func: Callable, stage: str, item_name: Callable) -> Callable:
    """Wrap ``func(item)`` so that it returns a Failure instead of raising."""
    def call(item):
        try:
            return func(item)
        except Exception as exc:  # noqa: BLE001 - every item error is recorded, the run goes on
            msg = str(exc) or repr(exc)
            if not hasattr(exc, "path"):  # unexpected: keep where it happened
                tb = traceback.extract_tb(exc.__traceback__)
                if tb:
                    msg += f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})"
            return Failure(item_name(item), stage, type(exc).__name__, msg)
    return call


@contextmanager
def dask_client(workers: int = 0, scheduler: str = ""):
    """A dask.distributed Client: joins ``scheduler`` if given, else starts a
    LocalCluster of ``workers`` processes (0 = one per core) with one thread each."""
    import os

    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def run_sharded(client, func: Callable, shards: "OrderedDict[Hashable, Sequence]",
                on_shard: Callable[[Hashable, list], None], *, stage: str,
                item_name: Callable, window: int = 0, desc: str = "") -> list[Failure]:
    """Compute ``func(item)`` for every item of every shard on ``client``.

    shards : shard key -> items, in the order shards should complete.
    on_shard(key, results) : called once per shard with its results in item order
        (a Failure where an item failed), as soon as the shard is complete.
    Returns every Failure, in item order.
    """
    from dask.distributed import as_completed
    from tqdm import tqdm

    call = guarded(func, stage, item_name)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
    window = window or 2 * n_workers
    todo = [(key, i, item) for key, items in shards.items() for i, item in enumerate(items)]
    pending = {key: [None] * len(items) for key, items in shards.items()}
    remaining = {key: len(items) for key, items in shards.items()}
    failures: list[Failure] = []
    for key in [k for k, n in remaining.items() if n == 0]:
        on_shard(key, [])
        del pending[key], remaining[key]

    bar = tqdm(total=len(todo), desc=desc or stage, unit="item", file=sys.stderr,
               disable=None, dynamic_ncols=True)
    it = iter(todo)
    ac = as_completed()
    meta: dict = {}

    def submit_next() -> bool:
        nxt = next(it, None)
        if nxt is None:
            return False
        key, i, item = nxt
        fut = client.submit(call, item, pure=False, retries=1)
        meta[fut.key] = (key, i)
        ac.add(fut)
        return True

    for _ in range(window):
        if not submit_next():
            break
    for fut in ac:
        key, i = meta.pop(fut.key)
        try:
            result = fut.result()
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after dask's retries
            result = Failure(item_name(shards[key][i]), stage, type(exc).__name__,
                             f"worker lost while computing this item: {exc}")
        fut.release()
        if isinstance(result, Failure):
            failures.append(result)
        pending[key][i] = result
        remaining[key] -= 1
        bar.update(1)
        if remaining[key] == 0:
            on_shard(key, pending.pop(key))
            del remaining[key]
        submit_next()
    bar.close()
    return sorted(failures, key=lambda f: f.item)


def run_inline(func: Callable, shards: "OrderedDict[Hashable, Sequence]",
               on_shard: Callable[[Hashable, list], None], *, stage: str, item_name: Callable) -> list[Failure]:
    """The contract of run_sharded, computed in this process in item order (no dask):
    for reruns with a handful of items, where starting worker processes would cost
    more than the work.  The results are the same objects a worker would return."""
    call = guarded(func, stage, item_name)
    failures: list[Failure] = []
    for key, items in shards.items():
        results = [call(it) for it in items]
        failures += [r for r in results if isinstance(r, Failure)]
        on_shard(key, results)
    return sorted(failures, key=lambda f: f.item)


def single_thread_env() -> None:
    """Give this process the thread settings of a dask worker (SINGLE_THREAD_ENV), so
    that items computed inline use the same single-threaded numerical libraries as on
    a worker.  Effective only before numpy / OpenMP libraries are first imported."""
    import os

    os.environ.update(SINGLE_THREAD_ENV)
