"""A store being written by a stage: shards as they complete, then index + failures."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from data_schema.schemas import StoreSchema
from data_schema.store import ItemRecord, ShardEntry, shard_file_name, write_failures, write_index, write_shard


class StoreOutput:
    """Collects shards of one store; ``close`` writes the index (removing shards of a
    previous run that are no longer produced) and ``failures.jsonl``."""

    def __init__(self, root: str | os.PathLike, schema: StoreSchema, params: Mapping, stage: str):
        self.root = Path(root)
        self.schema, self.params, self.stage = schema, dict(params), stage
        self.root.mkdir(parents=True, exist_ok=True)
        self.entries: list[ShardEntry] = []

    def write(self, shard_key: str, records: Sequence[ItemRecord],
              cache: Mapping[str, tuple[str, str]] | None = None) -> None:
        """Write one shard (items sorted by key); an empty shard is skipped.
        ``cache`` maps item key -> (cache id, cache key) for the index."""
        if not records:
            return
        records = sorted(records, key=lambda r: r.meta.key)
        name = shard_file_name(shard_key)
        digest = write_shard(self.root / name, self.schema, records, self.params, self.stage)
        keys = tuple(r.meta.key for r in records)
        ids = tuple(cache[k][0] for k in keys) if cache else ()
        cks = tuple(cache[k][1] for k in keys) if cache else ()
        self.entries.append(ShardEntry(name, digest, keys, ids, cks))

    def keep(self, entry: ShardEntry) -> None:
        """List an unchanged shard of the previous run without touching its file."""
        self.entries.append(entry)

    def close(self, failures: Sequence[Mapping]) -> None:
        write_index(self.root, self.schema, self.params, self.stage, self.entries)
        write_failures(self.root, failures)

    @property
    def n_items(self) -> int:
        return sum(len(e.items) for e in self.entries)
