"""Shared helpers of the raw-file readers: bounded reading (plain or gzip), numeric
text tokenising, and the wrapper that turns any stray library error into an
:class:`~data_schema.errors.InputError`.

Why by hand: numpy's text loaders (``loadtxt``/``genfromtxt``) are several times slower
on the million-value lines of FRGC ``.abs`` files and report a bad token without the
file's own words; ``np.fromstring(..., sep=" ")`` is fast but has two quirks handled
here (a whitespace-only string parses as ``[-1.]``; integers overflow silently).
Bounded reading exists so that a gzip bomb or a multi-gigabyte stray file fails with a
clear reason instead of exhausting memory.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import os
import zlib
from typing import Callable, TypeVar

import numpy as np

from data_schema.errors import InputError

#: Largest raw text/compressed-stream size any reader accepts (bytes).  Real files are
#: far smaller (FRGC .abs ~ 15 MB, BU-3DFE RAW .wrl ~ 5 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024

_CHUNK = 1 << 20

F = TypeVar("F", bound=Callable)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


class NamePatternError(InputError):
    """A file name does not follow its dataset's naming pattern.

    Raised by the dataset name parsers (``parse_bosphorus_name``...) so that a reader
    can tell "not named like this dataset" (read it as a generic scan, with a warning:
    :func:`preprocess.io.generic_mesh.ids_or_generic`) from a name that follows the
    pattern with a wrong code (a plain InputError: most likely a typo in a labelled
    file, whose label must not silently become -1)."""


def is_gzip_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in ``.gz`` (case-insensitive)."""
    return os.fspath(path).lower().endswith(".gz")


@contextlib.contextmanager
def read_errors(path: str | os.PathLike):
    """Inside the block, a missing file, a corrupt or truncated gzip stream or another OS
    error becomes an InputError naming ``path`` (InputErrors pass through)."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(path, f"corrupt or truncated gzip stream ({e})") from None
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES,
               gz: bool | None = None) -> bytes:
    """Whole content of a file, gunzipped when ``gz`` (default: when the name ends in
    ``.gz``), never more than ``max_bytes`` bytes.

    Raises InputError for a missing/unreadable file, an empty file, a corrupt or
    truncated gzip stream, or content larger than ``max_bytes``.
    """
    gz = is_gzip_path(path) if gz is None else gz
    with read_errors(path):
        if not gz:
            size = os.stat(path).st_size
            if size > max_bytes:
                raise InputError(path, f"file is {_mib(size)}, more than the "
                                       f"{_mib(max_bytes)} limit")
            with open(path, "rb") as f:
                # never ask for more than the file holds: read(n) reserves n bytes first
                data = f.read(min(os.fstat(f.fileno()).st_size, max_bytes) + 1)
        else:
            parts, total = [], 0
            with gzip.open(path, "rb") as f:
                while True:
                    chunk = f.read(min(_CHUNK, max_bytes + 1 - total))
                    if not chunk:
                        break
                    parts.append(chunk)
                    total += len(chunk)
                    if total > max_bytes:
                        raise InputError(path, f"gzip stream decompresses to more than the "
                                               f"{_mib(max_bytes)} limit")
            data = b"".join(parts)
    if len(data) > max_bytes:  # file grew while reading
        raise InputError(path, f"file is more than the {_mib(max_bytes)} limit")
    if not data:
        raise InputError(path, "empty file")
    return data


def decode_text(data: bytes, path: str | os.PathLike) -> str:
    """Bytes to str: UTF-8 (BOM dropped), falling back to Latin-1 (every byte maps),
    which is what the old Windows tools behind these datasets wrote."""
    if b"\x00" in data[:4096]:
        raise InputError(path, "binary data where a text file was expected (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES,
              gz: bool | None = None) -> str:
    """Text content of a (possibly gzipped) file; see :func:`read_bytes`, :func:`decode_text`."""
    return decode_text(read_bytes(path, max_bytes, gz), path)


def nonblank_lines(text: str) -> list[str]:
    """Lines stripped of surrounding whitespace (CR of CRLF included), blank ones dropped."""
    return [s for s in (line.strip() for line in text.splitlines()) if s]


def line_token_counts(lines: list[str]) -> np.ndarray:
    """(len(lines),) int64: number of whitespace-separated tokens on each line (lines
    must not contain newlines).  Vectorised on the characters, so that a 100k-line
    file costs milliseconds instead of one ``split`` per line."""
    if not lines:
        return np.zeros(0, np.int64)
    b = np.frombuffer("\n".join(lines).encode("utf-8"), dtype=np.uint8)
    sep = b <= 32  # space, tab, CR, LF and other control characters
    start = ~sep
    start[1:] &= sep[:-1]
    line = np.cumsum(b == 10)
    return np.bincount(line[start], minlength=len(lines)).astype(np.int64)


def _first_bad_token(text: str, dtype) -> str:
    conv = int if np.issubdtype(dtype, np.integer) else float
    for tok in text.split():
        try:
            conv(tok)
        except ValueError:
            return tok
    return ""


def parse_numbers(text: str, path: str | os.PathLike, what: str,
                  dtype=np.float64) -> np.ndarray:
    """Whitespace-separated numbers of ``text`` as a 1-D array of ``dtype``.

    ``what`` names the list in error messages (``"vertex coordinates"``).  A token
    that is not a number of that kind raises InputError quoting it; NaN/inf are
    returned as parsed (callers check finiteness where it matters); integers outside
    the int64 range are an error.
    """
    dtype = np.dtype(dtype)
    if not text.strip():
        return np.empty(0, dtype)
    try:
        values = np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:
        bad = _first_bad_token(text, dtype)
        kind = "an integer" if dtype.kind in "iu" else "a number"
        raise InputError(path, f"{what}: {bad[:40]!r} is not {kind}") from None
    if dtype.kind in "iu" and values.size and (
            values.max() == np.iinfo(dtype).max or values.min() == np.iinfo(dtype).min):
        raise InputError(path, f"{what}: integer out of range")
    return values


def parse_row(line: str, path: str | os.PathLike, what: str, n: int) -> np.ndarray:
    """Exactly ``n`` numbers from one line, (n,) float64; InputError quoting the line
    otherwise."""
    toks = line.split()
    try:
        if len(toks) != n:
            raise ValueError
        return np.array([float(t) for t in toks])
    except ValueError:
        raise InputError(path, f"{what}: expected {n} numbers, got {line.strip()[:60]!r}") from None


def require_finite(values: np.ndarray, path: str | os.PathLike, what: str) -> None:
    """InputError when ``values`` holds NaN or inf."""
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InputError(path, f"{what}: {bad} NaN/inf value(s)")


def wraps_input_errors(func: F) -> F:
    """Decorator for readers ``f(path, ...)``: InputErrors pass through; any other
    exception from a library (numpy, struct, PIL, trimesh, zipfile...) becomes an
    InputError naming the file, so no raw library error escapes a reader."""

    @functools.wraps(func)
    def wrapper(path, *args, **kwargs):
        try:
            return func(path, *args, **kwargs)
        except InputError:
            raise
        except MemoryError:
            raise InputError(path, "out of memory while reading") from None
        except Exception as e:  # noqa: BLE001 - the point is to wrap everything
            raise InputError(path, f"unreadable ({type(e).__name__}: {e})") from e

    return wrapper  # type: ignore[return-value]
