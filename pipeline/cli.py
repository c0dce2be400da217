"""``fermaps`` command line (= ``python -m pipeline``)."""
from __future__ import annotations

import argparse
import json
import sys

from data_schema.errors import FermapsError
from data_schema.params import load_params


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fermaps", description="FER preprocessing pipeline")
    ap.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synth", help="write the embedded sample in the real raw formats")
    s.add_argument("--out", default="data/raw")

    s = sub.add_parser("ingest", help="raw scans -> raw_mesh store, sequences -> raw_frames store")
    s.add_argument("--raw", default="data/raw")
    s.add_argument("--mesh-out", default="data/stores/raw_mesh")
    s.add_argument("--frames-out", default="data/stores/raw_frames")
    s.add_argument("--workers", type=int, help="local dask worker processes (overrides params)")
    s.add_argument("--scheduler", help="address of a dask.distributed scheduler (overrides params)")

    s = sub.add_parser("inspect", help="print a store's counts, schema, params and failures")
    s.add_argument("store")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "inspect":
            from pipeline.stages.inspect_store import describe, format_text
            d = describe(args.store)
            print(json.dumps(d, indent=1, sort_keys=True) if args.json else format_text(d))
            return 0
        params = load_params(args.params)
        if args.cmd == "synth":
            from pipeline.stages.synth import run_synth
            return run_synth(args.out, params.synth)
        if args.cmd == "ingest":
            import dataclasses

            from pipeline.stages.ingest import run_ingest
            p = params.ingest
            if args.workers is not None:
                p = dataclasses.replace(p, workers=args.workers)
            if args.scheduler is not None:
                p = dataclasses.replace(p, scheduler=args.scheduler)
            return run_ingest(args.raw, args.mesh_out, args.frames_out, p).exit_code
    except FermapsError as exc:
        print(f"fermaps {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0
