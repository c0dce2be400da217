"""Helpers shared by the 3-D scan readers: polygon fan triangulation, resolving the
auxiliary files a scan names (textures, materials) safely inside the scan's own
folder, and loading texture images.

Why by hand: fan triangulation of flat polygon lists is a few numpy lines and keeps
the vertex order of the file (mesh libraries re-index); path resolution is a safety
rule of the project (a name inside a file must never reach outside its folder).
"""
from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from data_schema.errors import InputError
from preprocess.io._text import MAX_FILE_BYTES, read_bytes

#: Largest texture image accepted (pixels); real textures are ~1.6 Mpx.
MAX_TEXTURE_PIXELS = 64 * 1024 * 1024


def polygon_offsets(sizes: np.ndarray) -> np.ndarray:
    """(P + 1,) int64 offsets of polygons with the given (P,) corner counts."""
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def fan_triangulate(corners: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Triangles of polygons given as a flat corner list.

    corners : (K,) int64, the corners of all polygons one after the other (vertex or
        texture-coordinate indices).
    offsets : (P + 1,) int64, polygon p is ``corners[offsets[p]:offsets[p + 1]]``;
        every polygon has at least 3 corners (checked by the callers).
    Returns (T, 3) int64 with T = sum(size - 2): polygon (c0, c1, ..., cn-1) becomes
    (c0, c1, c2), (c0, c2, c3), ... in polygon order, keeping the winding.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    sizes = np.diff(offsets)
    ntri = sizes - 2
    total = int(ntri.sum())
    first = np.repeat(offsets[:-1], ntri)
    # k-th triangle of its polygon: k = 0 .. size-3
    k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    idx = np.stack([first, first + k + 1, first + k + 2], axis=1)
    return np.asarray(corners, dtype=np.int64)[idx].reshape(-1, 3)


def resolve_asset(scan_path: str | os.PathLike, name: str) -> Path:
    """Path of a file named inside ``scan_path`` (texture, material), resolved in the
    scan's own folder.

    Raises InputError when ``name`` is absolute (POSIX or Windows, drive letters and
    UNC included) or climbs out of the folder with ``..``.  Subfolders of the scan's
    folder are allowed.  The file need not exist.  The check is on the name, not on
    the file system: symbolic links inside the folder are followed, because DVC may
    check data out as links into its cache.
    """
    if not name or "\x00" in name:
        raise InputError(scan_path, f"invalid auxiliary file name {name!r}")
    win, posix = PureWindowsPath(name), PurePosixPath(name.replace("\\", "/"))
    if win.drive or win.root or posix.is_absolute():
        raise InputError(scan_path, f"absolute path {name!r} outside the scan's folder")
    if ".." in posix.parts:
        raise InputError(scan_path, f"path {name!r} escapes the scan's folder")
    return Path(scan_path).parent.joinpath(*posix.parts)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file (PNG, BMP, JPEG, PPM...; optionally gzipped) as (H, W, 3) uint8 RGB.

    Raises InputError for unreadable, empty or too large images (more than
    ``MAX_TEXTURE_PIXELS``, checked from the header before decoding).
    """
    from PIL import Image

    data = read_bytes(path, MAX_FILE_BYTES)
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            if w * h > MAX_TEXTURE_PIXELS:
                raise InputError(path, f"image is {w}x{h} pixels, more than the "
                                       f"{MAX_TEXTURE_PIXELS} pixel limit")
            if w == 0 or h == 0:
                raise InputError(path, "empty image")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own header check, at 2x its limit
        raise InputError(path, f"image is more than the pixel limit ({e})") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise InputError(path, f"unreadable image ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(rgb)


def texture_or_beside(scan_path: str | os.PathLike, name: str, suffix: str,
                      warnings: list[str]) -> str:
    """The texture file name a scan uses: ``name`` (what the file names) when that file
    is in the scan's folder, else ``<stem><suffix>`` beside the scan when it exists (a
    note in ``warnings`` when ``name`` was given), else ``name`` (then
    :func:`load_texture` notes it missing).  A ``name`` escaping the folder is an
    InputError even when the file beside exists.  Used by the Bosphorus (``.png``: a
    renamed scan whose header names the old stem) and BU-3DFE (``.bmp`` beside the
    ``.wrl``) readers."""
    path = Path(scan_path)
    if name and resolve_asset(path, name).is_file():
        return name
    beside = path.name[:-len(path.suffix)] + suffix
    if beside == name or not path.with_name(beside).is_file():
        return name
    if name:
        warnings.append(f"texture {name!r} not found beside the scan: using {beside!r}")
    return beside


def load_texture(scan_path: str | os.PathLike, name: str,
                 warnings: list[str]) -> np.ndarray | None:
    """The texture image ``name`` that ``scan_path`` names, (H, W, 3) uint8 RGB.

    Documented fallback: when no name is given or the file does not exist, returns
    None and appends the reason to ``warnings``.  A name escaping the folder or an
    unreadable image raises InputError.
    """
    if not name:
        warnings.append("no texture named in the file: texture=None")
        return None
    target = resolve_asset(scan_path, name)
    if not target.is_file():
        warnings.append(f"texture {name!r} not found beside the scan: texture=None")
        return None
    return load_image(target)
