"""Write the embedded sample: every dataset style in its real file layout, generated
deterministically from ``SynthParams.seed``, plus ``truth.json`` with what the files do
not say (poses, nose tips, intensities, per-frame head motion).

Layout under ``out_dir``::

    bosphorus/bs000/bs000_N_N_0.{bnt,lm3,lm2,png}, bs000_E_<EMOTION>_0.*
    bu3dfe/F0001/F0001_NE00WH_F3D.{wrl,bnd,bmp}, F0001_<AN|DI|FE|HA|SA|SU>04WH_F3D.*
    facescape/landmark_indices.txt, facescape/<id>/models_reg/<k>_<expression>.{obj,mtl,jpg}
    ckplus/{cohn-kanade-images,Landmarks,Emotion}/S005/001/...
    mmi/<subject>_<session>_<expression>.avi
    truth.json

Randomness: each subject and each item draws from its own ``np.random.default_rng``
stream seeded by (seed, dataset, subject[, item]), so adding a subject or an item leaves
the others' bytes unchanged.  Items are written in sorted path order.  Every file is
byte-identical for the same seed on the same machine; the ``.avi`` files too (MJPEG,
one encoder thread), though their bytes may differ across FFmpeg builds.
"""
from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_schema.labels import FACESCAPE20_CLASSES
from data_schema.params import SynthParams, as_dict
from preprocess.scan import Landmarks
from preprocess.synthetic.astronaut import apply_skin_tone, astronaut_image, landmark_provenance
from preprocess.synthetic.expressions import (
    BASIC6, BOSPHORUS_CODES, BU3DFE_CODES, CKPLUS_CODES, EXPRESSIONS, FACESCAPE_TO_EXPRESSION,
)
from preprocess.synthetic.face_model import FaceModel, FaceParams, random_face_params
from preprocess.synthetic.scans import bosphorus_scan, bu3dfe_scan, facescape_scan
from preprocess.synthetic.sequences import (
    ExpressionWarp, frame_affines, framing, onset_apex_offset, onset_to_apex,
    random_head_motion, render_frames, to_gray,
)

TRUTH_FILE = "truth.json"
# BU-3DFE intensity levels written per expression (level / 4 is the intensity); only
# the highest, to keep the sample small (add 3 for FFNet-M's two-level protocol).
BU3DFE_LEVELS = (4,)
# CK+ sequences cycle through its seven emotions.
CKPLUS_EXPRESSIONS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
# FaceScape expressions written per subject: 8 of AMDFN's 16 (all 20 have an expression
# table; the sample size is the limit).
FACESCAPE_EXPRESSIONS = ("neutral", "smile", "mouth_stretch", "anger", "jaw_left",
                         "lip_puckerer", "sadness", "brow_raiser")
JPEG_QUALITY = 90


@dataclass(frozen=True)
class SampleItem:
    """One item written: its main path relative to the sample root (a scan file or a
    sequence folder/video) and who/what it is (expression = the generator's name, e.g.
    ``"happy"``; ``code`` = the dataset's own code, e.g. ``"HAPPY"``, ``"HA"``, ``"5"``)."""

    path: str
    dataset: str
    subject: str
    session: str
    expression: str
    code: str


@dataclass(frozen=True)
class SampleManifest:
    """What ``write_sample`` wrote.

    root : the sample folder.  items : SampleItem per item, sorted by path.
    files : every file under root after writing, relative paths, sorted.
    total_bytes : their size.
    truth : path of ``truth.json``.
    """

    root: Path
    items: tuple[SampleItem, ...]
    files: tuple[str, ...]
    total_bytes: int
    truth: Path


def stream(seed: int, *keys) -> np.random.Generator:
    """An independent random stream for (seed, *keys); keys are hashed with CRC-32 so
    that the same names always give the same stream."""
    words = [int(seed) % (1 << 32)] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _r(x, nd: int = 9):
    """JSON-friendly, rounded copy of numbers / arrays."""
    if isinstance(x, np.ndarray):
        return _r(x.tolist(), nd)
    if isinstance(x, (list, tuple)):
        return [_r(v, nd) for v in x]
    if isinstance(x, (float, np.floating)):
        return round(float(x), nd)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _pose_record(pose) -> dict:
    return {"R": _r(pose.R), "t": _r(pose.t), "angles_deg": _r(pose.angles_deg)}


def subject_model(seed: int, dataset: str, subject: str) -> FaceModel:
    """The face model of a 3-D subject of the sample (e.g. ``(0, "bosphorus", "bs000")``)."""
    return FaceModel(random_face_params(stream(seed, dataset, subject, "face")))


def sequence_subject_model(seed: int, dataset: str, subject: str) -> FaceModel:
    """The face model of a sequence subject (``"ckplus"``/``"mmi"``).  Sequences warp
    the one photograph, so these subjects differ in skin tone only."""
    p = random_face_params(stream(seed, dataset, subject, "face"))
    return FaceModel(FaceParams(skin_gain=p.skin_gain, skin_offset=p.skin_offset))


# ------------------------------------------------------------------------ writers
@dataclass(frozen=True)
class _Job:
    path: str                       # main path relative to root
    item: SampleItem
    write: Callable[[Path], dict]   # writes the item's files, returns its truth record


def _bosphorus_jobs(p: SynthParams) -> list[_Job]:
    from preprocess.io.bosphorus import BOSPHORUS_LANDMARKS, write_bnt, write_lm2, write_lm3

    jobs = []
    for i in range(p.bosphorus_subjects):
        subject = f"bs{i:03d}"
        for expr in ("neutral",) + BASIC6:
            stem = f"{subject}_N_N_0" if expr == "neutral" else f"{subject}_E_{BOSPHORUS_CODES[expr]}_0"
            rel = f"bosphorus/{subject}/{stem}.bnt"

            def write(root: Path, subject=subject, expr=expr, stem=stem) -> dict:
                model = subject_model(p.seed, "bosphorus", subject)
                rng = stream(p.seed, "bosphorus", subject, expr)
                intensity = 0.0 if expr == "neutral" else float(rng.uniform(0.75, 1.0))
                s = bosphorus_scan(model, expr, intensity, rng, (p.grid_rows, p.grid_cols),
                                   p.grid_spacing_mm, p.noise_mm, p.holes_per_scan,
                                   p.outlier_fraction, p.max_rotation_deg)
                folder = root / "bosphorus" / subject
                folder.mkdir(parents=True, exist_ok=True)
                unknown = set(s.labels) - set(BOSPHORUS_LANDMARKS)
                if unknown:
                    raise ValueError(f"labels the Bosphorus reader does not know: {sorted(unknown)}")
                write_bnt(folder / f"{stem}.bnt", s.xyz, s.valid, s.uv_stored, f"{stem}.png")
                write_lm3(folder / f"{stem}.lm3", Landmarks(s.landmarks, s.labels, "synthetic"))
                write_lm2(folder / f"{stem}.lm2", Landmarks(s.landmarks2d, s.labels, "synthetic"))
                Image.fromarray(s.texture).save(folder / f"{stem}.png")
                return {"pose": _pose_record(s.pose), "nose_tip": _r(s.nose_tip),
                        "intensity": _r(intensity),
                        "grid": {"x0": _r(s.x0), "y_top": _r(s.y_top), "spacing": _r(s.spacing),
                                 "rows": p.grid_rows, "cols": p.grid_cols},
                        "holes": [_r(h) for h in s.holes], "outliers": _r(s.outliers),
                        "face_params": _r(asdict(model.params))}

            code = "N" if expr == "neutral" else BOSPHORUS_CODES[expr]
            jobs.append(_Job(rel, SampleItem(rel, "bosphorus", subject, "0", expr, code), write))
    return jobs


def _bu3dfe_jobs(p: SynthParams) -> list[_Job]:
    from preprocess.io.bu3dfe import write_bnd, write_wrl

    jobs = []
    for i in range(p.bu3dfe_subjects):
        subject = f"F{i + 1:04d}"
        variants = [("neutral", 0)] + [(e, lv) for e in BASIC6 for lv in BU3DFE_LEVELS]
        for expr, level in variants:
            stem = f"{subject}_{BU3DFE_CODES[expr]}{level:02d}WH_F3D"
            rel = f"bu3dfe/{subject}/{stem}.wrl"

            def write(root: Path, subject=subject, expr=expr, level=level, stem=stem) -> dict:
                model = subject_model(p.seed, "bu3dfe", subject)
                rng = stream(p.seed, "bu3dfe", subject, stem)
                intensity = level / 4.0
                s = bu3dfe_scan(model, expr, intensity, rng, p.noise_mm, p.max_rotation_deg)
                folder = root / "bu3dfe" / subject
                folder.mkdir(parents=True, exist_ok=True)
                write_wrl(folder / f"{stem}.wrl", s.vertices, s.polygons, uv=np.round(s.uv, 6),
                          poly_uv=s.polygons, texture_name=f"{stem}.bmp")
                write_bnd(folder / f"{stem}.bnd",
                          Landmarks(s.landmarks, tuple(f"bnd_{k}" for k in range(83)), "synthetic",
                                    vertex_index=s.landmark_index))
                Image.fromarray(s.texture).save(folder / f"{stem}.bmp")
                return {"pose": _pose_record(s.pose), "nose_tip": _r(s.nose_tip),
                        "intensity": _r(intensity), "face_params": _r(asdict(model.params))}

            jobs.append(_Job(rel, SampleItem(rel, "bu3dfe", subject, f"{level:02d}", expr,
                                             BU3DFE_CODES[expr]), write))
    return jobs


def _facescape_jobs(p: SynthParams) -> list[_Job]:
    from preprocess.io.facescape import write_landmark_indices, write_mtl, write_obj
    from preprocess.synthetic.scans import FACESCAPE_SPACING_MM, facescape_topology

    jobs = []
    if p.facescape_subjects > 0:
        rel = "facescape/landmark_indices.txt"

        def write_indices(root: Path, rel=rel) -> dict:
            (root / "facescape").mkdir(parents=True, exist_ok=True)
            idx = facescape_topology(FACESCAPE_SPACING_MM)[2]
            write_landmark_indices(root / rel, idx)
            return {"n_vertices": len(facescape_topology(FACESCAPE_SPACING_MM)[0])}

        jobs.append(_Job(rel, None, write_indices))
    for i in range(p.facescape_subjects):
        subject = str(i + 1)
        for fs_name in FACESCAPE_EXPRESSIONS:
            stem = f"{FACESCAPE20_CLASSES.index(fs_name) + 1}_{fs_name}"
            rel = f"facescape/{subject}/models_reg/{stem}.obj"

            def write(root: Path, subject=subject, fs_name=fs_name, stem=stem) -> dict:
                model = subject_model(p.seed, "facescape", subject)
                rng = stream(p.seed, "facescape", subject, fs_name)
                expr = FACESCAPE_TO_EXPRESSION.get(fs_name, fs_name)
                intensity = 0.0 if expr == "neutral" else float(rng.uniform(0.85, 1.0))
                s = facescape_scan(model, expr, intensity)
                folder = root / "facescape" / subject / "models_reg"
                folder.mkdir(parents=True, exist_ok=True)
                write_obj(folder / f"{stem}.obj", s.vertices, s.triangles, uv=np.round(s.uv, 6),
                          face_uv=s.triangles, mtl_name=f"{stem}.mtl")
                write_mtl(folder / f"{stem}.mtl", f"{stem}.jpg")
                Image.fromarray(s.texture).save(folder / f"{stem}.jpg", quality=JPEG_QUALITY)
                return {"pose": _pose_record(s.pose), "nose_tip": _r(s.nose_tip),
                        "intensity": _r(intensity), "face_params": _r(asdict(model.params))}

            expr = FACESCAPE_TO_EXPRESSION.get(fs_name, fs_name)
            jobs.append(_Job(rel, SampleItem(rel, "facescape", subject, "", expr, fs_name), write))
    return jobs


def _sequence_record(weights, affines, motion, intensity) -> dict:
    return {"intensity": _r(intensity), "weights": _r(weights),
            "frame_affines": _r(affines),
            "head_motion": {"angle_deg": _r(motion.angle_deg), "scale": _r(motion.scale),
                            "tx": _r(motion.tx), "ty": _r(motion.ty)}}


def render_sequence(p: SynthParams, dataset: str, subject: str, item_key: str, expr: str,
                    ramp: Callable[[int], np.ndarray]):
    """One sample sequence as the generator makes it: (frames (T, h, w, 3) uint8 RGB,
    exact landmarks (T, 68, 2) float64 frame pixels, its truth record with the head
    motion: ``head_motion["angle_deg"]`` is the known in-plane rotation of each frame,
    degrees counter-clockwise on screen)."""
    model = sequence_subject_model(p.seed, dataset, subject)
    srng = stream(p.seed, dataset, subject, "framing")
    base = framing(tuple(p.frame_size), float(srng.uniform(1.35, 1.5)),
                   srng.uniform(-8.0, 8.0, size=2))
    rng = stream(p.seed, dataset, subject, item_key)
    n = int(rng.integers(p.frames_min, p.frames_max + 1))
    intensity = float(rng.uniform(0.85, 1.0))
    motion = random_head_motion(rng, n)
    affines = frame_affines(base, motion, tuple(p.frame_size))
    weights = intensity * ramp(n)
    image = apply_skin_tone(astronaut_image(), np.array(model.params.skin_gain),
                            model.params.skin_offset)
    warp = ExpressionWarp(model, expr, image.shape[:2])
    frames, landmarks = render_frames(image, warp, weights, affines, tuple(p.frame_size))
    return frames, landmarks, _sequence_record(weights, affines, motion, intensity)


def has_emotion_file(sequence_number: int) -> bool:
    """CK+ labels only some sequences: here every fourth sequence (0-based number over
    all subjects, in order) lacks its emotion file."""
    return sequence_number % 4 != 3


def _ckplus_jobs(p: SynthParams) -> list[_Job]:
    from preprocess.io.ckplus import write_ckplus_sequence

    jobs = []
    n_seq = min(p.ckplus_sequences_per_subject, len(CKPLUS_EXPRESSIONS))
    for i in range(p.ckplus_subjects):
        subject = f"S{5 * (i + 1):03d}"
        for j in range(n_seq):
            session = f"{j + 1:03d}"
            expr = CKPLUS_EXPRESSIONS[(i * n_seq + j) % len(CKPLUS_EXPRESSIONS)]
            rel = f"ckplus/cohn-kanade-images/{subject}/{session}"
            labelled = has_emotion_file(i * n_seq + j)

            def write(root: Path, subject=subject, session=session, expr=expr,
                      labelled=labelled) -> dict:
                frames, landmarks, rec = render_sequence(p, "ckplus", subject, session, expr,
                                                          onset_to_apex)
                write_ckplus_sequence(root / "ckplus", subject, session, to_gray(frames),
                                      landmarks=np.round(landmarks, 4),
                                      emotion=CKPLUS_CODES[expr] if labelled else None)
                rec["emotion_file"] = labelled     # landmarks: in the Landmarks files
                return rec

            jobs.append(_Job(rel, SampleItem(rel, "ckplus", subject, session, expr,
                                             str(CKPLUS_CODES[expr]) if labelled else ""), write))
    return jobs


def _mmi_jobs(p: SynthParams) -> list[_Job]:
    from preprocess.io.video import write_video

    jobs = []
    for k in range(p.mmi_videos):
        subject, session = f"S{k // 2 + 1:03d}", f"{k % 2 + 1:03d}"
        expr = BASIC6[k % len(BASIC6)]
        rel = f"mmi/{subject}_{session}_{expr}.avi"

        def write(root: Path, subject=subject, session=session, expr=expr, rel=rel) -> dict:
            frames, landmarks, rec = render_sequence(p, "mmi", subject, session, expr,
                                                      onset_apex_offset)
            write_video(root / rel, frames, fps=25.0)
            rec["landmarks"] = _r(landmarks, 6)
            rec["apex_frame"] = len(frames) // 2
            return rec

        jobs.append(_Job(rel, SampleItem(rel, "mmi", subject, session, expr, expr), write))
    return jobs


def write_sample(out_dir: str | os.PathLike, params: SynthParams | None = None) -> SampleManifest:
    """Generate the embedded sample under ``out_dir`` (created if needed; files of the
    same names are overwritten, others left alone).

    Returns a :class:`SampleManifest`.  ``truth.json`` holds, per item path: dataset ids,
    expression and intensity, the true pose (``R``, ``t``: model -> file frame) and nose
    tip (file frame, mm) of scans, grid geometry / planted holes / outlier cells of range
    scans, and per-frame weights, affines (astronaut pixels -> frame pixels) and head
    motion of sequences, with the exact per-frame landmarks of the MMI videos (CK+'s are
    in its Landmarks files).
    """
    params = SynthParams() if params is None else params
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    jobs = sorted(_bosphorus_jobs(params) + _bu3dfe_jobs(params) + _facescape_jobs(params)
                  + _ckplus_jobs(params) + _mmi_jobs(params), key=lambda j: j.path)
    records = {}
    for job in jobs:
        rec = job.write(root)
        if job.item is not None:
            rec = {**asdict(job.item), **rec}
        records[job.path] = rec
    truth = {
        "generator": "preprocess.synthetic",
        "params": as_dict(params),
        "texture_source": "skimage.data.astronaut()",
        "landmark_provenance": landmark_provenance(),
        "frames": {"model": "mm, x right (subject's left), y up, z toward the viewer; "
                            "p_file = R p_model + t",
                   "sequence_affine": "astronaut pixels -> frame pixels (2x3)"},
        "expressions": {name: {"recipe": [[k, w] for k, w in e.recipe]}
                        for name, e in sorted(EXPRESSIONS.items())},
        "items": records,
    }
    truth_path = root / TRUTH_FILE
    truth_path.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    files = sorted(str(q.relative_to(root)).replace(os.sep, "/")
                   for q in root.rglob("*") if q.is_file())
    total = sum((root / f).stat().st_size for f in files)
    items = tuple(j.item for j in jobs if j.item is not None)
    return SampleManifest(root, items, tuple(files), total, truth_path)
