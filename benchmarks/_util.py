"""Shared helpers of the benchmarks: best-of-N timing and one printed line per result.

Benchmarks print ratios against a baseline measured in the same process (never absolute
thresholds): machines differ, ratios travel.
"""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn()``, seconds (the least disturbed
    run; ``repeat`` >= 1)."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


#: Every result reported in this process, for the runner's table (``python -m benchmarks``).
RESULTS: list[dict] = []


def report(name: str, ratio: float, detail: str = "") -> None:
    """Print one result: ``name``, its ratio to the baseline, and a free-form detail."""
    RESULTS.append({"name": name, "ratio": float(ratio), "detail": detail})
    print(f"{name:<48s} ratio {ratio:8.3f}  {detail}", flush=True)
