"""Image-folder sequences: frame listing by frame number, safe lazy decoding into
(H, W, 3) uint8 RGB, and the writers' input checks (shared by CK+ and Oulu-CASIA).

PIL does the decoding; the checks around it are ours because PIL trusts the header: a
frame whose header promises more pixels than the file can hold, or than
``MAX_FRAME_PIXELS``, is rejected before anything is allocated.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from data_schema.errors import InputError
from preprocess.io._text import wraps_input_errors

# Largest frame accepted (pixels): far above any FER camera, below PIL's own
# decompression-bomb limit, so a hostile header fails here with a clear reason.
MAX_FRAME_PIXELS = 1 << 26
# Decoded bytes per file byte that a compressed image can reach: deflate tops out near
# 1032:1 and baseline JPEG near 1000:1 per RGB byte; anything beyond is a lying header.
_MAX_EXPANSION = 4096

_IMAGE_FORMATS = ("PNG", "JPEG")
_FRAME_NUMBER = re.compile(r"(\d+)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def has_image(filenames, suffixes: tuple[str, ...]) -> bool:
    """True when any of ``filenames`` (names or paths) ends with one of ``suffixes``
    (lower-case, compared case-insensitively)."""
    return any(os.fspath(f).lower().endswith(suffixes) for f in filenames)


def list_frame_files(folder: str | os.PathLike, suffixes: tuple[str, ...]) -> list[Path]:
    """Image files of a sequence folder, sorted by frame number.

    The frame number is the run of digits that ends the file stem
    (``S005_001_00000011.png`` -> 11, ``000.jpeg`` -> 0); files with other suffixes
    are ignored.  Raises InputError when the folder holds no image, when an image
    name carries no frame number, or when two images claim the same frame number.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    numbered: dict[int, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise InputError(folder, f"cannot list folder: {e.strerror or e}") from None
    for entry in entries:
        if not entry.name.lower().endswith(suffixes) or not entry.is_file():
            continue
        m = _FRAME_NUMBER.search(Path(entry.name).stem)
        if m is None:
            raise InputError(entry.path, "image name has no frame number")
        k = int(m.group(1))
        if k in numbered:
            raise InputError(entry.path, f"frame number {k} also used by {numbered[k].name}")
        numbered[k] = Path(entry.path)
    if not numbered:
        raise InputError(folder, f"no images ({', '.join(suffixes)}) in sequence folder")
    return [numbered[k] for k in sorted(numbered)]


@wraps_input_errors
def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file into ``(H, W, 3) uint8`` RGB.

    Only PNG and JPEG are recognised (by content, whatever the suffix): PIL would
    otherwise hand an EPS file to Ghostscript.  Grayscale, palette and RGBA images are
    converted (alpha dropped); 16-bit grayscale is scaled to 8 bits (``round(v / 257)``).
    Raises InputError naming the file when it cannot be decoded (garbage, truncated,
    another format), when its header promises more pixels than ``MAX_FRAME_PIXELS`` or
    than the file size can hold, or for float images.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise InputError(path, "empty file")
        with Image.open(path, formats=_IMAGE_FORMATS) as im:
            w, h = im.size
            if w * h > MAX_FRAME_PIXELS:
                raise InputError(path, f"image too large: {w} x {h} pixels "
                                       f"(limit {MAX_FRAME_PIXELS})")
            if w * h * len(im.getbands()) > _MAX_EXPANSION * size:
                raise InputError(path, f"header promises {w} x {h} pixels but the file has "
                                       f"only {size} bytes (truncated or corrupt)")
            im.load()
            mode = im.mode
            if mode.startswith("I"):  # 16/32-bit integer grayscale
                a = np.asarray(im, dtype=np.float64)
                gray = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            if mode == "F":
                raise InputError(path, "float images are not supported")
            rgb = im if mode == "RGB" else im.convert("RGB")
            return np.array(rgb, dtype=np.uint8)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Image.DecompressionBombError as e:
        raise InputError(path, f"image too large: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        # PIL reports truncation as OSError("image file is truncated ...") and unknown
        # data as UnidentifiedImageError (an OSError); SyntaxError/EOFError come from
        # broken headers of some plugins.
        raise InputError(path, f"cannot decode image: {e}") from None


def image_frames(paths: tuple[Path, ...]) -> Iterator[np.ndarray]:
    """Frames of an image sequence, decoded one at a time: (H, W, 3) uint8 RGB each.

    Nothing is opened before the first ``next``; a corrupt file raises InputError
    (naming that file) when its turn comes.
    """
    for p in paths:
        yield read_image_rgb(p)


def check_frame_stack(frames) -> np.ndarray:
    """Writers' input check: ``(T, H, W)`` or ``(T, H, W, 3)`` uint8 with T >= 1.

    Returns the frames as an ndarray; raises ValueError (a caller bug, not bad input).
    """
    a = np.asarray(frames)
    if a.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {a.dtype}")
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[3] == 3)):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 3), got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
        raise ValueError(f"frames must hold at least one non-empty frame, got {a.shape}")
    return a


def check_folder_name(what: str, name: str) -> str:
    """Writers' check that ``name`` is one plain folder name (no separators, no ``..``)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"{what} must be a plain folder name, got {name!r}")
    return name
