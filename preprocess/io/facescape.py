"""FaceScape topologically uniform (TU) models: Wavefront ``.obj`` + ``.mtl`` +
``.jpg``, 68 landmark vertex indices, file-name ids, and the writers the
embedded-sample generator uses.

Layout: ``<root>/<subject>/models_reg/<k>_<expression>.obj`` with k = 1..20 in
``data_schema.labels.FACESCAPE20_CLASSES`` order; ``landmark_indices.txt`` (68 ints)
or ``landmark_indices.npz`` (keys ``v10``/``v16``) in the model folder or one of its
parents up to the dataset root.

Why by hand: mesh libraries (trimesh included) merge or reorder OBJ vertices, e.g.
split a vertex used with two texture coordinates, which breaks the landmark indices.
This parser keeps every ``v`` line as one vertex in file order; texture coordinates
live in their own list indexed per face corner.
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import InputError
from data_schema.labels import FACESCAPE20_CLASSES, label_map
from preprocess.io._mesh import fan_triangulate, load_texture, polygon_offsets, resolve_asset
from preprocess.io._text import (line_token_counts, parse_numbers, read_text,
                                 require_finite, wraps_input_errors)
from preprocess.scan import ItemIds, Landmarks, Scan

N_LANDMARKS = 68
LANDMARK_FILES = ("landmark_indices.txt", "landmark_indices.npz")
_NPZ_KEYS = ("v16", "v10")  # newer model version first
_MAX_NPY_BYTES = 1 << 20
_NAME = re.compile(r"^(\d+)_([a-z_]+)\.obj$", re.IGNORECASE)


@dataclass(frozen=True)
class ObjMesh:
    """A Wavefront OBJ mesh, vertices in file order.

    vertices : (V, 3) float64 (mm for FaceScape).
    faces : (F, 3) int64, 0-based, polygons fan-triangulated.
    uv : (T, 2) float64 ``vt`` coordinates (v up), or None.
    face_uv : (F, 3) int64 per-corner indices into ``uv``, or None.
    colors : (V, 3) uint8 from ``v x y z r g b`` lines (0..1), or None.
    mtllib : material library file names, in order.
    materials : ``usemtl`` names, in order of appearance.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    face_uv: np.ndarray | None = None
    colors: np.ndarray | None = None
    mtllib: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()


def is_facescape_name(path: str | os.PathLike) -> bool:
    """True for ``<k>_<expression>.obj`` where expression is FaceScape expression k
    (1-based, ``FACESCAPE20_CLASSES`` order), e.g. ``2_smile.obj``."""
    m = _NAME.match(Path(path).name)
    if not m:
        return False
    k, expr = int(m.group(1)), m.group(2)
    return 1 <= k <= len(FACESCAPE20_CLASSES) and FACESCAPE20_CLASSES[k - 1] == expr


def _statements(text: str, keyword: str) -> list[str]:
    """The rest of every line that starts with ``keyword`` (comments already removed)."""
    return re.findall(rf"^[ \t]*{keyword}\b([^\n]*)", text, re.MULTILINE)


def _rows(lines: list[str], path, what: str, allowed: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Numbers of ``lines`` (one record each) as (n, width); width = token count,
    which must be the same for all lines and one of ``allowed``."""
    widths = line_token_counts(lines)
    width = int(widths[0])
    bad = np.flatnonzero((widths != width) | ~np.isin(widths, allowed))
    if bad.size:
        raise InputError(path, f"{what}: line {lines[bad[0]].strip()[:60]!r} has "
                               f"{int(widths[bad[0]])} values (expected one of {allowed}, "
                               f"the same on every line)")
    flat = parse_numbers("\n".join(lines), path, what)
    return flat.reshape(len(lines), width), width


def _corners(f_lines: list[str], path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Polygon sizes (P,), vertex indices (K,) and texture indices (K,) or None of the
    ``f`` statements, indices as written (1-based or negative).

    Vectorised on the characters: a corner token is ``v``, ``v/vt``, ``v/vt/vn`` or
    ``v//vn``; from its slash count ``s`` and ``//`` count ``d`` it holds
    ``s + 1 - d`` numbers, so after replacing ``/`` by spaces the numbers of corner i
    start at the running sum of those counts.  A malformed token (``1/``, ``/2``)
    always promises more numbers than it holds, so a total mismatch catches it.
    """
    sizes = line_token_counts(f_lines)
    ftext = "\n".join(f_lines)
    b = np.frombuffer(ftext.encode("utf-8"), dtype=np.uint8)
    sep = b <= 32
    start = ~sep
    start[1:] &= sep[:-1]
    tok = np.cumsum(start) - 1  # token id of every character (valid on token chars)
    ntok = int(start.sum())
    slash = b == ord("/")
    nslash = np.bincount(tok[slash], minlength=ntok)
    dbl = slash[:-1] & slash[1:]
    ndbl = np.bincount(tok[:-1][dbl], minlength=ntok)
    if ntok and (nslash.max() > 2 or ndbl.max() > 1):
        raise InputError(path, "face corner with more than 3 parts (v/vt/vn)")
    nnum = nslash + 1 - ndbl
    nums = parse_numbers(ftext.replace("/", " "), path, "face indices", np.int64)
    if nums.size != int(nnum.sum()):
        raise InputError(path, "malformed face corner (empty index next to '/')")
    first = np.cumsum(nnum) - nnum
    v = nums[first]
    has_vt = (nslash >= 1) & (ndbl == 0)
    if not has_vt.any():
        return sizes, v, None
    if not has_vt.all():
        raise InputError(path, "faces mix corners with and without texture coordinates")
    return sizes, v, nums[first + 1]


def _to_zero_based(idx: np.ndarray, count_at: np.ndarray | None, path, what: str,
                   n_targets: int) -> np.ndarray:
    """1-based (negative: relative to the ``count_at`` elements defined so far) OBJ
    indices -> 0-based, checked against ``n_targets``."""
    if (idx == 0).any():
        raise InputError(path, f"{what}: index 0 (OBJ indices start at 1)")
    if count_at is not None:
        idx = np.where(idx < 0, count_at + idx, idx - 1)
    else:
        idx = idx - 1
    if idx.size and (idx.min() < 0 or idx.max() >= n_targets):
        raise InputError(path, f"{what}: index out of range (only {n_targets} defined)")
    return idx


def _defined_before_faces(text: str, keyword: str, sizes: np.ndarray) -> np.ndarray:
    """Per corner: how many ``keyword`` elements the file defines before its face
    (needed only for negative, i.e. relative, indices)."""
    pos = [m.start() for m in re.finditer(rf"^[ \t]*{keyword}\b", text, re.MULTILINE)]
    fpos = [m.start() for m in re.finditer(r"^[ \t]*f\b", text, re.MULTILINE)]
    return np.repeat(np.searchsorted(np.array(pos, dtype=np.int64), fpos), sizes)


@wraps_input_errors
def read_obj(path: str | os.PathLike) -> ObjMesh:
    """Read a Wavefront OBJ without merging or reordering vertices.

    Understands ``v`` (x y z [w] or x y z r g b), ``vt`` (u v [w]), ``vn`` (ignored),
    ``f`` with corners ``v``, ``v/vt``, ``v//vn``, ``v/vt/vn`` (negative = relative),
    ``mtllib``, ``usemtl``; other statements are ignored.  Polygons are
    fan-triangulated.  Raises InputError for: no vertices, no faces, malformed or NaN
    numbers, index 0 or out of range, polygons with fewer than 3 corners, faces that
    mix corners with and without texture coordinates.
    """
    text = read_text(path)
    if "#" in text:
        text = re.sub(r"#[^\n]*", "", text)
    v_lines = _statements(text, "v")
    vt_lines = _statements(text, "vt")
    f_lines = _statements(text, "f")
    mtllib = tuple(s.strip() for s in _statements(text, "mtllib"))
    materials = tuple(s.strip() for s in _statements(text, "usemtl"))
    if not v_lines:
        raise InputError(path, "no vertices")
    if not f_lines:
        raise InputError(path, "no faces")

    v, width = _rows(v_lines, path, "vertices", (3, 4, 6))
    vertices = np.ascontiguousarray(v[:, :3])
    require_finite(vertices, path, "vertex coordinates")
    colors = None
    if width == 6:
        require_finite(v[:, 3:], path, "vertex colours")
        colors = np.clip(np.rint(v[:, 3:] * 255.0), 0, 255).astype(np.uint8)
    uv = None
    if vt_lines:
        t, _ = _rows(vt_lines, path, "texture coordinates", (2, 3))
        uv = np.ascontiguousarray(t[:, :2])
        require_finite(uv, path, "texture coordinates")

    sizes, v_idx, t_idx = _corners(f_lines, path)
    if (sizes < 3).any():
        raise InputError(path, f"face {int(np.flatnonzero(sizes < 3)[0])} has fewer than 3 corners")
    relative = (v_idx < 0).any() or (t_idx is not None and (t_idx < 0).any())
    v_idx = _to_zero_based(v_idx, _defined_before_faces(text, "v", sizes) if relative else None,
                           path, "face vertex index", len(vertices))
    offsets = polygon_offsets(sizes)
    faces = fan_triangulate(v_idx, offsets)
    face_uv = None
    if t_idx is not None:
        if uv is None:
            raise InputError(path, "faces name texture coordinates but there are no vt lines")
        t_idx = _to_zero_based(t_idx, _defined_before_faces(text, "vt", sizes) if relative
                               else None, path, "face texture index", len(uv))
        face_uv = fan_triangulate(t_idx, offsets)
    return ObjMesh(vertices, faces, uv, face_uv, colors, mtllib, materials)


@wraps_input_errors
def read_mtl(path: str | os.PathLike) -> str:
    """The diffuse texture file name (first ``map_Kd``) of a ``.mtl`` file, '' if none.
    Options before the name (``-s 1 1 1``...) are skipped: then the name is the last
    token; without options the whole rest of the line (names may hold spaces)."""
    for line in read_text(path).splitlines():
        toks = line.split()
        if toks and toks[0] == "map_Kd" and len(toks) > 1:
            if any(t.startswith("-") for t in toks[1:-1]):
                return toks[-1]
            return line.strip()[len("map_Kd"):].strip()
    return ""


def _read_index_file(path: Path, n_vertices: int) -> np.ndarray:
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as z:  # bound every array before np.load allocates it
                for info in z.infolist():
                    if info.file_size > _MAX_NPY_BYTES:
                        raise InputError(path, f"array {info.filename!r} is {info.file_size} "
                                               f"bytes, more than a landmark list can be")
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.files)
                if not keys:
                    raise InputError(path, "npz holds no array")
                key = next((k for k in _NPZ_KEYS if k in keys), keys[0])
                arr = np.asarray(npz[key])
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - zipfile/numpy raise many types
            raise InputError(path, f"unreadable npz ({type(e).__name__}: {e})") from None
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind != "f" or (arr != np.round(arr)).any():
                raise InputError(path, f"landmark indices are not integers ({arr.dtype})")
        idx = arr.reshape(-1).astype(np.int64)
    else:
        idx = parse_numbers(read_text(path), path, "landmark indices", np.int64)
    if idx.size != N_LANDMARKS:
        raise InputError(path, f"wrong landmark count: {idx.size} indices "
                               f"(expected {N_LANDMARKS})")
    if idx.min() < 0 or idx.max() >= n_vertices:
        raise InputError(path, f"landmark vertex index out of range (model has "
                               f"{n_vertices} vertices)")
    return idx


def _landmark_dirs(obj: Path) -> list[Path]:
    """The model folder and its parents up to the dataset root (the folder holding the
    subject folders)."""
    folder = obj.parent
    top = 3 if folder.name == "models_reg" else 2  # models_reg, subject, root
    return [folder, *list(folder.parents)[:top - 1]]


def find_landmark_file(obj_path: str | os.PathLike) -> Path | None:
    """The nearest ``landmark_indices.txt``/``.npz`` for a model (see module doc)."""
    for d in _landmark_dirs(Path(obj_path)):
        for name in LANDMARK_FILES:
            if (d / name).is_file():
                return d / name
    return None


@wraps_input_errors
def read_landmark_indices(path: str | os.PathLike, vertices: np.ndarray) -> Landmarks:
    """Landmarks("file:facescape") of a model: names "ibug_0".."ibug_67", points =
    vertices[indices] (68, 3) mm, vertex_index (68,) int64.  ``.npz``: key "v16",
    else "v10", else the first array.  Raises InputError for a count other than 68,
    non-integers, indices out of range."""
    path = Path(path)
    idx = _read_index_file(path, len(vertices))
    return Landmarks(vertices[idx].copy(), tuple(f"ibug_{i}" for i in range(N_LANDMARKS)),
                     "file:facescape", vertex_index=idx)


def parse_facescape_name(path: str | os.PathLike) -> ItemIds:
    """Ids of ``<root>/<subject>/models_reg/<k>_<expression>.obj``: dataset
    "facescape", subject = the folder above ``models_reg`` (else the parent folder),
    expression from the name, label from ``label_map("facescape")``."""
    p = Path(path)
    if not is_facescape_name(p):
        raise InputError(path, "file name is not a FaceScape <k>_<expression>.obj")
    expr = _NAME.match(p.name).group(2)
    subject = p.parent.parent.name if p.parent.name == "models_reg" else p.parent.name
    return ItemIds("facescape", subject, "", expr, label_map("facescape").label_of(expr),
                   os.fspath(path))


def obj_texture(path: str | os.PathLike, mesh: ObjMesh,
                warnings: list[str]) -> tuple[np.ndarray | None, str]:
    """The diffuse texture of an OBJ: its first ``mtllib`` -> first ``map_Kd``, both
    resolved in the OBJ's folder (:func:`preprocess.io._mesh.resolve_asset`).

    Returns ``(texture (H, W, 3) uint8 RGB or None, texture file name or '')``.  No
    mtllib, a missing material file, no map_Kd or a missing image -> None and a note
    appended to ``warnings``; so is a texture the faces cannot use (no ``vt``
    corners), which is then not loaded at all.  A name escaping the folder or an
    unreadable image is an InputError.
    """
    if not mesh.mtllib:
        warnings.append("no mtllib: texture=None")
        return None, ""
    mtl = resolve_asset(path, mesh.mtllib[0])
    if not mtl.is_file():
        warnings.append(f"material file {mesh.mtllib[0]!r} not found: texture=None")
        return None, ""
    texture_name = read_mtl(mtl)
    if texture_name and mesh.face_uv is None:
        resolve_asset(path, texture_name)  # the folder rule holds even for an unused name
        warnings.append(f"texture {texture_name!r} named but the faces have no texture "
                        f"coordinates (vt): texture=None")
        return None, texture_name
    return load_texture(path, texture_name, warnings), texture_name


@wraps_input_errors
def read_facescape_scan(path: str | os.PathLike) -> Scan:
    """A FaceScape TU model: OBJ geometry (vertex order kept), texture via its
    ``.mtl`` (``map_Kd``, resolved in the model's folder; a missing material or image
    -> texture None and a note in ``extra["warnings"]``; a name escaping the folder is
    an InputError), landmarks from the nearest landmark index file (None if none)."""
    path = Path(path)
    ids = parse_facescape_name(path)
    mesh = read_obj(path)
    warnings: list[str] = []
    texture, texture_name = obj_texture(path, mesh, warnings)
    lm_file = find_landmark_file(path)
    landmarks = read_landmark_indices(lm_file, mesh.vertices) if lm_file else None
    if lm_file is None:
        warnings.append("no landmark_indices.txt/.npz found: landmarks=None")
    return Scan(vertices=mesh.vertices, faces=mesh.faces, ids=ids, colors=mesh.colors,
                texture=texture, uv=mesh.uv, face_uv=mesh.face_uv, landmarks=landmarks,
                texture_name=texture_name, extra={"warnings": warnings})


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              uv: np.ndarray | None = None, face_uv: np.ndarray | None = None,
              mtl_name: str | None = None) -> None:
    """Write an OBJ: ``v`` (6 decimals), ``vt``, ``f v/vt`` (1-based), with
    ``mtllib mtl_name`` + ``usemtl material0`` when ``mtl_name`` is given.
    vertices (V, 3) float64; faces (F, 3) int; uv (T, 2) v-up; face_uv (F, 3)."""
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    out = []
    if mtl_name:
        out += [f"mtllib {mtl_name}"]
    out += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    if uv is not None:
        if face_uv is None:
            raise ValueError("uv needs face_uv")
        out += [f"vt {u:.6f} {v:.6f}" for u, v in np.asarray(uv, dtype=np.float64).reshape(-1, 2)]
    if mtl_name:
        out += ["usemtl material0"]
    if uv is not None:
        fu = np.asarray(face_uv, dtype=np.int64).reshape(-1, 3) + 1
        out += [f"f {a}/{d} {b}/{e} {c}/{f}" for (a, b, c), (d, e, f) in zip(faces + 1, fu)]
    else:
        out += [f"f {a} {b} {c}" for a, b, c in faces + 1]
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")


def write_mtl(path: str | os.PathLike, texture_name: str) -> None:
    """Write a ``.mtl`` with one material ``material0`` whose ``map_Kd`` is
    ``texture_name``."""
    Path(path).write_text(
        "newmtl material0\nKa 1.000000 1.000000 1.000000\nKd 1.000000 1.000000 1.000000\n"
        f"map_Kd {texture_name}\n", encoding="utf-8")


def write_landmark_indices(path: str | os.PathLike, indices) -> None:
    """Write 68 landmark vertex indices: ``.npz`` -> key "v16" (``np.savez``), any
    other suffix -> text, whitespace separated."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if str(path).lower().endswith(".npz"):
        with open(path, "wb") as f:
            np.savez(f, v16=idx)
    else:
        Path(path).write_text(" ".join(map(str, idx)) + "\n", encoding="utf-8")
