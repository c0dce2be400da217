"""Training-data throughput: samples/s of ``MapsDataset`` read from the ``maps_clean``
store through the DataLoader vs the same samples held in RAM (``InMemoryDataset``)
through the same DataLoader.

Goal (issue "training data"): store / RAM >= 0.9 with 2 workers.  Both sides use
``train.data.make_loader`` (batch 20 = AMDFN's, shuffled, persistent workers), an epoch
of ``--epoch`` samples (the store's labelled items repeated, so every sample is a fresh
read and decompression, never a cache hit), best of ``--repeat`` epochs after one
warm-up epoch (worker start-up excluded), the sides' epochs interleaved round by round.  The detail also gives the costs that explain
the ratio, measured in this process: one sample read from the store without a loader
(h5py row read = one gzip chunk per dataset), the raw inflate of the maps chunk alone
(``zlib``), and one RAM sample.  A second line runs the same reader on an uncompressed
copy of the same shards (written to the temporary directory; the schemas themselves say
gzip), which separates the reader's own cost from the decompression.  ``--workers 2 4 8``
sweeps worker counts (one ratio per count; the RAM side always uses the same count).

The store: ``--store DIR``, else the
embedded sample is generated and run through ingest -> register -> crop -> render ->
clean in a temporary directory (a few minutes).

Run: ``PYTHONPATH=. python benchmarks/bench_loader.py [--workers 2] [--epoch 2000]``
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import zlib
from functools import partial
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
    """Seconds per sample of ``ds`` read through ``_Shard.row`` (raw chunks) and through
    plain h5py indexing (the reader's baseline), best of ``repeat`` interleaved rounds."""
    from train import data as train_data

    raw_row = train_data._Shard.row

    def indexed_row(shard, name, i):
        return shard[name][i]

    def epoch():
        return [ds[i] for i in range(len(ds))]

    best = [float("inf"), float("inf")]
    epoch()  # open the shards
    try:
        for _ in range(repeat):
            for k, row in enumerate((raw_row, indexed_row)):
                train_data._Shard.row = row
                best[k] = min(best[k], best_of(epoch, 1))
    finally:
        train_data._Shard.row = raw_row
    return best[0] / len(ds), best[1] / len(ds)


def _epoch(loader) -> int:
    n = 0
    for batch in loader:
        n += len(batch["label"])
    return n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None, help="a maps_clean store (default: build one from the embedded sample)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--epoch", type=int, default=2000, help="samples per epoch")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

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
        sources = {"store": ConcatDataset([ds] * reps), "uncompressed": ConcatDataset([plain_ds] * reps),
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
                   f"(train.data._Shard.row; rounds interleaved)")
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
            for _ in range(args.repeat):
                for name, loader in loaders.items():
                    best[name] = min(best[name], best_of(partial(_epoch, loader), 1))
            rates = {name: n_epoch / t for name, t in best.items()}
            del loaders
            ratio, plain_ratio = rates["store"] / rates["ram"], rates["uncompressed"] / rates["ram"]
            results["by_workers"][w] = {"store_samples_per_s": rates["store"], "ram_samples_per_s": rates["ram"],
                                        "uncompressed_samples_per_s": rates["uncompressed"],
                                        "ratio": ratio, "uncompressed_ratio": plain_ratio}
            report(f"loader maps_clean / RAM, {w} workers", ratio,
                   f"store {rates['store']:.0f} samples/s, RAM {rates['ram']:.0f} samples/s "
                   f"(batch {args.batch}, {os.cpu_count()} CPUs); one store sample {t_read * 1e3:.2f} ms "
                   f"(maps chunk inflate alone {t_inflate * 1e3:.2f} ms), RAM sample {t_ram * 1e3:.3f} ms; "
                   f"goal >= 0.9")
            report(f"loader uncompressed copy / RAM, {w} workers", plain_ratio,
                   f"same reader on the shards rewritten without gzip: {rates['uncompressed']:.0f} samples/s, "
                   f"one sample {t_plain * 1e3:.2f} ms (diagnostic: the gap above is the inflate)")
    return {"loader": results}


if __name__ == "__main__":
    main()
