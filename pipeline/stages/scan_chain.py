"""Store-to-store stages (3-D: ``register``, ``crop``, ``render``, ``clean``, ``masks``;
video: ``align_video``, ``sample_frames``) and ``fermaps maps`` (the whole 3-D chain on
scan files outside DVC)."""
from __future__ import annotations

import os
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np

from data_schema.params import Params, as_dict
from data_schema.schemas import ALIGNED_FRAMES, FACE_MESH, FRAME_SAMPLES, MAPS, MAPS_CLEAN, MASKS, REGISTERED_MESH
from pipeline.chain import clean_step, crop_step, masks_step, register_step, render_step
from pipeline.output import StoreOutput
from pipeline.prefetch import prefetch
from data_schema.errors import InputError
from data_schema.store import ItemRecord
from pipeline.records import item_meta, scan_record
from pipeline.runner import Failure, dask_client, run_inline, run_sharded
from pipeline.video import align_frames, align_video_step, sample_frames_step
from pipeline.store_stage import run_store_stage
from pipeline.summary import StageResult, finish_stage
from preprocess.io import format_of, read_scan, read_sequence

# stage name -> (step, params section, input schema, output schema, code it depends on)
_CHAIN = ("pipeline/chain.py", "pipeline/records.py", "data_schema/schemas.py")
STAGES = {
    "register": (register_step, "register", "raw_mesh", REGISTERED_MESH,
                 _CHAIN + ("preprocess/registration.py", "preprocess/landmark_names.py", "preprocess/template.py",
                           "preprocess/gpa.py", "pipeline/stages/template.py", "preprocess/pose",
                           "preprocess/data", "preprocess/lift.py", "preprocess/render.py", "preprocess/landmarks.py",
                           "preprocess/nose.py", "preprocess/curvature.py", "preprocess/open3d_core.py")),
    "crop": (crop_step, "crop", "registered_mesh", FACE_MESH, _CHAIN + ("preprocess/nose.py",)),
    "render": (render_step, "render", "face_mesh", MAPS,
               _CHAIN + ("preprocess/curvature.py", "preprocess/render.py", "data_schema/channels.py")),
    "clean": (clean_step, "clean", "maps", MAPS_CLEAN, _CHAIN + ("preprocess/depth_clean.py",)),
    "masks": (masks_step, "masks", "maps_clean", MASKS, _CHAIN + ("preprocess/landmarks.py", "preprocess/masks.py")),
    "align_video": (align_video_step, "align_video", "raw_frames", ALIGNED_FRAMES,
                    ("pipeline/video.py", "preprocess/video_align.py", "preprocess/landmarks.py",
                     "preprocess/head_pose.py", "preprocess/frame_quality.py", "preprocess/template.py",
                     "preprocess/data/template_landmarks.json")),
    "sample_frames": (sample_frames_step, "sample_frames", "aligned_frames", FRAME_SAMPLES,
                      ("pipeline/video.py", "preprocess/frame_sampling.py")),
}


def run_chain_stage(name: str, params: Params, in_root, out_root) -> StageResult:
    step, section, in_schema, out_schema, code = STAGES[name]
    data_version = ""
    if name == "register":  # a rebuilt template must recompute the registrations
        from pipeline.stages.template import template_digest
        from pipeline.stages.template_surface import surface_digest
        data_version = template_digest(params.register) + surface_digest(params.register)
    return run_store_stage(name, step, getattr(params, section), in_root, in_schema,
                           out_root, out_schema, params.run, code, data_version)


def scan_file_record(path: str) -> ItemRecord:
    """A loose scan file read as the raw_mesh record ``ingest`` would make of it (item
    ids relative to the folder above the scan's own), for the chain on files."""
    scan = read_scan(path)
    return scan_record(scan, item_meta(scan.ids, Path(path), Path(path).parent.parent,
                                       format_of(path).name))


def chain_one(params: Params, path: str) -> dict:
    """The whole 3-D chain on one scan file -> {"maps": record, "maps_clean": record,
    "masks": record or the InputError of the masks step (no face on the texture)}."""
    raw = scan_file_record(path)
    meta = raw.meta
    rec = register_step(raw.arrays, params.register, meta.key)
    rec = crop_step(rec, params.crop, meta.key)
    maps = render_step(rec, params.render, meta.key)
    clean = clean_step(maps, params.clean, meta.key)
    try:
        masks = ItemRecord(meta, masks_step(clean, params.masks, meta.key))
    except InputError as exc:
        masks = exc
    return {"maps": ItemRecord(meta, maps), "maps_clean": ItemRecord(meta, clean), "masks": masks}


def frames_one(params: Params, path: str) -> dict:
    """One video file or image-sequence folder -> {"aligned_frames": record}.  The
    frames stream from the decoder into the alignment: a long video is never held
    whole in memory (only its aligned crops are)."""
    seq = read_sequence(path)
    fmt = format_of(path).name
    meta = item_meta(seq.ids, Path(path), Path(path).parent.parent, fmt)
    p = params.align_video
    lms = seq.landmarks
    file_lm = None
    if p.use_file_landmarks and lms and len(lms) == seq.n_frames and all(lm is not None for lm in lms):
        # as the raw_frames store holds them (float32), so that this equals the stage
        file_lm = [np.asarray(lm.points, np.float32).astype(np.float64) for lm in lms]
    frames = prefetch(seq.iter_frames())      # decode the next frames while these align
    return {"aligned_frames": ItemRecord(meta, align_frames(frames, file_lm, p, meta.key))}


def run_files(cmd: str, paths: list[str], out: str | os.PathLike, params: Params, func, outputs: dict,
              sections: tuple[str, ...]) -> StageResult:
    """Run ``func(params, path) -> {store name: record or InputError}`` on raw files
    outside DVC and write one store per output under ``out`` (one shard per source
    folder).  ``outputs``: store name -> schema; ``sections``: the params sections used."""
    out = Path(out)
    shards: OrderedDict = OrderedDict()
    for s in sorted(str(Path(p).resolve()) for p in paths):
        shards.setdefault(os.path.dirname(s.rstrip("/")), []).append(s)
    section = {k: as_dict(getattr(params, k)) for k in sections}
    stores = {name: StoreOutput(out / name, schema, section, cmd) for name, schema in outputs.items()}
    extra: dict[str, list] = {name: [] for name in outputs}
    common = os.path.commonpath(list(shards)) if shards else ""

    def write(key, results):
        name = os.path.relpath(key, os.path.dirname(common)) if common else "root"
        for store, sink in stores.items():
            recs = []
            for path, r in zip(shards[key], results):
                if isinstance(r, Failure):
                    continue
                if isinstance(r[store], Exception):
                    extra[store].append({"item": path, "stage": store, "error": type(r[store]).__name__,
                                         "message": str(r[store])})
                else:
                    recs.append(r[store])
            sink.write(name, recs)

    if len(paths) == 1 and not params.run.scheduler:
        # nothing to run beside it: worker processes would only add their start-up
        failures = run_inline(partial(func, params), shards, write, stage=cmd, item_name=str)
    else:
        with dask_client(params.run.workers, params.run.scheduler) as client:
            failures = run_sharded(client, partial(func, params), shards, write, stage=cmd, item_name=str,
                                   desc=cmd)
    for store, sink in stores.items():
        sink.close([f.as_dict() for f in failures] + extra[store])
    return finish_stage(cmd, len(paths), failures, params.run.max_failed_fraction,
                        {name: sink.n_items for name, sink in stores.items()})


def run_maps(scans: list[str], out: str | os.PathLike, params: Params) -> StageResult:
    """``fermaps maps SCAN... --out DIR``: DIR/maps, DIR/maps_clean and DIR/masks stores
    built with the settings of params.yaml."""
    return run_files("maps", scans, out, params, chain_one,
                     {"maps": MAPS, "maps_clean": MAPS_CLEAN, "masks": MASKS},
                     ("register", "crop", "render", "clean", "masks"))


def run_frames(sources: list[str], out: str | os.PathLike, params: Params) -> StageResult:
    """``fermaps frames VIDEO_OR_DIR... --out DIR``: DIR/aligned_frames."""
    return run_files("frames", sources, out, params, frames_one, {"aligned_frames": ALIGNED_FRAMES},
                     ("align_video",))
