"""End-of-stage summary and the failure-threshold exit code."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

from pipeline.runner import Failure


@dataclass(frozen=True)
class StageResult:
    stage: str
    n_items: int
    n_failed: int
    written: Mapping[str, int]
    exit_code: int
    computed: int | None = None


def finish_stage(stage: str, n_items: int, failures: Sequence[Failure], max_failed_fraction: float,
                 written: Mapping[str, int], computed: int | None = None) -> StageResult:
    """Print the summary to stderr; exit code 1 when the failed fraction passes the
    threshold (the stores and failures.jsonl are written either way)."""
    n_failed = len(failures)
    frac = n_failed / n_items if n_items else 0.0
    parts = ", ".join(f"{v} into {k}" for k, v in written.items())
    done = "" if computed is None else f"; computed {computed}, reused {n_items - computed}"
    print(f"[{stage}] {n_items} items: {n_items - n_failed} ok ({parts}), {n_failed} failed{done}", file=sys.stderr)
    for f in failures[:20]:
        print(f"[{stage}]   FAILED {f.item}: {f.error}: {f.message}", file=sys.stderr)
    if n_failed > 20:
        print(f"[{stage}]   ... {n_failed - 20} more in failures.jsonl", file=sys.stderr)
    code = 0
    if frac > max_failed_fraction:
        print(f"[{stage}] failed fraction {frac:.2f} exceeds max_failed_fraction {max_failed_fraction}",
              file=sys.stderr)
        code = 1
    return StageResult(stage, n_items, n_failed, dict(written), code, computed)
