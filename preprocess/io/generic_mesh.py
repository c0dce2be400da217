"""Scans of no known dataset: ``.ply`` meshes through trimesh, ``.obj`` meshes through
the project's own OBJ parser (:func:`preprocess.io.facescape.read_obj`).

Why not trimesh for OBJ: even with ``process=False`` and ``maintain_order=True`` it
splits a multi-material OBJ into a Scene whose parts each carry the whole vertex list,
and without ``maintain_order`` it splits vertices at texture seams; both break vertex
order.  For PLY trimesh is given an open file and no resolver, so nothing the file
names (textures) is ever opened, and ``process=False`` (no merging/cleaning).

Colour: PLY per-vertex colours; OBJ ``v x y z r g b`` colours and the texture of its
``mtllib`` -> ``map_Kd`` with the ``vt`` / ``f v/vt`` corners
(:func:`preprocess.io.facescape.obj_texture`, resolved in the scan's folder only).

Conventions: none can be known for a scan of no dataset; vertices are taken as mm
(or as metres, scaled, when they span less than 1 unit: :func:`in_mm`) and as they
are in the file (no axis is flipped).  Registration finds the pose.
Not checked on a real generic .ply/.obj (none is public in LIZHANGYAN/fileread).

Files of a dataset's format whose names do not follow that dataset's pattern (a
``.bnt`` not named ``bs<subject>_...``, a ``.wrl`` not named ``F0001_AN01WH_F3D``, an
``.abs`` not named ``<subject>d<n>``) are read by their format's reader with the
generic ids of :func:`parse_generic_name` and a warning (:func:`ids_or_generic`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from data_schema.errors import InputError
from data_schema.labels import label_map
from preprocess.io._text import (MAX_FILE_BYTES, NamePatternError, is_gzip_path,
                                 require_finite, wraps_input_errors)
from preprocess.io.facescape import obj_texture, read_obj
from preprocess.scan import ItemIds, Scan

_TYPES = {".ply": "ply", ".obj": "obj"}


def parse_generic_name(path: str | os.PathLike) -> ItemIds:
    """Ids of a generic scan: dataset "generic", subject = parent folder name,
    session = file stem (without ``.gz`` and the suffix before it: ``a.abs.gz`` ->
    "a"), no expression (label -1)."""
    p = Path(path)
    stem = Path(p.name[:-3]).stem if is_gzip_path(p) else p.stem
    return ItemIds("generic", p.parent.name, stem, "", label_map("generic").label_of(""),
                   os.fspath(path))


def ids_or_generic(path: str | os.PathLike, parse: Callable[[str | os.PathLike], ItemIds],
                   warnings: list[str]) -> ItemIds:
    """Ids of ``path`` by its dataset's name parser ``parse``; a name that does not
    follow the dataset's pattern (``NamePatternError``) gives :func:`parse_generic_name`
    ids instead and appends the reason to ``warnings``.  A name that follows the
    pattern with a wrong code stays an InputError (see ``NamePatternError``)."""
    try:
        return parse(path)
    except NamePatternError as e:
        ids = parse_generic_name(path)
        warnings.append(f"{e.reason}: read as a generic scan (dataset 'generic', subject "
                        f"{ids.subject!r}, session {ids.session!r}, no label)")
        return ids


#: A face is 100-300 mm across, a bust < 1 m; a generic scan whose used vertices span less than this
#: (mm) is taken to be in metres (photogrammetry and phone scans, open3d exports).
METRES_IF_EXTENT_BELOW = 1.0


def in_mm(vertices: np.ndarray, faces: np.ndarray, warnings: list[str]) -> np.ndarray:
    """(V, 3) float64 vertices in mm: a generic scan's units are not in the file, so one
    whose used vertices span less than :data:`METRES_IF_EXTENT_BELOW` is scaled by 1000
    (a note in ``warnings``); anything else is returned as it is (assumed mm)."""
    used = vertices[np.unique(faces)] if len(faces) else vertices
    extent = float(np.ptp(used, axis=0).max()) if len(used) else 0.0
    if 0.0 < extent < METRES_IF_EXTENT_BELOW:
        warnings.append(f"coordinates span {extent:.3g} units: read as metres, scaled to mm")
        return vertices * 1000.0
    return vertices


# Smallest bytes one element can take: ASCII "0 0 0\n" / "3 0 1 2\n"; binary 3 floats /
# a count byte + 3 int32.
_MIN_BYTES = {("vertex", True): 6, ("face", True): 8, ("vertex", False): 12, ("face", False): 13}


def _ply_header(path: Path, size: int) -> tuple[dict[str, int], bool]:
    """Element counts and ASCII-ness from a PLY header (the first 64 kB at most), checked
    against the file size before trimesh allocates anything for them."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise InputError(path, "not a PLY file (no 'ply' ... 'end_header' header)")
    counts: dict[str, int] = {}
    ascii_format = False
    for line in head[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if words[:2] == ["format", "ascii"]:
            ascii_format = True
        if len(words) == 3 and words[0] == "element" and words[2].isdigit():
            counts[words[1]] = int(words[2])
    body = size - end
    need = sum(n * _MIN_BYTES.get((name, ascii_format), 1) for name, n in counts.items())
    if need > body:
        raise InputError(path, f"truncated: header promises {counts.get('vertex', 0)} vertices and "
                               f"{counts.get('face', 0)} faces, at least {need} bytes, the file has {body}")
    return counts, ascii_format


@wraps_input_errors
def read_mesh_scan(path: str | os.PathLike) -> Scan:
    """A ``.ply`` (trimesh) or ``.obj`` (own parser) scan, vertex order kept.

    vertices : (V, 3) float64 mm (as in the file, or x1000 with a warning when the
        used vertices span < 1 unit: :func:`in_mm`); faces : (F, 3)
    int64 (polygons triangulated); colors : (V, 3) uint8 when the file has per-vertex
    colours.  OBJ only: uv (T, 2) v-up and face_uv (F, 3) from ``vt`` / ``f v/vt``,
    texture (H, W, 3) uint8 from ``mtllib`` -> ``map_Kd`` (a missing file -> None and
    a note in ``extra["warnings"]``; a name escaping the folder is an InputError).
    Raises InputError for unknown suffixes, missing, empty or unparsable
    files (trimesh errors wrapped), no vertices, no faces, NaN/inf coordinates, face
    indices out of range.
    """
    path = Path(path)
    file_type = _TYPES.get(path.suffix.lower())
    if file_type is None:
        raise InputError(path, f"not a .ply or .obj file ({path.suffix!r})")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    if size == 0:
        raise InputError(path, "empty file")
    if size > MAX_FILE_BYTES:
        raise InputError(path, f"file is {size} bytes, more than the {MAX_FILE_BYTES} limit")
    ids = parse_generic_name(path)
    if file_type == "obj":
        obj = read_obj(path)
        warnings: list[str] = []
        texture, texture_name = obj_texture(path, obj, warnings)
        return Scan(vertices=in_mm(obj.vertices, obj.faces, warnings), faces=obj.faces, ids=ids,
                    colors=obj.colors,
                    texture=texture, uv=obj.uv, face_uv=obj.face_uv,
                    texture_name=texture_name, extra={"warnings": warnings})
    counts, ascii_format = _ply_header(path, size)
    import trimesh  # here, so that listing a folder never imports it

    try:
        with open(path, "rb") as f:
            mesh = trimesh.load(f, file_type=file_type, process=False, resolver=None)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types
        if ascii_format:  # trimesh's numpy error on a short ASCII body says nothing useful
            raise InputError(path, f"truncated or malformed ascii ply: header promises "
                                   f"{counts.get('vertex', 0)} vertices and {counts.get('face', 0)} faces "
                                   f"({type(e).__name__}: {e})") from None
        raise InputError(path, f"unreadable {file_type} ({type(e).__name__}: {e})") from None
    if isinstance(mesh, trimesh.PointCloud) and len(mesh.vertices):
        raise InputError(path, "no faces (point cloud)")
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError(path, f"no mesh in the file ({type(mesh).__name__})")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if "vertex" in counts and len(vertices) != counts["vertex"]:
        raise InputError(path, f"truncated: header promises {counts['vertex']} vertices, "
                               f"the file holds {len(vertices)}")
    if len(vertices) == 0:
        raise InputError(path, "no vertices")
    if len(faces) == 0:
        raise InputError(path, "no faces (point cloud)")
    require_finite(vertices, path, "vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(path, "face index out of range")
    colors = None
    if getattr(mesh.visual, "kind", None) == "vertex":
        c = np.asarray(mesh.visual.vertex_colors)
        if c.shape[0] == len(vertices):
            colors = np.ascontiguousarray(c[:, :3], dtype=np.uint8)
    warnings = []
    return Scan(vertices=in_mm(vertices, faces, warnings), faces=faces, ids=ids, colors=colors,
                extra={"warnings": warnings})
