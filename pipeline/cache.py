"""Incremental regeneration: reuse the items of the previous run of a stage.

Each item has a *cache id* (ingest: its source path relative to the raw root; later
stages: its item key) and a *cache key* = sha256 of (the upstream key: the source
bytes for ingest, the input item's cache key otherwise; the stage's content params;
the stage's code version = sha256 of its source files).  The index of every store
records both per item.  On a rerun:

* a shard whose items and keys are all unchanged is kept as it is (not even rewritten);
* in a changed shard, unchanged items are read back from the old shard and only the
  new or changed items are computed;
* shards no longer produced are removed by the new index.

The previous store is the cache, so DVC must not delete it before the stage runs: the
outputs are declared ``persist: true`` in dvc.yaml.  A store that fails validation is
not reused (everything is recomputed).
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Mapping, Sequence

from data_schema.errors import SchemaError
from data_schema.store import ShardEntry, Store, shard_file_name

ROOT = Path(__file__).resolve().parents[1]


def code_version(paths: Sequence[str]) -> str:
    """sha256 over the bytes of the given project files and folders (``*.py`` and
    package data, sorted), relative to the repository root."""
    h = hashlib.sha256()
    for rel in sorted(paths):
        p = ROOT / rel
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".py", ".json", ".txt")
                       and "__pycache__" not in f.parts) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cache_key(upstream: str, params: Mapping, code: str) -> str:
    return hashlib.sha256(json.dumps([upstream, dict(params), code], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Planned:
    """One input item: what to compute (``item``), its cache id and key."""

    item: object
    cache_id: str
    cache_key: str


@dataclass
class Plan:
    """What a run computes and what it reuses.

    compute : shard key -> Planned items to compute (shards with nothing to compute but
        a changed composition are listed with no items).
    reuse : shard key -> (old shard path, [(row, cache_id, cache_key), ...]) to read back.
    keep : shard key -> the previous ShardEntry, kept untouched.
    planned : shard key -> every Planned item of the shard (for the new index).
    """

    compute: "OrderedDict[Hashable, list]" = field(default_factory=OrderedDict)
    reuse: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)
    planned: dict = field(default_factory=dict)

    @property
    def n_compute(self) -> int:
        return sum(len(v) for v in self.compute.values())

    @property
    def n_reused(self) -> int:
        return sum(len(e.items) for e in self.keep.values()) + sum(len(r) for _, r in self.reuse.values())


def previous_entries(root, schema: str) -> dict[str, ShardEntry]:
    """The shards of the previous run with their cache keys, or {} when there is no
    valid previous store."""
    try:
        store = Store(root, schema)
    except SchemaError:
        return {}
    out = {}
    for sh in store.index["shards"]:
        if "cache_keys" in sh:
            out[sh["file"]] = ShardEntry(sh["file"], sh["sha256"], tuple(sh["items"]),
                                         tuple(sh["cache_ids"]), tuple(sh["cache_keys"]))
    return out


def make_plan(shards: "OrderedDict[Hashable, list[Planned]]", shard_name, previous: dict[str, ShardEntry],
              root) -> Plan:
    """Split the work of a run into computed, reused and kept (module docstring).
    ``shard_name(key)`` gives the shard's name (its file is ``shard_file_name(name)``)."""
    plan = Plan()
    for key, planned in shards.items():
        plan.planned[key] = planned
        old = previous.get(shard_file_name(shard_name(key)))
        if old is None:
            plan.compute[key] = list(planned)
            continue
        old_rows = {(cid, ck): row for row, (cid, ck) in enumerate(zip(old.cache_ids, old.cache_keys))}
        wanted = [(p.cache_id, p.cache_key) for p in planned]
        if sorted(wanted) == sorted(old_rows):
            plan.keep[key] = old
            continue
        plan.reuse[key] = (Path(root) / old.file, [(old_rows[w], *w) for w in wanted if w in old_rows])
        plan.compute[key] = [p for p, w in zip(planned, wanted) if w not in old_rows]
    return plan
