"""Bosphorus 3-D face database: ``.bnt`` range grids, ``.lm3`` / ``.lm2`` landmark
files, file-name ids, and the writers the embedded-sample generator uses.

``.bnt`` layout (little-endian)::

    uint16 nrows, uint16 ncols, float64 zmin, uint16 len, char[len] texture name,
    uint32 N (= 5 * nrows * ncols), N float64

The N values are five planes one after the other (the N x 5 matrix of the original
MATLAB reader, stored column-major): x, y, z (mm), u, v.  Inside a plane the values
run along a row (``ncols`` values, column index fastest) and the rows are stored
bottom-up, so plane value k sits at top-down row ``nrows - 1 - k // ncols``, column
``k % ncols``.  A cell is missing where z == zmin (about -1e9); real files write
x = y = zmin there too.  ``u, v`` are normalised texture-image coordinates in [0, 1]
with v measured top-down (pixel row = v * H); :class:`~preprocess.scan.Scan` uses
v-up, so ``read_bnt_scan`` returns ``(u, 1 - v)``.

Conventions, checked on the real public files LIZHANGYAN/fileread
``data/bs000_CAU_A22A25_0.{bnt,lm3,lm2,png}`` (and the two other ``bs000_*.bnt``): mm;
the face looks along +Z (the nose tip is the largest z, 48 mm), +y up; a "left" label
is the *image's* left, the subject's right (-x: "Outer left eyebrow" at x = -90 mm,
"Outer right eyebrow" at +33 mm; :data:`preprocess.landmark_names.BOSPHORUS_TO_IBUG`);
the header names the texture, the ``.png`` of the same stem (a renamed scan falls back
to ``<stem>.png``: :func:`preprocess.io._mesh.texture_or_beside`), and
a grid vertex's uv lands on the ``.lm2`` pixel of the same label (2.4 px mean).  The
reader keeps coordinates and labels as the file has them.

Why by hand: no library reads these formats; the binary reader checks every size
against the file before it allocates anything.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import InputError
from data_schema.labels import label_map
from preprocess.io._grid import grid_mesh
from preprocess.io._mesh import load_texture, texture_or_beside
from preprocess.io.generic_mesh import ids_or_generic
from preprocess.io._text import (NamePatternError, nonblank_lines, parse_row, read_text,
                                 require_finite, wraps_input_errors)
from preprocess.scan import ItemIds, Landmarks, Scan

#: The 24 landmark labels of Bosphorus ``.lm3``/``.lm2`` files, in the database's order.
BOSPHORUS_LANDMARKS: tuple[str, ...] = (
    "Outer left eyebrow", "Middle left eyebrow", "Inner left eyebrow",
    "Inner right eyebrow", "Middle right eyebrow", "Outer right eyebrow",
    "Outer left eye corner", "Inner left eye corner", "Inner right eye corner",
    "Outer right eye corner", "Nose saddle left", "Nose saddle right",
    "Left nose peak", "Nose tip", "Right nose peak", "Left mouth corner",
    "Upper lip outer middle", "Right mouth corner", "Upper lip inner middle",
    "Lower lip inner middle", "Lower lip outer middle", "Chin middle",
    "Left ear lobe", "Right ear lobe",
)
_CANON = {" ".join(n.lower().split()): n for n in BOSPHORUS_LANDMARKS}

_HEAD = struct.Struct("<HHdH")  # nrows, ncols, zmin, len(texture name)
_COUNT = struct.Struct("<I")

# Expression classes of the file names (REFERENCE.md): emotions, neutral, action units,
# head rotations, occlusions.
_CLASSES = ("E", "N", "LFAU", "UFAU", "CAU", "YR", "PR", "CR", "O")
_EMOTIONS = ("ANGER", "DISGUST", "FEAR", "HAPPY", "SADNESS", "SURPRISE")
_NAME = re.compile(r"^(bs\d+)_([A-Z]+)_([A-Za-z0-9]+)_(\d+)$")


@dataclass(frozen=True)
class BntGrid:
    """A ``.bnt`` range grid, rows top-down.

    xyz : (R, C, 3) float64, mm; missing cells hold the stored values (zmin).
    valid : (R, C) bool, False where z == zmin.
    uv : (R, C, 2) float64, texture coordinates as stored: in [0, 1], v top-down.
    zmin : float, the background marker.
    texture_name : texture image file name the file names ('' if none).
    """

    xyz: np.ndarray
    valid: np.ndarray
    uv: np.ndarray
    zmin: float
    texture_name: str


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n} bytes"


@wraps_input_errors
def read_bnt(path: str | os.PathLike) -> BntGrid:
    """Read a Bosphorus ``.bnt`` file (layout in the module docstring).

    Raises InputError for: missing/empty file, truncated header or body (every size
    is checked against the file size before anything is allocated), N != 5 * R * C,
    trailing bytes, an empty grid, a non-finite zmin, NaN/inf in valid cells.
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    if size == 0:
        raise InputError(path, "empty file")
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            raise InputError(path, f"truncated header: file has {size} bytes, "
                                   f"the fixed header needs {_HEAD.size}")
        nrows, ncols, zmin, namelen = _HEAD.unpack(head)
        header = _HEAD.size + namelen + _COUNT.size
        if size < header:
            raise InputError(path, f"truncated header: it names a {namelen}-byte texture "
                                   f"name, file has only {size} bytes")
        raw_name = f.read(namelen)
        (n,) = _COUNT.unpack(f.read(_COUNT.size))
        if nrows == 0 or ncols == 0:
            raise InputError(path, f"empty grid ({nrows} rows x {ncols} columns)")
        cells = nrows * ncols
        expected = header + 8 * 5 * cells
        if size < expected:
            raise InputError(path, f"truncated: header promises a {nrows}x{ncols} grid "
                                   f"({_gb(expected)}), file has {size} bytes")
        if n != 5 * cells:
            raise InputError(path, f"header says N = {n} values, expected 5 x {nrows} x "
                                   f"{ncols} = {5 * cells}")
        if size > expected:
            raise InputError(path, f"size mismatch: header promises {expected} bytes, file "
                                   f"has {size} ({size - expected} trailing bytes)")
        body = f.read(8 * n)
    if len(body) != 8 * n:  # file shrank while reading
        raise InputError(path, f"truncated: expected {8 * n} data bytes, read {len(body)}")
    if not np.isfinite(zmin):
        raise InputError(path, f"zmin is not finite ({zmin})")
    # planes one after another; rows of ncols values; rows bottom-up -> flip to top-down
    planes = np.frombuffer(body, dtype="<f8").reshape(5, nrows, ncols)[:, ::-1, :]
    xyz = np.ascontiguousarray(planes[:3].transpose(1, 2, 0), dtype=np.float64)
    uv = np.ascontiguousarray(planes[3:].transpose(1, 2, 0), dtype=np.float64)
    valid = xyz[..., 2] != zmin
    require_finite(xyz[valid], path, "NaN/inf coordinates in valid cells")
    require_finite(uv[valid], path, "NaN/inf texture coordinates in valid cells")
    name = raw_name.rstrip(b"\x00")
    try:
        texture_name = name.decode("utf-8").strip()
    except UnicodeDecodeError:
        texture_name = name.decode("latin-1").strip()
    return BntGrid(xyz, valid, uv, float(zmin), texture_name)


def _canonical_label(path, label: str) -> str:
    key = " ".join(label.lower().split())
    if key not in _CANON:
        raise InputError(path, f"unknown landmark label {label!r}")
    return _CANON[key]


def _check_unique(path, names: list[str]) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise InputError(path, f"duplicate landmark label {n!r}")
        seen.add(n)


_LM3_COUNT = re.compile(r"^#?\s*(\d+)\s+landmarks?\s*:?$", re.IGNORECASE)
_LM2_COUNT = _LM3_COUNT


@wraps_input_errors
def read_lm3(path: str | os.PathLike) -> Landmarks:
    """Read a Bosphorus ``.lm3`` file: 3-D landmarks in the scan's frame.

    Format: "# 3D Landmark File", optional info lines, "N landmarks:", then N pairs of
    lines (label, "x y z").  Blank lines and CRLF are tolerated.
    Returns Landmarks(points (L, 3) float64 mm, names = the canonical spellings of
    ``BOSPHORUS_LANDMARKS`` in file order, provenance "file:lm3").
    Raises InputError: wrong header, no count line, count disagreeing with the pairs
    found, a label without coordinates, unknown or duplicate labels, bad/NaN numbers.
    """
    lines = nonblank_lines(read_text(path))
    if not lines or "3d landmark file" not in lines[0].lower():
        raise InputError(path, "not a 3D landmark file (first line is not "
                               "'# 3D Landmark File')")
    start = next((i for i, s in enumerate(lines) if _LM3_COUNT.match(s)), None)
    if start is None:
        raise InputError(path, "no 'N landmarks:' count line")
    count = int(_LM3_COUNT.match(lines[start]).group(1))
    body = lines[start + 1:]
    if len(body) % 2:
        raise InputError(path, f"landmark {body[-1]!r} has no coordinate line "
                               f"(odd number of lines after the count line)")
    found = len(body) // 2
    if found != count:
        raise InputError(path, f"wrong landmark count: count line says {count}, "
                               f"file has {found} landmarks")
    names = [_canonical_label(path, body[2 * i]) for i in range(found)]
    _check_unique(path, names)
    pts = np.array([parse_row(body[2 * i + 1], path, f"landmark {names[i]!r}", 3)
                    for i in range(found)]).reshape(found, 3)
    require_finite(pts, path, "landmark coordinates")
    return Landmarks(pts, tuple(names), "file:lm3")


@wraps_input_errors
def read_lm2(path: str | os.PathLike) -> Landmarks:
    """Read a Bosphorus ``.lm2`` file: 2-D landmarks on the texture image.

    Format: "# 2D Landmark File", "N landmarks", "Labels:", N label lines, (blank
    line), "2D Image coordinates:", N "x y" lines.
    Returns Landmarks(points (L, 2) float64 pixels (x right, y down), canonical names,
    provenance "file:lm2").  Raises InputError on a wrong header, missing sections,
    label/coordinate counts disagreeing with N, unknown labels, bad/NaN numbers.
    """
    lines = nonblank_lines(read_text(path))
    if not lines or "2d landmark file" not in lines[0].lower():
        raise InputError(path, "not a 2D landmark file (first line is not "
                               "'# 2D Landmark File')")
    low = [s.lower() for s in lines]
    i_count = next((i for i, s in enumerate(lines) if _LM2_COUNT.match(s)), None)
    i_labels = next((i for i, s in enumerate(low) if s.startswith("labels")), None)
    i_coords = next((i for i, s in enumerate(low) if s.startswith("2d image coordinates")), None)
    if i_count is None:
        raise InputError(path, "no 'N landmarks' count line")
    if i_labels is None or i_coords is None or not i_count < i_labels < i_coords:
        raise InputError(path, "missing 'Labels:' or '2D Image coordinates:' section")
    count = int(_LM2_COUNT.match(lines[i_count]).group(1))
    labels = lines[i_labels + 1:i_coords]
    coords = lines[i_coords + 1:]
    if len(labels) != count or len(coords) != count:
        raise InputError(path, f"wrong landmark count: count line says {count}, file has "
                               f"{len(labels)} labels and {len(coords)} coordinate lines")
    names = [_canonical_label(path, s) for s in labels]
    _check_unique(path, names)
    pts = np.array([parse_row(s, path, f"landmark {n!r}", 2)
                    for s, n in zip(coords, names)]).reshape(count, 2)
    require_finite(pts, path, "landmark coordinates")
    return Landmarks(pts, tuple(names), "file:lm2")


def parse_bosphorus_name(path: str | os.PathLike) -> ItemIds:
    """Ids from a Bosphorus file name ``bs<subject>_<class>_<code>_<n>.<ext>``.

    ``bs000_E_HAPPY_0`` -> subject "bs000", session "0", expression "HAPPY", label of
    HAPPY; ``bs001_N_N_0`` -> expression "NEUTRAL"; action units (LFAU, UFAU, CAU),
    rotations (YR, PR, CR) and occlusions (O) -> expression "<class>_<code>" (label
    -1).  Labels from ``label_map("bosphorus")``.  Raises InputError when the name does
    not follow the pattern, the class is unknown, or an E code is not an emotion.
    """
    stem = Path(path).name.split(".")[0]
    m = _NAME.match(stem)
    if not m:
        raise NamePatternError(path, "file name does not follow the Bosphorus pattern "
                                   "bs<subject>_<class>_<code>_<n>")
    subject, cls, code, session = m.groups()
    if cls not in _CLASSES:
        raise InputError(path, f"unknown Bosphorus expression class {cls!r}")
    if cls == "E":
        if code not in _EMOTIONS:
            raise InputError(path, f"unknown Bosphorus emotion {code!r}")
        expression = code
    elif cls == "N":
        if code != "N":
            raise InputError(path, f"neutral scans are named N_N, got N_{code}")
        expression = "NEUTRAL"
    else:
        expression = f"{cls}_{code}"
    return ItemIds("bosphorus", subject, session, expression,
                   label_map("bosphorus").label_of(expression), os.fspath(path))


@wraps_input_errors
def read_bnt_scan(path: str | os.PathLike) -> Scan:
    """A Bosphorus scan: ``.bnt`` grid, texture, and landmarks found beside it.

    vertices : (V, 3) float64 mm, the valid cells in row-major order of the top-down
        grid; ``grid_shape`` = (R, C), ``grid_index`` (V,) their row-major indices.
    faces : grid triangulation (:func:`preprocess.io._grid.grid_faces`: each triangle
        whose 3 corners are valid).
    uv : (V, 2) per vertex, v-up (``(u, 1 - v_file)``); ``face_uv = faces``.
    texture : the .png the file names, resolved in the same folder (a name escaping
        the folder is an InputError); missing file -> texture None and a note in
        ``extra["warnings"]``.
    landmarks / landmarks2d : from ``<stem>.lm3`` / ``<stem>.lm2`` when present.
    ids : from the name; a name not following the Bosphorus pattern gives generic ids
        and a warning (:func:`preprocess.io.generic_mesh.ids_or_generic`).
    Raises InputError for a Bosphorus-pattern name with an unknown class or emotion,
    a bad file, or a grid without a valid point.
    """
    path = Path(path)
    warnings: list[str] = []
    ids = ids_or_generic(path, parse_bosphorus_name, warnings)
    grid = read_bnt(path)
    vertices, faces, grid_index = grid_mesh(grid.xyz, grid.valid)
    if len(vertices) == 0:
        raise InputError(path, "no valid point (every z equals zmin)")
    uv = grid.uv.reshape(-1, 2)[grid_index].copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    texture = load_texture(path, texture_or_beside(path, grid.texture_name, ".png", warnings), warnings)
    lm3, lm2 = path.with_suffix(".lm3"), path.with_suffix(".lm2")
    return Scan(
        vertices=vertices, faces=faces, ids=ids, texture=texture, uv=uv,
        face_uv=faces.copy(),
        landmarks=read_lm3(lm3) if lm3.is_file() else None,
        landmarks2d=read_lm2(lm2) if lm2.is_file() else None,
        grid_shape=grid.valid.shape, grid_index=grid_index,
        texture_name=grid.texture_name, extra={"warnings": warnings},
    )


def write_bnt(path: str | os.PathLike, xyz: np.ndarray, valid: np.ndarray, uv: np.ndarray,
              texture_name: str, zmin: float = -1e9) -> None:
    """Write a ``.bnt`` file (layout in the module docstring).

    xyz : (R, C, 3) float64 mm, rows top-down; valid : (R, C) bool; invalid cells are
    written with x = y = z = zmin.  uv : (R, C, 2) as stored (v top-down, see
    :class:`BntGrid`), written as given.  texture_name : file name, UTF-8.
    Raises ValueError for inconsistent shapes, grids over 65535 rows/columns, or a
    valid cell whose z equals zmin.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    uv = np.asarray(uv, dtype=np.float64)
    if xyz.ndim != 3 or xyz.shape[2] != 3 or valid.shape != xyz.shape[:2] \
            or uv.shape != xyz.shape[:2] + (2,):
        raise ValueError(f"shapes xyz {xyz.shape}, valid {valid.shape}, uv {uv.shape}")
    rows, cols = valid.shape
    if not (0 < rows <= 0xFFFF and 0 < cols <= 0xFFFF):
        raise ValueError(f"grid {rows}x{cols} does not fit the uint16 header")
    if (xyz[..., 2][valid] == zmin).any():
        raise ValueError("a valid cell has z == zmin")
    name = texture_name.encode("utf-8")
    if len(name) > 0xFFFF:
        raise ValueError("texture name too long")
    planes = np.empty((5, rows, cols), dtype="<f8")
    planes[:3] = xyz.transpose(2, 0, 1)
    planes[3:] = uv.transpose(2, 0, 1)
    planes[:3, ~valid] = zmin
    with open(path, "wb") as f:
        f.write(_HEAD.pack(rows, cols, zmin, len(name)) + name + _COUNT.pack(5 * rows * cols))
        f.write(np.ascontiguousarray(planes[:, ::-1, :]).tobytes())


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6f}" for v in values)


def write_lm3(path: str | os.PathLike, landmarks: Landmarks) -> None:
    """Write a ``.lm3`` file from (L, 3) landmarks (names written as given, coordinates
    with 6 decimals)."""
    if landmarks.points.shape[1] != 3:
        raise ValueError("write_lm3 needs 3-D landmarks")
    out = ["# 3D Landmark File", "#", f"{len(landmarks.names)} landmarks:"]
    for name, p in zip(landmarks.names, landmarks.points):
        out += [name, _fmt(p)]
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")


def write_lm2(path: str | os.PathLike, landmarks: Landmarks) -> None:
    """Write a ``.lm2`` file from (L, 2) pixel landmarks."""
    if landmarks.points.shape[1] != 2:
        raise ValueError("write_lm2 needs 2-D landmarks")
    out = ["# 2D Landmark File", f"{len(landmarks.names)} landmarks", "Labels:",
           *landmarks.names, "", "2D Image coordinates:",
           *(_fmt(p) for p in landmarks.points)]
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")
