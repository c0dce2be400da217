"""``fermaps`` command line (= ``python -m pipeline``)."""
from __future__ import annotations

import argparse
import json
import sys

from data_schema.errors import FermapsError
from data_schema.params import load_params
from pipeline.allocator import keep_freed_memory


CHAIN_DEFAULTS = {
    "register": ("data/stores/raw_mesh", "data/stores/registered_mesh"),
    "crop": ("data/stores/registered_mesh", "data/stores/face_mesh"),
    "render": ("data/stores/face_mesh", "data/stores/maps"),
    "clean": ("data/stores/maps", "data/stores/maps_clean"),
    "masks": ("data/stores/maps_clean", "data/stores/masks"),
    "align_video": ("data/stores/raw_frames", "data/stores/aligned_frames"),
    "sample_frames": ("data/stores/aligned_frames", "data/stores/frame_samples"),
}
CHAIN_HELP = {
    "register": "raw_mesh -> registered_mesh (Arun SVD fit of the landmarks to the template)",
    "crop": "registered_mesh -> face_mesh (nose tip, sphere crop)",
    "render": "face_mesh -> maps (normals, cubic-fit shape index, 8 attribute maps)",
    "clean": "maps -> maps_clean (FFNet-M depth cleaning, normals from depth)",
    "masks": "maps_clean -> masks (68 landmarks on the 56x56 texture, FFNet-M mask-1 / mask-2)",
    "align_video": "raw_frames -> aligned_frames (face detection/tracking, 68 points, similarity alignment, crop)",
    "sample_frames": "aligned_frames -> frame_samples (STCAM / HACN / WS-LGAN evaluation indices)",
}

# commands that run a per-item function on dask (or inline, for a few items)
PER_ITEM = ("ingest", "maps", "check", "frames", *CHAIN_DEFAULTS)


def _exec_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--workers", type=int, help="local dask worker processes (overrides params)")
    s.add_argument("--scheduler", help="address of a dask.distributed scheduler (overrides params)")


def _with_template(params, template: str):
    """``params`` with ``register.template`` set (the --template option)."""
    import dataclasses

    return dataclasses.replace(params, register=dataclasses.replace(params.register, template=template))


def _with_exec(section, args):
    import dataclasses

    if getattr(args, "workers", None) is not None:
        section = dataclasses.replace(section, workers=args.workers)
    if getattr(args, "scheduler", None) is not None:
        section = dataclasses.replace(section, scheduler=args.scheduler)
    return section


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
    _exec_args(s)

    for name, (src, dst) in CHAIN_DEFAULTS.items():
        s = sub.add_parser(name, help=CHAIN_HELP[name])
        s.add_argument("--in", dest="inp", default=src)
        s.add_argument("--out", default=dst)
        _exec_args(s)

    s = sub.add_parser("template", help="raw_mesh -> a template JSON: rigid GPA of the landmark files "
                                        "(neutral scans where labelled); the shipped default with < 3 sets")
    s.add_argument("--in", dest="inp", default="data/stores/raw_mesh")
    s.add_argument("--out", default="data/template/template.json")
    s.add_argument("--scans", nargs="+", help="build it from these scan files instead (landmarks found by dlib on "
                                             "their texture or shaded render; landmark files beside them win)")

    s = sub.add_parser("template-surface", help="scan files -> the face surface the geometric registration "
                                                "fits to (.npz; scans posed by their landmarks, nose-cropped, "
                                                "averaged with their mirror images)")
    s.add_argument("--scans", nargs="+", required=True)
    s.add_argument("--out", default="data/template/template_surface.npz")
    s.add_argument("--template", default="default", help="landmark template the scans are posed by "
                                                         "(default, dataset or a JSON path)")

    s = sub.add_parser("maps", help="the whole 3-D chain on scan files -> OUT/maps and OUT/maps_clean stores")
    s.add_argument("scans", nargs="+", help="scan files (.bnt, .wrl, .obj, .abs, .ply); landmark and texture files are picked up beside them")
    s.add_argument("--out", required=True)
    s.add_argument("--template", help="landmark template (default, dataset or a JSON path; overrides "
                                      "register.template)")
    _exec_args(s)

    s = sub.add_parser("check", help="the 3-D chain on real scans in memory: one row per scan (registration, "
                                     "asymmetry, nose offset, valid fraction, shape-index roughness), previews")
    s.add_argument("scans", nargs="+", help="scan files, or folders of them")
    s.add_argument("--out", required=True, help="check.tsv, check.json and previews/ go here")
    s.add_argument("--template", default="default",
                   help="landmark template: default (the shipped real-scan one; a sample's "
                        "dataset template would misfit real faces), dataset, or a JSON path")

    s = sub.add_parser("frames", help="align new videos / image-sequence folders -> OUT/aligned_frames store")
    s.add_argument("sources", nargs="+", help="video files (.avi .mp4 .mov) or CK+ / Oulu-CASIA sequence folders")
    s.add_argument("--out", required=True)
    _exec_args(s)

    s = sub.add_parser("splits", help="subject-independent split manifests, one per model")
    s.add_argument("--stores", default="data/stores")
    s.add_argument("--out", default="data/splits")
    s = sub.add_parser("train", help="train one model on its folds (checkpoints, history, test metrics)")
    s.add_argument("model")
    s.add_argument("--stores", default="data/stores")
    s.add_argument("--splits", default="data/splits")
    s.add_argument("--out", default=None, help="checkpoints, default data/models/MODEL")
    s.add_argument("--metrics", default=None, help="default data/metrics/MODEL.json")
    s.add_argument("--plots", default="data/plots")
    s = sub.add_parser("evaluate", help="gather every model's test metrics")
    s.add_argument("--metrics", default="data/metrics")
    s.add_argument("--out", default="data/evaluation.json")

    s = sub.add_parser("preview", help="PNG montage of every map per scan of a maps store")
    s.add_argument("store")
    s.add_argument("--out", required=True)
    s.add_argument("--limit", type=int, default=0, help="at most this many items (0 = all)")

    s = sub.add_parser("qa", help="quality review of aligned_frames / registered_mesh / maps / maps_clean "
                                  "stores: qa.csv (a row per frame and per scan, flags) and a worst-first "
                                  "contact sheet")
    s.add_argument("stores", nargs="+", help="store folders")
    s.add_argument("--out", required=True, help="qa.csv and sheet.png go here")
    s.add_argument("--top", type=int, default=48, help="tiles on the sheet (default 48)")
    s.add_argument("--per-item", type=int, default=3, help="at most this many frames of one sequence (default 3)")

    s = sub.add_parser("inspect", help="print a store's counts, schema, params and failures")
    s.add_argument("store")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before any worker process starts: they inherit the settings (pipeline.allocator).
    keep_freed_memory()
    try:
        if args.cmd == "inspect":
            from pipeline.stages.inspect_store import describe, format_text
            d = describe(args.store)
            print(json.dumps(d, indent=1, sort_keys=True) if args.json else format_text(d))
            return 0
        if args.cmd == "preview":
            from pipeline.preview import write_previews
            paths = write_previews(args.store, args.out, args.limit)
            print(f"wrote {len(paths)} previews under {args.out}")
            return 0
        if args.cmd == "qa":
            from pipeline.stages.qa import run_qa
            return run_qa(args.stores, args.out, args.top, args.per_item)
        params = load_params(args.params)
        if args.cmd in PER_ITEM:
            # before numpy is imported: items computed in this process (small reruns)
            # then run with the single-threaded libraries of a dask worker
            from pipeline.runner import single_thread_env
            single_thread_env()
        if args.cmd == "synth":
            from pipeline.stages.synth import run_synth
            return run_synth(args.out, params.synth)
        if args.cmd == "ingest":
            from pipeline.stages.ingest import run_ingest
            return run_ingest(args.raw, args.mesh_out, args.frames_out, _with_exec(params.ingest, args)).exit_code
        if args.cmd == "template":
            from pipeline.stages.template import run_template
            return run_template(args.inp, args.out, args.scans).exit_code
        if args.cmd in ("splits", "train", "evaluate"):
            from pipeline.stages import train_stage as ts
            if args.cmd == "splits":
                return ts.run_splits(args.stores, args.out, params.train)
            if args.cmd == "train":
                return ts.run_train(args.model, args.stores, args.splits,
                                    args.out or f"data/models/{args.model}",
                                    args.metrics or f"data/metrics/{args.model}.json", args.plots, params.train)
            return ts.run_evaluate(args.metrics, args.out, params.train)
        import dataclasses
        params = dataclasses.replace(params, run=_with_exec(params.run, args))
        if args.cmd in CHAIN_DEFAULTS:
            from pipeline.stages.scan_chain import run_chain_stage
            return run_chain_stage(args.cmd, params, args.inp, args.out).exit_code
        if args.cmd == "maps":
            from pipeline.stages.scan_chain import run_maps
            from pipeline.stages.template import template_for
            if args.template:
                params = _with_template(params, args.template)
            template_for(params.register)   # a missing template: one error, not one per scan
            return run_maps(args.scans, args.out, params).exit_code
        if args.cmd == "template-surface":
            from pipeline.stages.template_surface import run_template_surface
            params = _with_template(params, args.template)
            return run_template_surface(args.scans, args.out, params)
        if args.cmd == "check":
            from pipeline.stages.check import run_check
            params = _with_template(params, args.template)
            return run_check(args.scans, args.out, params)
        if args.cmd == "frames":
            from pipeline.stages.scan_chain import run_frames
            return run_frames(args.sources, args.out, params).exit_code
    except FermapsError as exc:
        print(f"fermaps {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0
