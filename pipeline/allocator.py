"""Keep freed memory in the process for reuse (glibc malloc settings of the pipeline's
processes).

The 3-D chain works on arrays of 0.1-5 MB that it allocates and frees many times per
scan (numpy temporaries, scipy's sparse products).  With glibc's default settings such
blocks are mmap-ed and returned to the kernel on free, or trimmed off the heap, so the
next one is page-faulted in again: measured 1,500-9,000 page faults and ~25 % of the
time of one cubic-fit curvature call on a 36k-vertex mesh (4-16 ms of kernel time).
Two settings keep them:

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum on 64-bit): blocks below it come from
  the heap instead of their own mapping;
* ``M_TRIM_THRESHOLD`` = 256 MiB: the heap keeps up to that much free memory at its top
  instead of returning it at once.

A process then holds on to its peak heap (one scan's worth, well under the trim
threshold) until it exits, which is what a worker that processes scan after scan wants.
:func:`keep_freed_memory` applies them to the calling process (``mallopt``) and puts
them into the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
unless already set) so that worker processes started later (dask, multiprocessing)
start with them.  Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

#: Bytes: allocations below this come from the heap (glibc caps it at 32 MiB on 64-bit).
MMAP_THRESHOLD_BYTES = 32 * 2 ** 20
#: Bytes of free memory the heap keeps at its top before returning any to the kernel.
TRIM_THRESHOLD_BYTES = 256 * 2 ** 20

_M_TRIM_THRESHOLD = -1          # mallopt parameter numbers, glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
ENV = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES,
       "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD_BYTES}


def _glibc():
    """The C library of this process when it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None                  # musl and others: no (or no-op) mallopt
    return libc


def keep_freed_memory() -> bool:
    """Apply the two malloc settings of the module docstring to this process and export
    them to the processes it starts later.  Idempotent.

    Returns True when this process runs on glibc and both settings were accepted, False
    otherwise (nothing is changed then, except the environment on glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    for name, value in ENV.items():
        os.environ.setdefault(name, str(value))
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
