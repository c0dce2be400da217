"""Stage ``synth``: write the embedded sample (real file formats) under a raw folder."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from data_schema.params import SynthParams


def run_synth(out: str | Path, params: SynthParams) -> int:
    from preprocess.synthetic.sample import write_sample

    out = Path(out)
    if out.exists():  # stale files from other params must not survive
        shutil.rmtree(out)
    t0 = time.perf_counter()
    manifest = write_sample(out, params)
    n = len(getattr(manifest, "items", ()) or ())
    print(f"[synth] wrote {n} items under {out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
