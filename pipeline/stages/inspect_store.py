"""``fermaps inspect STORE``: counts, schema, parameters and failures of a store."""
from __future__ import annotations

import json
from collections import Counter

from data_schema.labels import label_map
from data_schema.store import Store, read_failures


def describe(root: str) -> dict:
    """A JSON-able description of a store (validates it on the way)."""
    store = Store(root)
    by_dataset: Counter = Counter()
    by_label: Counter = Counter()
    for meta in store.metas():
        by_dataset[meta.dataset] += 1
        by_label[f"{meta.dataset}:{label_map(meta.dataset).class_name(meta.label)}"] += 1
    failures = read_failures(root)
    return {
        "store": str(root),
        "schema": store.schema.name,
        "schema_version": store.schema.version,
        "stage": store.index.get("stage"),
        "params": store.params,
        "n_items": len(store),
        "n_shards": len(store.index["shards"]),
        "items_by_dataset": dict(sorted(by_dataset.items())),
        "items_by_label": dict(sorted(by_label.items())),
        "n_failures": len(failures),
        "failures": failures,
    }


def format_text(d: dict) -> str:
    lines = [f"store      {d['store']}",
             f"schema     {d['schema']} v{d['schema_version']} (stage {d['stage']})",
             f"items      {d['n_items']} in {d['n_shards']} shards",
             f"params     {json.dumps(d['params'], sort_keys=True)}"]
    for k, v in d["items_by_dataset"].items():
        lines.append(f"  {k:<12} {v}")
    lines.append("labels")
    for k, v in d["items_by_label"].items():
        lines.append(f"  {k:<28} {v}")
    lines.append(f"failures   {d['n_failures']}")
    for f in d["failures"]:
        lines.append(f"  {f['item']}: {f['error']}: {f['message']}")
    return "\n".join(lines)
