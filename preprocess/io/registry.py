"""Suffix registry: which reader handles which file or folder.

A file is claimed by the first format (in ``FORMATS`` order) whose suffix matches and
whose ``claims`` predicate (if any) accepts the path; FaceScape TU ``.obj`` files are
recognised by their ``<k>_<expression>.obj`` name, any other ``.obj`` is generic.
Image-sequence folders (CK+, Oulu-CASIA) are found by their dataset layout.
Readers are imported lazily so that listing a folder imports no heavy library.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data_schema.errors import InputError


@dataclass(frozen=True)
class Format:
    """One raw format.

    name : short key written into stores (``"bnt"``, ``"wrl"``...).
    kind : ``"scan"`` or ``"sequence"``.
    suffixes : lower-case file suffixes (``".abs.gz"`` included); empty for folders.
    reader : ``"module:function"`` taking a path and returning a Scan / Sequence.
    claims : optional predicate on the path, for suffixes several formats share.
    finder : for folder formats, ``"module:find_sequences"`` taking a root and
        returning the sorted sequence folders under it; the same module has
        ``is_sequence_dir(path) -> bool``.
    """

    name: str
    kind: str
    suffixes: tuple[str, ...]
    reader: str
    claims: Callable[[Path], bool] | None = None
    finder: str = ""


def _facescape_name(path: Path) -> bool:
    from preprocess.io.facescape import is_facescape_name
    return is_facescape_name(path)


FORMATS: tuple[Format, ...] = (
    Format("bnt", "scan", (".bnt",), "preprocess.io.bosphorus:read_bnt_scan"),
    Format("wrl", "scan", (".wrl",), "preprocess.io.bu3dfe:read_wrl_scan"),
    Format("facescape_obj", "scan", (".obj",), "preprocess.io.facescape:read_facescape_scan",
           claims=_facescape_name),
    Format("abs", "scan", (".abs", ".abs.gz"), "preprocess.io.frgc:read_abs_scan"),
    Format("mesh", "scan", (".ply", ".obj"), "preprocess.io.generic_mesh:read_mesh_scan"),
    Format("video", "sequence", (".avi", ".mp4", ".mov"), "preprocess.io.video:read_video"),
    Format("ckplus", "sequence", (), "preprocess.io.ckplus:read_ckplus_sequence",
           finder="preprocess.io.ckplus:find_sequences"),
    Format("oulu", "sequence", (), "preprocess.io.oulu:read_oulu_sequence",
           finder="preprocess.io.oulu:find_sequences"),
)


@dataclass(frozen=True)
class RawItem:
    """One raw item found under a raw folder: its path, kind and format name."""

    path: str
    kind: str
    format: str


def _resolve(spec: str) -> Callable:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _suffix_match(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def format_of(path: str | os.PathLike) -> Format:
    """The format that reads ``path`` (a file or a sequence folder).

    Raises InputError when no format claims it.
    """
    p = Path(path)
    if p.is_dir():
        for fmt in FORMATS:
            if fmt.finder and _resolve(fmt.finder.replace("find_sequences", "is_sequence_dir"))(p):
                return fmt
        raise InputError(p, "folder is not a known sequence layout (CK+, Oulu-CASIA)")
    for fmt in FORMATS:
        if fmt.suffixes and _suffix_match(p, fmt.suffixes) and (fmt.claims is None or fmt.claims(p)):
            return fmt
    raise InputError(p, "unknown file type (no reader for this suffix)")


def read_item(path: str | os.PathLike, fmt: str | None = None):
    """Read a scan or a sequence with the reader of its format (by name if given)."""
    f = next(x for x in FORMATS if x.name == fmt) if fmt else format_of(path)
    return _resolve(f.reader)(Path(path))


def read_scan(path: str | os.PathLike):
    """Read one 3-D scan file into a :class:`preprocess.scan.Scan`."""
    f = format_of(path)
    if f.kind != "scan":
        raise InputError(path, f"is a {f.name} sequence, not a 3-D scan")
    return _resolve(f.reader)(Path(path))


def read_sequence(path: str | os.PathLike):
    """Read one sequence (video file or image folder) into a
    :class:`preprocess.sequence.Sequence` whose frames are decoded lazily."""
    f = format_of(path)
    if f.kind != "sequence":
        raise InputError(path, f"is a {f.name} scan, not a sequence")
    return _resolve(f.reader)(Path(path))


def list_items(root: str | os.PathLike) -> list[RawItem]:
    """Every raw item under ``root``, sorted by path: scan files, video files and
    image-sequence folders.  Files inside sequence folders are not items themselves;
    auxiliary files (textures, landmarks, .mtl) are picked up by their scan's reader."""
    root = Path(root)
    items: list[RawItem] = []
    seq_dirs: set[str] = set()
    for fmt in FORMATS:
        if fmt.finder:
            for d in _resolve(fmt.finder)(root):
                seq_dirs.add(str(d))
                items.append(RawItem(str(d), fmt.kind, fmt.name))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if dirpath in seq_dirs:
            continue
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            for fmt in FORMATS:
                if fmt.suffixes and _suffix_match(p, fmt.suffixes) and (fmt.claims is None or fmt.claims(p)):
                    items.append(RawItem(str(p), fmt.kind, fmt.name))
                    break
    return sorted(items, key=lambda it: it.path)
