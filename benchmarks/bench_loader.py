"""Training-data throughput: samples/s of ``MapsDataset`` read from the ``maps_clean``
store through the DataLoader vs the same samples held in RAM (``InMemoryDataset``)
through the same DataLoader.

Goal (issue "training data"): store / RAM >= 0.9 with 2 workers.  Both sides use
``train.data.make_loader`` (batch 20 = AMDFN's, shuffled, persistent workers): the store
side as training reads it, a batch at a time (``MapsDataset.read_batch``: rows straight
from the file into the shared-memory batch), the RAM side through the default collate
(indexing + one copy into the shared batch).  An epoch is ``--epoch`` samples (the
store's labelled items repeated, so every sample is a fresh read), best of ``--repeat``
epochs after one warm-up epoch (worker start-up excluded), the sides' epochs interleaved
round by round.  Besides the wall-time ratio the detail gives the CPU time per sample of
this process and its workers on each side (steadier than wall time while other jobs
share the machine), and per-sample costs measured in this process without a loader.
Diagnostic lines: the row reader against h5py indexing, on the store as written and on
an all-gzip copy; one maps row copied from the shard's memory map against ``pread``
(and a first pass through a fresh map, page faults included); and the loader on an
uncompressed copy of the shards.
``--workers 2 4 8`` sweeps worker counts (the RAM side always uses the same count).
The process keeps freed memory for reuse (``pipeline.allocator``) before any worker
starts, as ``fermaps train`` does.

The store: ``--store DIR``, else the embedded sample is generated and run through
ingest -> register -> crop -> render -> clean in a temporary directory (a few minutes).

Run: ``PYTHONPATH=. python benchmarks/bench_loader.py [--workers 2] [--epoch 2000]``
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import best_of, report  # noqa: E402



def build_store(tmp: Path) -> Path:
    """The embedded sample's maps_clean store, made by the pipeline stages."""
    from data_schema.params import ChainParams, IngestParams, Params, SynthParams
    from pipeline.stages.ingest import run_ingest
    from pipeline.stages.scan_chain import run_chain_stage
    from preprocess.synthetic.sample import write_sample

    write_sample(tmp / "raw", SynthParams())
    params = dataclasses.replace(Params(), run=ChainParams(workers=max(1, (os.cpu_count() or 1))))
    res = run_ingest(tmp / "raw", tmp / "raw_mesh", tmp / "raw_frames", IngestParams(workers=1))
    if res.exit_code:
        raise RuntimeError("ingest failed")
    for stage, src, dst in (("register", "raw_mesh", "registered_mesh"), ("crop", "registered_mesh", "face_mesh"),
                            ("render", "face_mesh", "maps"), ("clean", "maps", "maps_clean")):
        if run_chain_stage(stage, params, tmp / src, tmp / dst).exit_code:
            raise RuntimeError(f"stage {stage} failed")
    return tmp / "maps_clean"


def recompressed_copy(root: Path, out: Path, compression: str | None) -> Path:
    """The same shards rewritten with every dataset compressed as ``compression`` (None or
    "gzip"; a diagnostic only, the schemas fix each dataset's compression), to show what
    the reader costs with and without the inflate.
    """
    from data_schema.store import ItemRecord, ShardEntry, Store, write_index, write_shard

    src = Store(root)
    plain = dataclasses.replace(src.schema, datasets=tuple(dataclasses.replace(d, compression=compression)
                                                             for d in src.schema.datasets))
    out.mkdir(parents=True)
    entries = []
    for sh in src.index["shards"]:
        recs = [ItemRecord(*src.read(k)) for k in sh["items"]]
        digest = write_shard(out / sh["file"], plain, recs, src.params, "bench_loader")
        entries.append(ShardEntry(sh["file"], digest, tuple(sh["items"])))
    write_index(out, plain, src.params, "bench_loader", entries)
    return out


def _row_reader_times(ds, repeat: int) -> tuple[float, float]:
    """Seconds per sample of ``ds`` read through ``_Shard.read_into`` (raw chunks at their
    file offsets) and through plain h5py indexing into the same destination (the reader's
    baseline), best of ``repeat`` interleaved rounds."""
    from train import data as train_data

    raw_read = train_data._Shard.read_into

    def indexed_read(shard, name, i, dest, start=0, key=None):
        ds = shard[name]
        dest[...] = ds[i] if start == 0 and dest.shape == shard.row_shape(name) else ds[i, start:start + len(dest)]
        return dest if key is None else train_data._finite(dest, shard.path, key, name)

    def epoch():
        return [ds[i] for i in range(len(ds))]

    best = [float("inf"), float("inf")]
    epoch()  # open the shards
    try:
        for _ in range(repeat):
            for k, read in enumerate((raw_read, indexed_read)):
                train_data._Shard.read_into = read
                best[k] = min(best[k], best_of(epoch, 1))
    finally:
        train_data._Shard.read_into = raw_read
    return best[0] / len(ds), best[1] / len(ds)


def _row_copy_times(ds, repeat: int) -> dict[str, float]:
    """Seconds per maps row of ``ds``'s samples copied three ways, best of ``repeat``
    interleaved rounds, every round over all rows in the dataset's order: ``pread`` of the
    chunk's bytes; a copy out of a memory map made afresh for the round (every page
    faulted in: a process's first pass); a copy out of a map that already went over them
    (``train.data._Shard``'s case from its second pass on)."""
    import mmap

    import numpy as np

    rows = []
    for file, row in ds._rows:
        shard = ds._handles.get(file, ds._maps)
        shard["maps"]  # looks the dataset up and plans its rows
        plan = shard._whole_row_chunks["maps"]
        if plan is None:  # compressed maps: no raw rows
            return {}
        rows.append((file, int(plan.offsets[row]), math.prod(plan.shape) * plan.dtype.itemsize))
    files = sorted({f for f, _, _ in rows})
    out = np.empty(max(n for _, _, n in rows), np.uint8)
    fds = {f: os.open(f, os.O_RDONLY) for f in files}

    def maps():
        return {f: np.frombuffer(mmap.mmap(fds[f], 0, access=mmap.ACCESS_READ), np.uint8) for f in files}

    warm = maps()

    def by_pread():
        for f, off, n in rows:
            os.preadv(fds[f], [out[:n]], off)

    def copy_from(views):
        for f, off, n in rows:
            out[:n] = views[f][off:off + n]

    best = {"pread": float("inf"), "first_pass": float("inf"), "mapped": float("inf")}
    copy_from(warm)
    try:
        for _ in range(repeat):
            for name, fn in (("pread", by_pread), ("first_pass", lambda: copy_from(maps())),
                             ("mapped", lambda: copy_from(warm))):
                best[name] = min(best[name], best_of(fn, 1) / len(rows))
    finally:
        for fd in fds.values():
            os.close(fd)
    return best


def _epoch(loader) -> int:
    n = 0
    for batch in loader:
        n += len(batch["label"])
    return n


def _cpu_s() -> float:
    """CPU seconds (user + system) so far of this process and its live children (the
    loaders' persistent workers)."""
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _timed_epoch(loader) -> tuple[float, float]:
    """(wall s, CPU s of this process and all live workers) of one epoch.  On a machine
    shared with other jobs the wall time varies with their load; the CPU time spent on
    the epoch much less (workers of the idle loaders sleep)."""
    import time

    t0, c0 = time.perf_counter(), _cpu_s()
    _epoch(loader)
    return time.perf_counter() - t0, _cpu_s() - c0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None, help="a maps_clean store (default: build one from the embedded sample)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--epoch", type=int, default=2000, help="samples per epoch")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # as the train stage's CLI does, before the workers fork
    import h5py
    import torch
    from torch.utils.data import ConcatDataset

    from data_schema.store import Store
    from train.data import InMemoryDataset, MapsDataset, make_loader

    with tempfile.TemporaryDirectory() as d:
        root = Path(args.store) if args.store else build_store(Path(d))
        keys = [m.key for m in Store(root).metas() if m.label >= 0]
        ds = MapsDataset(root, keys)
        plain_ds = MapsDataset(recompressed_copy(root, Path(d) / "plain", None), keys)
        gzip_ds = MapsDataset(recompressed_copy(root, Path(d) / "gzip", "gzip"), keys)
        reps = max(1, -(-args.epoch // len(keys)))
        mem = InMemoryDataset(ds)
        # the store sides list every key ``reps`` times (so make_loader reads them in
        # batches, as training does); the RAM side repeats its samples the plain way
        sources = {"store": MapsDataset(root, keys * reps),
                   "uncompressed": MapsDataset(plain_ds._maps.root, keys * reps),
                   "ram": ConcatDataset([mem] * reps)}
        n_epoch = len(sources["ram"])

        # per-sample costs in this process, to explain the ratio
        t_read = best_of(lambda: [ds[i] for i in range(len(ds))], args.repeat) / len(ds)
        t_plain = best_of(lambda: [plain_ds[i] for i in range(len(ds))], args.repeat) / len(ds)
        t_ram = best_of(lambda: [mem[i] for i in range(len(mem))], args.repeat) / len(mem)
        for name, dset in (("store as written", ds), ("every dataset gzip", gzip_ds)):
            raw, indexed = _row_reader_times(dset, args.repeat)
            report(f"sample read, h5py indexing / raw chunks ({name})", indexed / raw,
                   f"raw chunks {raw * 1e3:.3f} ms, h5py indexing {indexed * 1e3:.3f} ms a sample "
                   f"(train.data._Shard.read_into; rounds interleaved)")
        copies = _row_copy_times(ds, max(args.repeat, 5))
        if copies:
            report("maps row: pread / copy from the shard's memory map", copies["pread"] / copies["mapped"],
                   f"pread {copies['pread'] * 1e6:.0f} us, mapped copy {copies['mapped'] * 1e6:.0f} us a row; "
                   f"a first pass through a fresh map {copies['first_pass'] * 1e6:.0f} us "
                   f"({copies['first_pass'] / copies['pread']:.2f}x pread: its page faults)")
        file, row = ds._rows[0]
        with h5py.File(file, "r") as h5:
            gzip = h5["maps"].compression == "gzip"
            _, chunk = h5["maps"].id.read_direct_chunk((row, 0, 0, 0))
        t_inflate = best_of(lambda: zlib.decompress(chunk), max(args.repeat, 20)) if gzip else 0.0

        results = {"store": str(root), "items": len(keys), "samples_per_epoch": n_epoch, "batch": args.batch,
                   "cpu_count": os.cpu_count(), "read_sample_ms": t_read * 1e3,
                   "read_sample_uncompressed_ms": t_plain * 1e3,
                   "inflate_maps_chunk_ms": t_inflate * 1e3, "ram_sample_ms": t_ram * 1e3, "by_workers": {}}
        torch.set_num_threads(1)  # the main process only receives batches; keep it off the workers' cores
        for w in args.workers:
            # all loaders warm at once, their epochs interleaved round by round: a load that
            # drifts on this shared machine then weighs on every side alike
            loaders = {name: make_loader(dset, args.batch, True, w, 0, persistent_workers=True)
                       for name, dset in sources.items()}
            for loader in loaders.values():
                _epoch(loader)  # warm-up: start the workers, open the shards
            best = {name: float("inf") for name in loaders}
            cpu = {name: float("inf") for name in loaders}
            loads = []
            for _ in range(args.repeat):
                for name, loader in loaders.items():
                    loads.append(os.getloadavg()[0])
                    wall, spent = _timed_epoch(loader)
                    best[name], cpu[name] = min(best[name], wall), min(cpu[name], spent)
            rates = {name: n_epoch / t for name, t in best.items()}
            del loaders
            ratio, plain_ratio = rates["store"] / rates["ram"], rates["uncompressed"] / rates["ram"]
            cpu_ratio = cpu["ram"] / cpu["store"]
            results["by_workers"][w] = {"store_samples_per_s": rates["store"], "ram_samples_per_s": rates["ram"],
                                        "uncompressed_samples_per_s": rates["uncompressed"],
                                        "ratio": ratio, "uncompressed_ratio": plain_ratio,
                                        "cpu_ms_per_sample": {k: v / n_epoch * 1e3 for k, v in cpu.items()},
                                        "cpu_ratio": cpu_ratio, "load_1min": [min(loads), max(loads)]}
            report(f"loader maps_clean / RAM, {w} workers", ratio,
                   f"store {rates['store']:.0f} samples/s, RAM {rates['ram']:.0f} samples/s "
                   f"(batch {args.batch}, {os.cpu_count()} CPUs, load {min(loads):.1f}-{max(loads):.1f}); "
                   f"CPU per sample (all processes) store {cpu['store'] / n_epoch * 1e3:.3f} ms, "
                   f"RAM {cpu['ram'] / n_epoch * 1e3:.3f} ms = {cpu_ratio:.3f}; one store sample "
                   f"{t_read * 1e3:.2f} ms (maps chunk inflate alone {t_inflate * 1e3:.2f} ms), RAM sample "
                   f"{t_ram * 1e3:.3f} ms; goal >= 0.9")
            report(f"loader uncompressed copy / RAM, {w} workers", plain_ratio,
                   f"same reader on the shards rewritten without gzip: {rates['uncompressed']:.0f} samples/s, "
                   f"one sample {t_plain * 1e3:.2f} ms (diagnostic: every dataset of the copy uncompressed)")
    return {"loader": results}


if __name__ == "__main__":
    main()
