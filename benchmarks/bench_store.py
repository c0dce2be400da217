"""Shard writing: one-row chunks compressed by a thread pool (``store._write_chunks``)
against h5py's own filter pipeline (one thread), on frames the size of aligned video
crops (240 x 240 x 3 uint8, a smooth image plus noise, so that gzip has real work).
ratio = h5py filters time / threaded time (> 1 = threads are faster; the bytes are
the same, tested in tests/data_schema/test_store.py).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._util import best_of, report


def frames(n: int = 300) -> np.ndarray:
    """(n, 240, 240, 3) uint8 frames: smooth gradients plus noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:240]
    base = (np.stack([x, y, x + y], axis=-1) % 256).astype(np.float32)
    return np.stack([np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
                     for _ in range(n)])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import h5py

    import data_schema.store as store
    from data_schema.schemas import DatasetSpec

    data = frames()
    spec = DatasetSpec("frames", "uint8", (240, 240, 3), True, 1, "gzip", "", "")
    times = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        path = Path(tmp) / "x.h5"
        min_chunks = store.PARALLEL_MIN_CHUNKS
        try:
            for threads in (False, True):
                store.PARALLEL_MIN_CHUNKS = min_chunks if threads else 10 ** 9

                def write():
                    with h5py.File(path, "w", libver=store.LIBVER) as h5:
                        store._create(h5, spec, data, (240, 240, 3))
                times[threads] = best_of(write, args.repeat)
        finally:
            store.PARALLEL_MIN_CHUNKS = min_chunks
    ratio = times[False] / times[True]
    report("shard write 300 x 240x240x3: h5py filters / threaded chunks", ratio,
           f"{times[False]:.2f} s vs {times[True]:.2f} s ({data.nbytes / 1e6:.0f} MB)")
    return {"filters_s": times[False], "threads_s": times[True], "ratio": ratio}


if __name__ == "__main__":
    main()
