"""open3d without its web viewer: the import that ray casting needs.

``import open3d`` (0.20) always imports ``open3d.visualization``, whose plotly/dash
viewer pulls in dash, plotly, flask and IPython: more than half of the import
(``benchmarks/bench_open3d_core.py``: the whole import takes 2.3x as long, 0.60 against
0.26 s, in one run), paid by every stage process and dask worker that renders, and never
used by fermaps (it only casts rays: ``o3d.t.geometry`` and
``o3d.core``).  :func:`open3d_core` imports open3d with that subpackage held back for
the duration of the import; afterwards nothing is left in its place, so an
``import open3d.visualization`` later in the same process imports the real one.

Written by hand: open3d offers no switch for this.  If open3d is already imported, it
is returned as it is.
"""
from __future__ import annotations

import sys
import types

_VIEWER = "open3d.visualization"


def open3d_core() -> types.ModuleType:
    """The ``open3d`` module, imported without ``open3d.visualization`` when this is the
    first import of open3d in the process."""
    if "open3d" in sys.modules:
        return sys.modules["open3d"]
    placeholder = types.ModuleType(_VIEWER)
    held = sys.modules.setdefault(_VIEWER, placeholder)
    try:
        import open3d
    finally:
        if held is placeholder and sys.modules.get(_VIEWER) is placeholder:
            del sys.modules[_VIEWER]
    return open3d
