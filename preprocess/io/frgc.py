"""FRGC range images: ``.abs`` / ``.abs.gz`` grids, their ``.ppm`` colour images,
file-name ids, and the writer the embedded-sample generator uses.

``.abs`` is text::

    480 rows
    640 columns
    pixels (flag X Y Z):
    <R*C flags 0/1>
    <R*C X values>
    <R*C Y values>
    <R*C Z values>

one line per plane, values in row-major order of the image (rows top-down); a missing
point has flag 0 and X = Y = Z = -999999.  Coordinates are mm.

Why by hand: no library reads the format; the reader bounds what it reads by what the
header promises (a tiny file claiming "100000 rows", or a gzip bomb, fails before
anything large is allocated).
"""
from __future__ import annotations

import gzip
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import InputError
from data_schema.labels import label_map
from preprocess.io._grid import grid_mesh
from preprocess.io._mesh import load_image
from preprocess.io._text import (
    MAX_FILE_BYTES,
    NamePatternError,
    is_gzip_path,
    parse_numbers,
    read_errors,
    require_finite,
    wraps_input_errors,
)
from preprocess.io.generic_mesh import ids_or_generic
from preprocess.scan import ItemIds, Scan

INVALID = -999999.0
_HEADER_PROBE = 4096
_MAX_VALUE_CHARS = 32  # generous width of one printed value plus its separator
_ROWS = re.compile(r"^\s*(\d+)\s+rows\s*$", re.IGNORECASE)
_COLS = re.compile(r"^\s*(\d+)\s+columns\s*$", re.IGNORECASE)
_PIXELS = re.compile(r"^\s*pixels\s*\(\s*flag\s+x\s+y\s+z\s*\)\s*:?\s*$", re.IGNORECASE)
_NAME = re.compile(r"^(\d+)(d\d+)$")
_PLANES = ("flags", "X", "Y", "Z")


@dataclass(frozen=True)
class AbsGrid:
    """An FRGC range grid, rows top-down.

    xyz : (R, C, 3) float64, mm; missing cells hold the stored values (-999999).
    valid : (R, C) bool, flag 1 and no coordinate equal to -999999.
    """

    xyz: np.ndarray
    valid: np.ndarray


def _abs_stem(path: Path) -> str:
    name = path.name
    for suffix in (".abs.gz", ".abs"):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return path.stem


def _read_header_and_body(path) -> tuple[int, int, bytes]:
    gz = is_gzip_path(path)
    opener = gzip.open if gz else open
    with read_errors(path), opener(path, "rb") as f:
        head = f.read(_HEADER_PROBE)
        if not head:
            raise InputError(path, "empty file")
        parts = head.split(b"\n", 3)
        if len(parts) < 4:
            raise InputError(path, "truncated: no data after the 3 header lines")
        text = [p.decode("latin-1") for p in parts[:3]]
        mr, mc = _ROWS.match(text[0]), _COLS.match(text[1])
        if not mr or not mc or not _PIXELS.match(text[2]):
            raise InputError(path, "not an .abs file (header is not 'R rows', "
                                   "'C columns', 'pixels (flag X Y Z):')")
        rows, cols = int(mr.group(1)), int(mc.group(1))
        n = rows * cols
        if n == 0:
            raise InputError(path, f"empty grid ({rows} rows x {cols} columns)")
        header_len = sum(len(p) + 1 for p in parts[:3])
        min_body = 4 * 2 * n - 1  # each value >= 1 character + 1 separator
        max_body = 4 * _MAX_VALUE_CHARS * n + 64
        promise = (f"header promises {rows} x {cols} = {n} points "
                   f"(at least {min_body} bytes of data)")
        if min_body > MAX_FILE_BYTES:
            raise InputError(path, f"{promise}: more than the {MAX_FILE_BYTES} byte limit")
        if not gz:
            size = os.fstat(f.fileno()).st_size
            if size - header_len < min_body:
                raise InputError(path, f"truncated: {promise}, file has {size} bytes")
            if size - header_len > max_body:
                raise InputError(path, f"file has {size} bytes, more than {rows} x {cols} "
                                       f"points can fill")
        chunks, total = [parts[3]], len(parts[3])
        while total <= max_body:
            chunk = f.read(min(1 << 20, max_body + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_body:
            raise InputError(path, f"data is longer than {rows} x {cols} points can fill")
        if total < min_body:
            raise InputError(path, f"truncated: {promise}, data has {total} bytes")
    return rows, cols, b"".join(chunks)


@wraps_input_errors
def read_abs(path: str | os.PathLike) -> AbsGrid:
    """Read an FRGC ``.abs`` or ``.abs.gz`` range grid (format in the module doc).

    Raises InputError for: missing/empty file, bad header, truncated data (checked
    against what R x C promises before reading it), corrupt gzip, a plane whose value
    count differs from R x C, flags other than 0/1, NaN/inf in valid points.
    """
    rows, cols, body = _read_header_and_body(path)
    n = rows * cols
    text = body.decode("latin-1")
    lines = [s for s in text.splitlines() if s.strip()]
    if len(lines) == 4:
        planes = []
        for name, line in zip(_PLANES, lines):
            vals = parse_numbers(line, path, f"{name} line")
            if vals.size != n:
                raise InputError(path, f"{name} line has {vals.size} values, expected "
                                       f"{rows} x {cols} = {n}")
            planes.append(vals)
        data = np.stack(planes)
    else:
        vals = parse_numbers(text, path, "data")
        if vals.size != 4 * n:
            raise InputError(path, f"expected 4 x {rows} x {cols} = {4 * n} values, "
                                   f"found {vals.size}")
        data = vals.reshape(4, n)
    flags = data[0]
    if not np.isin(flags, (0.0, 1.0)).all():
        raise InputError(path, "flags must be 0 or 1")
    xyz = np.ascontiguousarray(data[1:].T).reshape(rows, cols, 3)
    valid = (flags == 1).reshape(rows, cols) & (xyz != INVALID).all(axis=2)
    require_finite(xyz[valid], path, "NaN/inf coordinates in valid points")
    return AbsGrid(xyz, valid)


def parse_frgc_name(path: str | os.PathLike) -> ItemIds:
    """Ids of an FRGC name ``04200d74.abs[.gz]``: subject "04200", session "d74"
    (no expression label: -1).  Raises InputError for other names."""
    stem = _abs_stem(Path(path))
    m = _NAME.match(stem)
    if not m:
        raise NamePatternError(path, "file name does not follow the FRGC pattern <subject>d<n>")
    return ItemIds("frgc", m.group(1), m.group(2), "", label_map("frgc").label_of(""),
                   os.fspath(path))


@wraps_input_errors
def read_abs_scan(path: str | os.PathLike) -> Scan:
    """An FRGC scan: the grid as a mesh (valid points in row-major order,
    ``grid_shape``, ``grid_index``, triangles of :func:`preprocess.io._grid.grid_faces`)
    and per-vertex colours from ``<stem>.ppm`` (or ``.ppm.gz``) beside it when present.
    A colour image whose size differs from the grid is ignored with a note in
    ``extra["warnings"]``.  A name not following the FRGC pattern gives generic ids
    and a warning (:func:`preprocess.io.generic_mesh.ids_or_generic`); the ``.ppm`` is
    still looked up by the same stem.  Raises InputError for bad files or no valid
    point."""
    path = Path(path)
    warnings: list[str] = []
    ids = ids_or_generic(path, parse_frgc_name, warnings)
    grid = read_abs(path)
    vertices, faces, grid_index = grid_mesh(grid.xyz, grid.valid)
    if len(vertices) == 0:
        raise InputError(path, "no valid point (every flag is 0)")
    colors = None
    stem = _abs_stem(path)
    ppm = next((path.with_name(stem + s) for s in (".ppm", ".ppm.gz")
                if path.with_name(stem + s).is_file()), None)
    if ppm is None:
        warnings.append("no .ppm colour image beside the scan: colors=None")
    else:
        img = load_image(ppm)
        if img.shape[:2] != grid.valid.shape:
            warnings.append(f"{ppm.name} is {img.shape[1]}x{img.shape[0]} pixels, the grid "
                            f"is {grid.valid.shape[1]}x{grid.valid.shape[0]}: colors=None")
        else:
            colors = img.reshape(-1, 3)[grid_index]
    return Scan(vertices=vertices, faces=faces, ids=ids, colors=colors,
                grid_shape=grid.valid.shape, grid_index=grid_index,
                texture_name=ppm.name if ppm is not None else "",
                extra={"warnings": warnings})


def write_abs(path: str | os.PathLike, xyz: np.ndarray, valid: np.ndarray,
              gz: bool = False) -> None:
    """Write an ``.abs`` file (gzip-compressed into ``path`` as given when ``gz``;
    byte-stable: no time stamp).  xyz : (R, C, 3) float64 mm, rows top-down; valid :
    (R, C) bool; invalid points get flag 0 and -999999; values with 6 decimals."""
    xyz = np.asarray(xyz, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if xyz.ndim != 3 or xyz.shape[2] != 3 or valid.shape != xyz.shape[:2]:
        raise ValueError(f"shapes xyz {xyz.shape}, valid {valid.shape}")
    rows, cols = valid.shape
    planes = np.where(valid[..., None], xyz, INVALID).reshape(-1, 3).T
    buf = io.StringIO()
    buf.write(f"{rows} rows\n{cols} columns\npixels (flag X Y Z):\n")
    buf.write(" ".join("1" if v else "0" for v in valid.reshape(-1)) + "\n")
    for plane in planes:
        buf.write(" ".join(f"{v:.6f}" for v in plane) + "\n")
    data = buf.getvalue().encode("ascii")
    if gz:
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="",
                                                    mtime=0) as f:
            f.write(data)
    else:
        Path(path).write_bytes(data)
