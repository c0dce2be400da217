"""Stage ``ingest``: every raw scan into the ``raw_mesh`` store, every sequence into the
``raw_frames`` store.

Shards: scans are grouped by their folder (a subject folder in every supported layout),
sequences get one shard each (frames share a size only within a sequence, and one
sequence is already megabytes).  Incremental: an item is recomputed only when its
source bytes (with companions), the params or the reader code changed (pipeline.cache).
Reader warnings (``scan.extra["warnings"]``: generic ids for a name outside its
dataset's pattern, a missing texture...) are kept per item in the raw_mesh
``warnings`` dataset and printed for the shards written in this run.
"""
from __future__ import annotations

import os
import sys
from collections import OrderedDict
from functools import partial
from pathlib import Path

from data_schema.params import IngestParams, as_dict
from data_schema.schemas import RAW_FRAMES, RAW_MESH
from pipeline.cache import Plan, Planned, cache_key, code_version, make_plan, previous_entries
from pipeline.incremental import run_plan
from pipeline.output import StoreOutput
from pipeline.records import item_meta, scan_record, sequence_record, source_digest
from pipeline.summary import StageResult, finish_stage
from preprocess.io import RawItem, list_items, read_item

STAGE = "ingest"
MAX_WARNINGS_SHOWN = 10
CODE = ("preprocess/io", "preprocess/scan.py", "preprocess/sequence.py", "pipeline/records.py",
        "data_schema/schemas.py", "data_schema/labels.py")


def ingest_one(raw_root: str, item: RawItem):
    """Read one raw item and return its store record (runs on a dask worker)."""
    obj = read_item(item.path, item.format)
    meta = item_meta(obj.ids, Path(item.path), Path(raw_root), item.format)
    return scan_record(obj, meta) if item.kind == "scan" else sequence_record(obj, meta)


class _MeshOutput(StoreOutput):
    """The raw_mesh store, also collecting the reader warnings of the records it
    writes (the ``warnings`` dataset) so that the stage can print them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.warnings: list[tuple[str, str]] = []  # (source, warning)

    def write(self, shard_key, records, cache=None) -> None:
        for r in records:
            self.warnings += [(r.meta.source, str(w)) for w in r.arrays["warnings"]]
        super().write(shard_key, records, cache)


def print_warnings(warnings: list[tuple[str, str]]) -> None:
    """Reader warnings (source, text) to stderr, the first ``MAX_WARNINGS_SHOWN``."""
    if not warnings:
        return
    n_items = len({src for src, _ in warnings})
    print(f"[{STAGE}] {n_items} scans read with warnings (kept per item in the raw_mesh "
          f"'warnings' dataset):", file=sys.stderr)
    for src, w in sorted(warnings)[:MAX_WARNINGS_SHOWN]:
        print(f"[{STAGE}]   WARNING {src}: {w}", file=sys.stderr)
    if len(warnings) > MAX_WARNINGS_SHOWN:
        print(f"[{STAGE}]   ... {len(warnings) - MAX_WARNINGS_SHOWN} more", file=sys.stderr)


def shard_key(raw_root: str, item: RawItem) -> tuple[str, str]:
    """(store, shard name): scans by folder, sequences one per shard."""
    rel = os.path.relpath(item.path, raw_root)
    if item.kind == "scan":
        return ("mesh", os.path.dirname(rel) or "root")
    return ("frames", rel)


def run_ingest(raw_root: str | os.PathLike, mesh_out: str | os.PathLike, frames_out: str | os.PathLike,
               params: IngestParams) -> StageResult:
    raw_root = str(raw_root)
    items = list_items(raw_root)
    p = as_dict(params)
    code = code_version(CODE)
    shards: dict[str, OrderedDict] = {"mesh": OrderedDict(), "frames": OrderedDict()}
    for it in items:
        store, name = shard_key(raw_root, it)
        try:
            upstream = source_digest(it.path)
        except OSError:  # unreadable: let the worker report it
            upstream = ""
        shards[store].setdefault((store, name), []).append(
            Planned(it, os.path.relpath(it.path, raw_root), cache_key(upstream, p, code)))
    outs = {"mesh": _MeshOutput(mesh_out, RAW_MESH, p, STAGE), "frames": StoreOutput(frames_out, RAW_FRAMES, p, STAGE)}
    plan = Plan()
    for store, schema, root in (("mesh", "raw_mesh", mesh_out), ("frames", "raw_frames", frames_out)):
        sub = make_plan(shards[store], lambda k: k[1], previous_entries(root, schema), root)
        plan.compute.update(sub.compute), plan.reuse.update(sub.reuse)
        plan.keep.update(sub.keep), plan.planned.update(sub.planned)
    failures = run_plan(partial(ingest_one, raw_root), plan, lambda k: outs[k[0]], lambda k: k[1],
                        stage=STAGE, item_name=lambda it: os.path.relpath(it.path, raw_root),
                        execution=params)
    kind_of = {os.path.relpath(it.path, raw_root): it.kind for it in items}
    for store, kind in (("mesh", "scan"), ("frames", "sequence")):
        outs[store].close([f.as_dict() for f in failures if kind_of[f.item] == kind])
    print_warnings(outs["mesh"].warnings)
    return finish_stage(STAGE, len(items), failures, params.max_failed_fraction,
                        {"raw_mesh": outs["mesh"].n_items, "raw_frames": outs["frames"].n_items},
                        computed=plan.n_compute)
