"""BU-3DFE: VRML 2.0 ``.wrl`` meshes, ``.bnd`` landmark files, file-name ids, and
the writers the embedded-sample generator uses.

A ``.wrl`` holds one ``IndexedFaceSet`` or several (a PolyWorks export writes one per
"block"; read as one mesh, in file order): ``Coordinate { point [x y z, ...] }``,
``coordIndex [i j k -1 ...]`` (polygons of 3-6 vertices), optionally
``TextureCoordinate { point [u v, ...] }`` + ``texCoordIndex`` (u right, v up, as
:class:`~preprocess.scan.Scan`), ``Color { color [r g b, ...] }`` (0..1, per vertex)
and ``ImageTexture { url "F0001_AN01WH_F3D.bmp" }``.

Checked on a real file: LIZHANGYAN/fileread ``001-001.wrl``, a PolyWorks (InnovMetric)
export of a POL-DB face (one block, 16783 vertices, per-vertex ``Color``, a ``Normal``
node, no texture): mm, the face looks along +Z (z about -1670..-1510, the nose the
largest z), +y up.  No real BU-3DFE file is public here: its ``.bnd`` index base and
83-point order are not checked on one (:func:`_bnd_indices` reads both bases).

Why by hand: VRML loaders either evaluate far more of the language than these files
use or re-index vertices (the ``.bnd`` landmarks are vertex indices).  Here only the
numeric lists are located with regular expressions and tokenised by numpy; nothing is
ever evaluated.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from data_schema.errors import InputError
from data_schema.labels import label_map
from preprocess.io._mesh import fan_triangulate, load_texture, polygon_offsets, texture_or_beside
from preprocess.io._text import (NamePatternError, nonblank_lines, parse_numbers, read_text,
                                 require_finite, wraps_input_errors)
from preprocess.io.generic_mesh import ids_or_generic
from preprocess.scan import ItemIds, Landmarks, Scan

N_BND = 83
_EXPRESSIONS = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
_NAME = re.compile(r"^([FM]\d{4})_([A-Z]{2})(\d{2})([A-Z]{2})(?:_(F3D|RAW))?$")

# strings are kept (a '#' inside a url is not a comment), comments blanked
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|#[^\n\r]*')


@dataclass(frozen=True)
class WrlMesh:
    """The geometry of one VRML ``IndexedFaceSet``, in file order.

    vertices : (V, 3) float64, mm.
    polygons : (K,) int64 flat vertex indices of all polygons; polygon p is
        ``polygons[offsets[p]:offsets[p + 1]]``.
    offsets : (P + 1,) int64.
    uv : (T, 2) float64 texture coordinates (v up), or None.
    poly_uv : (K,) int64 per-corner indices into ``uv`` (same layout as ``polygons``),
        or None.
    colors : (V, 3) uint8 per-vertex RGB, or None.
    texture_url : the ``ImageTexture`` url ('' if none).
    """

    vertices: np.ndarray
    polygons: np.ndarray
    offsets: np.ndarray
    uv: np.ndarray | None = None
    poly_uv: np.ndarray | None = None
    colors: np.ndarray | None = None
    texture_url: str = ""


def _strip_comments(text: str) -> str:
    return _STRING_OR_COMMENT.sub(lambda m: m.group(0) if m.group(0)[0] == '"' else " ", text)


def _keyword_matches(text: str, keyword: str, tail: str = "") -> list[re.Match]:
    """Matches of regex ``tail`` right after every whole-word occurrence of ``keyword``.

    The keyword is located with ``str.find``: a regex starting with ``\\b`` is tried at
    every position of a multi-megabyte file and is 20x slower.
    """
    after = re.compile(tail)
    out, pos = [], text.find(keyword)
    while pos >= 0:
        end = pos + len(keyword)
        before = text[pos - 1] if pos else " "
        following = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_" or following.isalnum() or following == "_"):
            m = after.match(text, end)
            if m:
                out.append(m)
        pos = text.find(keyword, end)
    return out


def _bracket_lists(text: str, path, keyword: str, tail: str, what: str) -> list[str]:
    """Contents of the ``[...]`` that ``keyword`` + regex ``tail`` (ending at '[') opens."""
    out = []
    for m in _keyword_matches(text, keyword, tail):
        end = text.find("]", m.end())
        if end < 0:
            raise InputError(path, f"{what}: list is not closed with ']'")
        out.append(text[m.end():end])
    return out


def _one_list(text: str, path, keyword: str, tail: str, what: str) -> str | None:
    lists = _bracket_lists(text, path, keyword, tail, what)
    if len(lists) > 1:
        raise InputError(path, f"{len(lists)} {what} lists in one IndexedFaceSet")
    return lists[0] if lists else None


def _numbers(body: str, path, what: str, dtype=np.float64) -> np.ndarray:
    return parse_numbers(body.replace(",", " "), path, what, dtype)


def _polygons(body: str, path, what: str, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat corners and offsets of a ``-1``-terminated index list."""
    idx = _numbers(body, path, what, np.int64)
    if idx.size == 0:
        raise InputError(path, f"{what}: no polygons")
    if (idx < -1).any():
        raise InputError(path, f"{what}: negative index {int(idx[idx < -1][0])}")
    ends = np.flatnonzero(idx == -1)
    if idx[-1] != -1:  # VRML allows the last polygon without its -1
        ends = np.append(ends, idx.size)
    starts = np.concatenate([[0], ends[:-1] + 1])
    sizes = ends - starts
    if (sizes < 3).any():
        p = int(np.flatnonzero(sizes < 3)[0])
        raise InputError(path, f"{what}: polygon {p} has {int(sizes[p])} vertices (< 3)")
    corners = idx[idx != -1]
    if corners.size and corners.max() >= n_targets:
        raise InputError(path, f"{what}: index {int(corners.max())} out of range "
                               f"(only {n_targets} points)")
    return corners, polygon_offsets(sizes)


def _face_set(text: str, path) -> WrlMesh:
    """The lists of one ``IndexedFaceSet`` (``text``: the node's part of the file,
    comments blanked) as a WrlMesh without texture url; indices local to the node."""
    body = _one_list(text, path, "Coordinate", r"\s*\{\s*point\s*\[", "Coordinate point")
    if body is None:
        raise InputError(path, "no Coordinate { point [...] } list")
    pts = _numbers(body, path, "vertex coordinates")
    if pts.size == 0:
        raise InputError(path, "no vertices")
    if pts.size % 3:
        raise InputError(path, f"vertex coordinates: {pts.size} values, not a multiple of 3")
    vertices = pts.reshape(-1, 3)
    require_finite(vertices, path, "vertex coordinates")

    body = _one_list(text, path, "coordIndex", r"\s*\[", "coordIndex")
    if body is None:
        raise InputError(path, "no coordIndex list")
    polygons, offsets = _polygons(body, path, "coordIndex", len(vertices))

    uv = poly_uv = None
    body = _one_list(text, path, "TextureCoordinate", r"\s*\{\s*point\s*\[",
                     "TextureCoordinate")
    if body is not None:
        t = _numbers(body, path, "texture coordinates")
        if t.size % 2:
            raise InputError(path, f"texture coordinates: {t.size} values, not a multiple of 2")
        uv = t.reshape(-1, 2)
        require_finite(uv, path, "texture coordinates")
        body = _one_list(text, path, "texCoordIndex", r"\s*\[", "texCoordIndex")
        if body is None:  # VRML: without texCoordIndex, coordIndex indexes the uv list
            poly_uv, uv_offsets = polygons, offsets
            if polygons.size and polygons.max() >= len(uv):
                raise InputError(path, f"no texCoordIndex and only {len(uv)} texture "
                                       f"coordinates for {len(vertices)} vertices")
        else:
            poly_uv, uv_offsets = _polygons(body, path, "texCoordIndex", len(uv))
        if not np.array_equal(uv_offsets, offsets):
            raise InputError(path, "texCoordIndex polygons do not match coordIndex polygons")

    colors = None
    body = _one_list(text, path, "Color", r"\s*\{\s*color\s*\[", "Color")
    if body is not None:
        if _keyword_matches(text, "colorPerVertex", r"\s+FALSE\b") or \
                _keyword_matches(text, "colorIndex"):
            raise InputError(path, "per-face colours or colorIndex are not supported")
        c = _numbers(body, path, "colours")
        if c.size != 3 * len(vertices):
            raise InputError(path, f"{c.size // 3} colours for {len(vertices)} vertices")
        require_finite(c, path, "colours")
        colors = np.clip(np.rint(c.reshape(-1, 3) * 255.0), 0, 255).astype(np.uint8)

    return WrlMesh(vertices, polygons, offsets, uv, poly_uv, colors)


def _concatenate(meshes: list[WrlMesh], path) -> WrlMesh:
    """One mesh of several IndexedFaceSets (PolyWorks writes one per "block"), vertex
    and uv indices shifted by the counts of the blocks before; every block must have
    texture coordinates, or none, and the same for colours."""
    if len(meshes) == 1:
        return meshes[0]
    for what, get in (("texture coordinates", lambda m: m.uv), ("colours", lambda m: m.colors)):
        has = [get(m) is not None for m in meshes]
        if any(has) and not all(has):
            raise InputError(path, f"{sum(has)} of {len(meshes)} IndexedFaceSets have "
                                   f"{what}: mixed blocks are not supported")
    n_v = np.cumsum([0] + [len(m.vertices) for m in meshes])
    n_k = np.cumsum([0] + [len(m.polygons) for m in meshes])
    polygons = np.concatenate([m.polygons + n for m, n in zip(meshes, n_v)])
    offsets = np.concatenate([[0]] + [m.offsets[1:] + n for m, n in zip(meshes, n_k)])
    uv = poly_uv = colors = None
    if meshes[0].uv is not None:
        n_t = np.cumsum([0] + [len(m.uv) for m in meshes])
        uv = np.concatenate([m.uv for m in meshes])
        poly_uv = np.concatenate([m.poly_uv + n for m, n in zip(meshes, n_t)])
    if meshes[0].colors is not None:
        colors = np.concatenate([m.colors for m in meshes])
    return WrlMesh(np.concatenate([m.vertices for m in meshes]), polygons, offsets.astype(np.int64),
                   uv, poly_uv, colors)


@wraps_input_errors
def read_wrl(path: str | os.PathLike) -> WrlMesh:
    """Read the ``IndexedFaceSet`` nodes of a VRML 2.0 ``.wrl`` file (see module
    docstring) as one mesh, nodes in file order.

    Commas are optional separators, ``#`` starts a comment; other nodes (WorldInfo,
    Viewpoint, Material, Normal...) are skipped.  Raises InputError for a missing
    ``#VRML V2.0`` header, missing point or coordIndex lists, malformed or NaN
    numbers, polygons with fewer than 3 vertices, indices out of range, a
    texCoordIndex whose polygons differ from coordIndex, colour counts differing from
    the vertex count, a node with two lists of one kind, nodes that mix textured and
    untextured (or coloured and uncoloured) blocks, and textured nodes naming
    different images.
    """
    text = read_text(path)
    first = text.lstrip().split("\n", 1)[0]
    if not first.startswith("#VRML V2.0"):
        raise InputError(path, f"not a VRML 2.0 file (header {first[:30]!r})")
    text = _strip_comments(text)
    # one part of the text per IndexedFaceSet, from its keyword to the next one's; the
    # keyword is looked for outside strings (a WorldInfo info "... IndexedFaceSet ...")
    nodes = _STRING_OR_COMMENT.sub(lambda m: " " * len(m.group(0)), text)
    starts = [m.end() for m in _keyword_matches(nodes, "IndexedFaceSet")] or [0]
    ends = [s - len("IndexedFaceSet") for s in starts[1:]] + [len(text)]
    mesh = _concatenate([_face_set(text[a:b], path) for a, b in zip(starts, ends)], path)
    urls = sorted({m.group(1).strip() for m in _keyword_matches(
        text, "ImageTexture", r'\s*\{[^}]*?\burl\s*\[?\s*"([^"]*)"')})
    if len(urls) > 1 and mesh.uv is not None:
        raise InputError(path, f"{len(urls)} texture images ({', '.join(map(repr, urls))}): "
                               f"one texture per file is supported")
    return dataclasses.replace(mesh, texture_url=urls[0] if urls else "")


@wraps_input_errors
def read_bnd(path: str | os.PathLike) -> Landmarks:
    """Read a BU-3DFE ``.bnd`` file: 83 lines "vertex_index x y z".

    Leading non-numeric lines (headers in some copies) are skipped.  Returns
    Landmarks(points (83, 3) float64 mm, names "bnd_0".."bnd_82", provenance
    "file:bnd", vertex_index (83,) int64, 0-based into the ``.wrl``).  Raises
    InputError for a count other than 83, lines that are not 4 numbers, a negative or
    non-integer index, NaN coordinates.
    """
    lines = nonblank_lines(read_text(path))
    rows = []
    for line in lines:
        toks = line.replace(",", " ").split()
        try:
            vals = [float(t) for t in toks]
        except ValueError:
            if rows:  # header lines only before the data
                raise InputError(path, f"line {line[:60]!r} is not 'index x y z'") from None
            continue
        if len(vals) != 4:
            raise InputError(path, f"line {line[:60]!r} is not 'index x y z'")
        rows.append(vals)
    if len(rows) != N_BND:
        raise InputError(path, f"wrong landmark count: {len(rows)} (expected {N_BND})")
    a = np.array(rows, dtype=np.float64)
    require_finite(a, path, "landmarks")
    idx = a[:, 0]
    if (idx < 0).any() or (idx != np.round(idx)).any():
        raise InputError(path, "vertex index is negative or not an integer")
    return Landmarks(a[:, 1:].copy(), tuple(f"bnd_{i}" for i in range(N_BND)), "file:bnd",
                     vertex_index=idx.astype(np.int64))


def parse_bu3dfe_name(path: str | os.PathLike) -> ItemIds:
    """Ids from a BU-3DFE name ``F0001_AN01WH_F3D.wrl``: subject "F0001", expression
    "AN", session "01" (the intensity; NE00 is neutral), label from
    ``label_map("bu3dfe")``.  The ``_F3D``/``_RAW`` tail is optional.  Raises
    InputError for names that do not match or unknown expression codes.
    """
    stem = Path(path).name.split(".")[0]
    m = _NAME.match(stem)
    if not m:
        raise NamePatternError(path, "file name does not follow the BU-3DFE pattern "
                                   "F0001_AN01WH_F3D")
    subject, expr, intensity, _eth, _kind = m.groups()
    if expr not in _EXPRESSIONS:
        raise InputError(path, f"unknown BU-3DFE expression code {expr!r}")
    return ItemIds("bu3dfe", subject, intensity, expr, label_map("bu3dfe").label_of(expr),
                   os.fspath(path))


def _bnd_beside(path: Path) -> Path | None:
    stem = path.name[:-len(path.suffix)] if path.suffix else path.name
    names = [stem + ".bnd"]
    if stem.endswith("_F3D"):
        names.append(stem[:-4] + ".bnd")
    return next((path.with_name(n) for n in names if path.with_name(n).is_file()), None)


def _bnd_indices(landmarks: Landmarks, vertices: np.ndarray, bnd: Path, path: Path,
                 warnings: list[str]) -> Landmarks:
    """``.bnd`` landmarks with 0-based vertex indices into ``vertices`` (V, 3) mm.

    The format is documented 0-based, but no real .bnd is public here to check it;
    copies written by 1-based tools exist.  Both readings are tried: the one whose
    vertices lie nearer the file's own coordinates wins (1-based only when it is
    strictly nearer, with a warning).  Raises InputError when no reading is in range.
    """
    idx, n = landmarks.vertex_index, len(vertices)

    def misfit(i: np.ndarray) -> float:
        if i.min() < 0 or i.max() >= n:
            return np.inf
        return float(np.median(np.linalg.norm(vertices[i] - landmarks.points, axis=1)))

    zero, one = misfit(idx), misfit(idx - 1)
    if np.isinf(zero) and np.isinf(one):
        raise InputError(bnd, f"vertex index {int(idx.max())} out of range for {path.name} "
                              f"({n} vertices)")
    if one < zero:
        warnings.append(f"{bnd.name}: vertex indices read as 1-based (median distance to "
                        f"the file's coordinates {one:.3g} mm, 0-based: {zero:.3g} mm)")
        return dataclasses.replace(landmarks, vertex_index=idx - 1)
    return landmarks


@wraps_input_errors
def read_wrl_scan(path: str | os.PathLike) -> Scan:
    """A BU-3DFE scan (or any VRML 2.0 face scan): ``.wrl`` mesh, its texture and
    ``.bnd`` landmarks.

    faces : (F, 3) fan triangles of the polygons; face_uv the same fan of
        texCoordIndex.  uv : (T, 2) v-up as in the file.  colors : per-vertex colours
        when the file has them.
    texture : when the file has texture coordinates, the image of
        :func:`preprocess.io._mesh.texture_or_beside` (ImageTexture url, else ``<stem>.bmp``) resolved in the
        scan's folder (BMP etc. via PIL; a url escaping the folder is an InputError;
        no image -> None and a note in ``extra["warnings"]``).
    landmarks : ``<stem>.bnd`` or, for ``*_F3D.wrl``, ``<stem without _F3D>.bnd``
        beside it, indices 0-based or 1-based (:func:`_bnd_indices`).
    ids : from the BU-3DFE name; any other name (e.g. the PolyWorks export
        ``001-001.wrl``) gives generic ids and a warning
        (:func:`preprocess.io.generic_mesh.ids_or_generic`).
    """
    path = Path(path)
    warnings: list[str] = []
    ids = ids_or_generic(path, parse_bu3dfe_name, warnings)
    mesh = read_wrl(path)
    faces = fan_triangulate(mesh.polygons, mesh.offsets)
    face_uv = fan_triangulate(mesh.poly_uv, mesh.offsets) if mesh.poly_uv is not None else None
    texture, texture_name = None, mesh.texture_url
    if mesh.uv is not None:
        texture_name = texture_or_beside(path, mesh.texture_url, ".bmp", warnings)
        texture = load_texture(path, texture_name, warnings)
    landmarks = None
    bnd = _bnd_beside(path)
    if bnd is not None:
        landmarks = _bnd_indices(read_bnd(bnd), mesh.vertices, bnd, path, warnings)
    return Scan(vertices=mesh.vertices, faces=faces, ids=ids, colors=mesh.colors,
                texture=texture, uv=mesh.uv, face_uv=face_uv, landmarks=landmarks,
                texture_name=texture_name, extra={"warnings": warnings})


def _polys_text(polys: Sequence[Sequence[int]], n: int, what: str) -> str:
    out = []
    for p in polys:
        p = [int(i) for i in p]
        if len(p) < 3 or min(p) < 0 or max(p) >= n:
            raise ValueError(f"{what}: bad polygon {p} for {n} points")
        out.append("          " + ", ".join(map(str, p)) + ", -1,")
    return "\n".join(out)


def _points_text(a: np.ndarray) -> str:
    return "\n".join("            " + " ".join(f"{v:.6f}" for v in row) + "," for row in a)


def write_wrl(path: str | os.PathLike, vertices: np.ndarray,
              polygons: list[Sequence[int]], uv: np.ndarray | None = None,
              poly_uv: list[Sequence[int]] | None = None, colors: np.ndarray | None = None,
              texture_name: str | None = None) -> None:
    """Write a VRML 2.0 ``.wrl`` with one IndexedFaceSet, laid out like BU-3DFE's.

    vertices : (V, 3) float64 mm (6 decimals); polygons : vertex-index lists (>= 3
    each); uv : (T, 2) v-up with poly_uv (one uv-index list per polygon, same sizes),
    or None; colors : (V, 3) uint8 or None; texture_name : ImageTexture url or None.
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    out = ["#VRML V2.0 utf8", "", "Transform {", "  children [", "    Shape {"]
    if texture_name:
        if '"' in texture_name or "\\" in texture_name:
            raise ValueError("texture name may not contain quotes or backslashes")
        out += ["      appearance Appearance {",
                f'        texture ImageTexture {{ url "{texture_name}" }}', "      }"]
    out += ["      geometry IndexedFaceSet {", "        ccw TRUE", "        solid FALSE",
            "        coord Coordinate {", "          point [", _points_text(vertices),
            "          ]", "        }", "        coordIndex [",
            _polys_text(polygons, len(vertices), "polygons"), "        ]"]
    if uv is not None:
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if poly_uv is None or len(poly_uv) != len(polygons) or \
                any(len(a) != len(b) for a, b in zip(poly_uv, polygons)):
            raise ValueError("poly_uv must give one uv index per polygon corner")
        out += ["        texCoord TextureCoordinate {", "          point [", _points_text(uv),
                "          ]", "        }", "        texCoordIndex [",
                _polys_text(poly_uv, len(uv), "poly_uv"), "        ]"]
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if len(c) != len(vertices):
            raise ValueError("one colour per vertex")
        out += ["        color Color {", "          color [", _points_text(c / 255.0),
                "          ]", "        }"]
    out += ["      }", "    }", "  ]", "}"]
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")


def write_bnd(path: str | os.PathLike, landmarks: Landmarks) -> None:
    """Write a ``.bnd`` file: one "vertex_index x y z" line per landmark (needs
    ``landmarks.vertex_index``; coordinates with 6 decimals)."""
    if landmarks.vertex_index is None:
        raise ValueError("write_bnd needs landmarks.vertex_index")
    lines = [f"{int(i)} " + " ".join(f"{v:.6f}" for v in p)
             for i, p in zip(landmarks.vertex_index, landmarks.points)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
