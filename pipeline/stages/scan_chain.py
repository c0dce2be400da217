"""Store-to-store stages (3-D: ``register``, ``crop``, ``render``, ``clean``, ``masks``;
video: ``align_video``, ``sample_frames``) and ``fermaps maps`` (the whole 3-D chain on
scan files outside DVC)."""
from __future__ import annotations

import os
from collections import OrderedDict
from functools import partial
from pathlib import Path

from data_schema.params import Params, as_dict
from data_schema.schemas import ALIGNED_FRAMES, FACE_MESH, FRAME_SAMPLES, MAPS, MAPS_CLEAN, MASKS, REGISTERED_MESH
from pipeline.chain import clean_step, crop_step, masks_step, register_step, render_step
from pipeline.output import StoreOutput
from pipeline.records import item_meta, scan_record
from pipeline.runner import Failure, dask_client, run_sharded
from pipeline.video import align_video_step, sample_frames_step
from pipeline.store_stage import run_store_stage
from pipeline.summary import StageResult, finish_stage
from preprocess.io import format_of, read_scan

# stage name -> (step, params section, input schema, output schema, code it depends on)
_CHAIN = ("pipeline/chain.py", "pipeline/records.py", "data_schema/schemas.py")
STAGES = {
    "register": (register_step, "register", "raw_mesh", REGISTERED_MESH,
                 _CHAIN + ("preprocess/registration.py", "preprocess/landmark_names.py", "preprocess/template.py",
                           "preprocess/data", "preprocess/lift.py", "preprocess/render.py", "preprocess/landmarks.py")),
    "crop": (crop_step, "crop", "registered_mesh", FACE_MESH, _CHAIN + ("preprocess/nose.py",)),
    "render": (render_step, "render", "face_mesh", MAPS,
               _CHAIN + ("preprocess/curvature.py", "preprocess/render.py", "data_schema/channels.py")),
    "clean": (clean_step, "clean", "maps", MAPS_CLEAN, _CHAIN + ("preprocess/depth_clean.py",)),
    "masks": (masks_step, "masks", "maps_clean", MASKS, _CHAIN + ("preprocess/landmarks.py", "preprocess/masks.py")),
    "align_video": (align_video_step, "align_video", "raw_frames", ALIGNED_FRAMES,
                    ("pipeline/video.py", "preprocess/video_align.py", "preprocess/landmarks.py")),
    "sample_frames": (sample_frames_step, "sample_frames", "aligned_frames", FRAME_SAMPLES,
                      ("pipeline/video.py", "preprocess/frame_sampling.py")),
}


def run_chain_stage(name: str, params: Params, in_root, out_root) -> StageResult:
    step, section, in_schema, out_schema, code = STAGES[name]
    return run_store_stage(name, step, getattr(params, section), in_root, in_schema,
                           out_root, out_schema, params.run, code)


def chain_one(params: Params, path: str):
    """The whole chain on one scan file -> (maps record, maps_clean record)."""
    from data_schema.store import ItemRecord

    scan = read_scan(path)
    fmt = format_of(path).name
    meta = item_meta(scan.ids, Path(path), Path(path).parent.parent, fmt)
    rec = scan_record(scan, meta).arrays
    rec = register_step(rec, params.register, meta.key)
    rec = crop_step(rec, params.crop, meta.key)
    maps = render_step(rec, params.render, meta.key)
    clean = clean_step(maps, params.clean, meta.key)
    return ItemRecord(meta, maps), ItemRecord(meta, clean)


def run_maps(scans: list[str], out: str | os.PathLike, params: Params) -> StageResult:
    """``fermaps maps SCAN... --out DIR``: DIR/maps and DIR/maps_clean stores, one shard
    per scan folder, built with the settings of params.yaml."""
    out = Path(out)
    shards: OrderedDict = OrderedDict()
    for s in sorted(str(Path(p).resolve()) for p in scans):
        shards.setdefault(os.path.dirname(s), []).append(s)
    section = {k: as_dict(getattr(params, k)) for k in ("register", "crop", "render", "clean")}
    maps_out = StoreOutput(out / "maps", MAPS, section, "maps")
    clean_out = StoreOutput(out / "maps_clean", MAPS_CLEAN, section, "maps")

    common = os.path.commonpath(list(shards)) if shards else ""

    def write(key, results):
        name = os.path.relpath(key, os.path.dirname(common)) if common else "root"
        ok = [r for r in results if not isinstance(r, Failure)]
        maps_out.write(name, [m for m, _ in ok])
        clean_out.write(name, [c for _, c in ok])

    with dask_client(params.run.workers, params.run.scheduler) as client:
        failures = run_sharded(client, partial(chain_one, params), shards, write,
                               stage="maps", item_name=str, desc="maps")
    maps_out.close([f.as_dict() for f in failures])
    clean_out.close([f.as_dict() for f in failures])
    return finish_stage("maps", len(scans), failures, params.run.max_failed_fraction,
                        {"maps": maps_out.n_items, "maps_clean": clean_out.n_items})
