"""Start-up of a rendering process: ``import open3d`` against
``preprocess.open3d_core.open3d_core()`` (open3d without its plotly/dash viewer), each in
a fresh interpreter, rounds alternating, best of ``--repeat`` each side.  Both sides
import numpy first, so the ratio is open3d's own share.

Run: ``PYTHONPATH=. python benchmarks/bench_open3d_core.py [--repeat 5]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._util import report  # noqa: E402

#: Each prints the seconds the open3d import itself took in a fresh interpreter.
PROBES = {
    "plain": "import numpy, time; t = time.perf_counter(); import open3d; print(time.perf_counter() - t)",
    "core": ("import numpy, time; t = time.perf_counter(); from preprocess.open3d_core import open3d_core; "
             "open3d_core(); print(time.perf_counter() - t)"),
}


def import_seconds(which: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBES[which]], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    best = {k: float("inf") for k in PROBES}
    for _ in range(args.repeat):
        for k in PROBES:
            best[k] = min(best[k], import_seconds(k))
    report("import open3d / open3d without its viewer", best["plain"] / best["core"],
           f"{best['plain'] * 1e3:.0f} ms / {best['core'] * 1e3:.0f} ms in a fresh interpreter, best of "
           f"{args.repeat} alternating rounds (numpy already imported on both sides)")
    return {"import_s": best}


if __name__ == "__main__":
    main()
