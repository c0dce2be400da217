"""Run every benchmark in one process and write the table of ratios.

``python -m benchmarks [--only NAME ...] [--out DIR]`` (``make bench``): imports each
``benchmarks/bench_*.py``, calls its ``main([])``, and writes ``DIR/results.md`` and
``DIR/results.json`` (default ``benchmarks/results/``) with every ratio reported, each
measured against its baseline in the same run.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

from benchmarks import _util

HERE = Path(__file__).parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="bench module names (e.g. bench_chain)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    # Every fermaps process keeps freed memory for reuse (pipeline.cli); so does this one.
    from pipeline.allocator import keep_freed_memory
    keep_freed_memory()
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only]
    raw: dict = {}
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        out = importlib.import_module(f"benchmarks.{name}").main([])
        raw[name] = {"seconds": time.perf_counter() - t0, "results": out or {}}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "ratios": _util.RESULTS, "raw": raw},
                                                     indent=1, default=float) + "\n")
    lines = [f"# Benchmark ratios ({meta['date']}, {meta['machine']})", "",
             "| benchmark | ratio | detail |", "| --- | ---: | --- |"]
    lines += [f"| {r['name']} | {r['ratio']:.3f} | {r['detail']} |" for r in _util.RESULTS]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
