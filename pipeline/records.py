"""Canonical scans and sequences -> store records (arrays named as in the schemas).

Also the item identity written with each record: ids from the reader, the source path
relative to the raw root, and a sha256 over the source and its companion files.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from data_schema.errors import InputError
from data_schema.hash_cache import cached_sha256
from data_schema.store import ItemMeta, ItemRecord
from preprocess.scan import ItemIds, Scan
from preprocess.sequence import Sequence

PNG_COMPRESS_LEVEL = 6  # fixed so that the same texture always gives the same bytes


def source_digest(path: str | os.PathLike) -> str:
    """sha256 identifying a raw item's content.

    A file: its bytes plus those of its companions (siblings whose name starts with the
    file's stem: .lm3/.lm2/.png beside a .bnt, .bnd/.bmp beside a .wrl, .mtl/.jpg beside an
    .obj).  A folder: every file under it, by relative name and content, sorted.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        base = p
    else:
        stem = p.name.split(".")[0]
        files = sorted(f for f in p.parent.iterdir() if f.is_file() and f.name.startswith(stem))
        base = p.parent
    for f in files:
        h.update(str(f.relative_to(base)).encode() + b"\0" + cached_sha256(f).encode())
    return h.hexdigest()


def item_meta(ids: ItemIds, path: Path, raw_root: Path, fmt: str) -> ItemMeta:
    rel = os.path.relpath(path, raw_root)
    return ItemMeta(key=ItemIds(ids.dataset, ids.subject, ids.session, ids.expression, ids.label, rel).key,
                    dataset=ids.dataset, subject=ids.subject, session=ids.session,
                    expression=ids.expression, label=int(ids.label), source=rel,
                    source_sha256=source_digest(path), format=fmt)


def encode_png(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> PNG bytes as a (n,) uint8 array (lossless, deterministic)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def decode_png(data: np.ndarray) -> np.ndarray | None:
    """Inverse of encode_png; None for 0 bytes."""
    from PIL import Image

    if len(data) == 0:
        return None
    return np.asarray(Image.open(io.BytesIO(np.asarray(data, np.uint8).tobytes())).convert("RGB"))


def scan_record(scan: Scan, meta: ItemMeta) -> ItemRecord:
    """Arrays of the ``raw_mesh`` schema for one scan."""
    v = scan.vertices
    lm, lm2 = scan.landmarks, scan.landmarks2d
    no_rows = np.zeros((0, 3))
    arrays = {
        "vertices": v,
        "faces": scan.faces,
        "colors": scan.colors if scan.colors is not None else np.zeros((0, 3), np.uint8),
        "uv": scan.uv if scan.uv is not None else np.zeros((0, 2)),
        "face_uv": scan.face_uv if scan.face_uv is not None else np.zeros((0, 3), np.int32),
        "texture_png": encode_png(scan.texture) if scan.texture is not None else np.zeros(0, np.uint8),
        "landmarks": lm.points if lm is not None else no_rows,
        "landmark_names": np.asarray(lm.names if lm is not None else (), dtype=object),
        "landmark_vertex": (lm.vertex_index if lm is not None and lm.vertex_index is not None
                            else np.full(len(lm.names) if lm is not None else 0, -1, np.int64)),
        "landmarks2d": lm2.points if lm2 is not None else np.zeros((0, 2)),
        "landmark2d_names": np.asarray(lm2.names if lm2 is not None else (), dtype=object),
        "grid_index": scan.grid_index if scan.grid_index is not None else np.zeros(0, np.int64),
        "grid_shape": np.asarray(scan.grid_shape if scan.grid_shape is not None else (0, 0), np.int64),
        "landmark_provenance": np.asarray(lm.provenance if lm is not None else "", dtype=object),
        "warnings": np.asarray(list(scan.extra.get("warnings", ())), dtype=object),
    }
    return ItemRecord(meta, arrays)


def sequence_record(seq: Sequence, meta: ItemMeta) -> ItemRecord:
    """Arrays of the ``raw_frames`` schema for one sequence; decodes every frame.

    Frames of different sizes in one sequence are an InputError (the raw store keeps
    frames unresized); so is a sequence that yields no frame.
    """
    frames = []
    for i, frame in enumerate(seq.iter_frames()):
        if frames and frame.shape != frames[0].shape:
            raise InputError(seq.ids.source, f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"frame 0 is {frames[0].shape[1]}x{frames[0].shape[0]}: frames of different sizes")
        frames.append(np.asarray(frame, np.uint8))
    if not frames:
        raise InputError(seq.ids.source, "no frames")
    n = len(frames)
    lms = np.zeros((n, 68, 2), np.float32)
    has = np.zeros(n, bool)
    for i, lm in enumerate((seq.landmarks or ())[:n]):
        if lm is not None:
            lms[i], has[i] = lm.points, True
    names = list(seq.frame_names[:n]) + [f"frame_{i:06d}" for i in range(len(seq.frame_names), n)]
    arrays = {
        "frames": np.stack(frames),
        "frame_names": np.asarray(names, dtype=object),
        "landmarks68": lms,
        "has_landmarks": has,
        "fps": np.float64(seq.fps),
    }
    return ItemRecord(meta, arrays)
