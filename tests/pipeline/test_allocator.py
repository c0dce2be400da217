"""pipeline.allocator: freed blocks stay in the process (counted page faults, not time).

Each case runs in a fresh interpreter so that the settings never leak into the test
process: a 3 MiB buffer (below numpy's 4 MiB huge-page size) is allocated, touched and
freed, then allocated and touched again; the second touch page-faults all 768 of its
4 KiB pages when glibc returned the first block to the kernel, and none when it kept it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline import allocator

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")

_PROBE = """
import json, os, resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from pipeline.allocator import keep_freed_memory
    applied = keep_freed_memory()
else:
    applied = None
n = 3 * 2 ** 20 // 8
np.ones(n)                                     # allocate, touch, free
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(n)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults,
                  "env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_",
                                                         "MALLOC_TRIM_THRESHOLD_")}}))
"""


def _probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in allocator.ENV}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_freed_blocks_are_reused_without_page_faults():
    plain, tuned = _probe("plain"), _probe("tuned")
    pages = 3 * 2 ** 20 // 4096
    assert plain["faults"] >= pages // 2          # default glibc: given back, faulted again
    assert tuned["applied"] is True
    assert tuned["faults"] < pages // 10           # kept: the second buffer reuses it


def test_settings_are_exported_to_later_child_processes():
    tuned = _probe("tuned")
    assert tuned["env"] == {k: str(v) for k, v in allocator.ENV.items()}
