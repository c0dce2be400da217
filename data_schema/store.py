"""Sharded, atomic, byte-stable HDF5 stores and their validating reader.

A store is a directory::

    <store>/index.json          schema, params, shards and their items (written last)
    <store>/<shard>.h5          N items each (see data_schema.schemas)
    <store>/failures.jsonl      per-item errors of the stage that wrote the store

Writing: each shard goes to ``.<shard>.h5.tmp-<pid>``, is flushed and fsynced, then
renamed over ``<shard>.h5`` (POSIX rename is atomic), so a reader never sees half a
shard; the index is replaced the same way after all shards.  Bytes are stable: no
timestamps (``track_times=False``), fixed chunk shapes, fixed gzip level, items and
attributes written in a deterministic order, and the HDF5 file format pinned with
``libver``.  Reading validates schema name and version, required attributes, and each
shard's sha256 against the index.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from data_schema.errors import SchemaError
from data_schema.hash_cache import cached_sha256, file_sha256
from data_schema.schemas import (
    ITEM_FIELDS,
    REQUIRED_ATTRS,
    STR,
    DatasetSpec,
    StoreSchema,
    get_schema,
)

INDEX = "index.json"
FAILURES = "failures.jsonl"
GZIP_LEVEL = 4
#: One-row chunks of at least this many bytes, in datasets of at least this many rows,
#: are compressed in threads (:func:`_write_chunks`); smaller ones are not worth a pool.
PARALLEL_MIN_CHUNK_BYTES = 16384
PARALLEL_MIN_CHUNKS = 4
LIBVER = ("v110", "v110")
_STR_DTYPE = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class ItemMeta:
    """Identity of one stored item (mirrors ``ITEM_FIELDS``)."""

    key: str
    dataset: str
    subject: str
    session: str
    expression: str
    label: int
    source: str
    source_sha256: str
    format: str


@dataclass(frozen=True)
class ItemRecord:
    """One item to write: its identity and its arrays by dataset name.  Ragged data are
    (n_i, *shape); per-item data have the dataset's shape."""

    meta: ItemMeta
    arrays: Mapping[str, np.ndarray]


def shard_file_name(key: str) -> str:
    """A filesystem-safe shard file name for a shard key."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") + ".h5"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: "Callable[[object], None]") -> Path:
    """Create ``path`` atomically: ``write(binary file)`` fills a temporary file in the
    same folder, which is fsynced and renamed over ``path`` (removed if ``write``
    fails), so a reader never sees half a file.  Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, fsync, rename.  A file that
    already holds exactly ``data`` is left alone (a rerun that changed nothing does not
    touch the store's index, and pays no fsync)."""
    try:
        if os.path.getsize(path) == len(data) and Path(path).read_bytes() == data:
            return
    except OSError:  # absent or unreadable: write it
        pass
    atomic_write(path, lambda fh: fh.write(data))


def _as_dtype(spec: DatasetSpec):
    return _STR_DTYPE if spec.dtype == STR else np.dtype(spec.dtype)


def _check_array(spec: DatasetSpec, arr: np.ndarray, where: str) -> np.ndarray:
    if spec.dtype == STR:
        obj = np.asarray(arr, dtype=object)
        return np.asarray([str(s) for s in obj.ravel()], dtype=object).reshape(obj.shape)
    arr = np.asarray(arr)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise SchemaError(f"{where}: dataset {spec.name!r} holds NaN or inf; stores never do")
    if arr.dtype.kind in "iu" and np.dtype(spec.dtype).kind in "iu" and arr.size:
        info = np.iinfo(np.dtype(spec.dtype))
        if arr.min() < info.min or arr.max() > info.max:
            raise SchemaError(f"{where}: dataset {spec.name!r} values exceed {spec.dtype}")
    return arr.astype(spec.dtype, copy=False)


def _row_shape(spec: DatasetSpec, arr: np.ndarray, sizes: dict, where: str) -> tuple:
    tail = arr.shape[1:] if spec.ragged else arr.shape
    if len(tail) != len(spec.shape):
        raise SchemaError(f"{where}: dataset {spec.name!r} has row shape {tail}, schema says {spec.shape}")
    for got, want in zip(tail, spec.shape):
        if isinstance(want, str):
            if sizes.setdefault(want, got) != got:
                raise SchemaError(f"{where}: dataset {spec.name!r} dim {want}={got} differs from "
                                  f"{sizes[want]} elsewhere in the shard")
        elif got != want:
            raise SchemaError(f"{where}: dataset {spec.name!r} has row shape {tail}, schema says {spec.shape}")
    return tuple(tail)


def _create(h5: h5py.File, spec: DatasetSpec, data: np.ndarray, row_shape: tuple) -> None:
    n = len(data)
    chunk_rows = max(1, min(spec.chunk_rows, n)) if n else 1
    kwargs = dict(track_times=False)
    if n:
        kwargs["chunks"] = (chunk_rows,) + row_shape
        if spec.compression == "gzip":
            kwargs.update(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)
    shape = (n,) + row_shape
    ds = h5.create_dataset(spec.name, shape=shape, dtype=_as_dtype(spec), maxshape=shape, **kwargs)
    if n and _compress_in_threads(spec, data, chunk_rows):
        _write_chunks(ds, data)
    elif n:
        ds[...] = data


def _compress_in_threads(spec: DatasetSpec, data: np.ndarray, chunk_rows: int) -> bool:
    return (spec.compression == "gzip" and chunk_rows == 1 and data.dtype != object
            and len(data) >= PARALLEL_MIN_CHUNKS
            and data[0].nbytes >= PARALLEL_MIN_CHUNK_BYTES and (os.cpu_count() or 1) > 1)


def shuffle_deflate(row: np.ndarray) -> bytes:
    """The bytes HDF5's shuffle + deflate filters store for one chunk holding ``row``:
    byte k of every element grouped together (HDF5's shuffle; a no-op for 1-byte
    elements), then zlib at GZIP_LEVEL (HDF5's deflate calls zlib's ``compress2``)."""
    b = np.ascontiguousarray(row).reshape(-1).view(np.uint8)
    size = row.dtype.itemsize
    if size > 1:
        b = b.reshape(-1, size).T
    return zlib.compress(np.ascontiguousarray(b).tobytes(), GZIP_LEVEL)


def _write_chunks(ds: h5py.Dataset, data: np.ndarray) -> None:
    """Write one-row chunks compressed by a thread pool (zlib releases the GIL), as raw
    chunks in row order: the same file bytes as ``ds[...] = data`` (tested), faster on
    more than one core (``benchmarks/bench_store.py``: 1.8x on 2 cores)."""
    from concurrent.futures import ThreadPoolExecutor

    zeros = (0,) * (data.ndim - 1)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        for i, chunk in enumerate(pool.map(shuffle_deflate, data)):
            ds.id.write_direct_chunk((i,) + zeros, chunk)


def _OFFSETS_SPEC(name: str) -> DatasetSpec:
    return DatasetSpec(f"offsets/{name}", "int64", (), False, 4096, "gzip", "row", f"item i owns rows offsets[i]:offsets[i+1] of {name}")


def write_shard(path: str | os.PathLike, schema: StoreSchema, items: Sequence[ItemRecord],
                params: Mapping, stage: str) -> str:
    """Write one shard atomically; return its sha256.

    Items are written in the order given (callers sort them); every dataset of the
    schema must be present in every item (ragged ones may have 0 rows).
    Raises SchemaError on a missing/extra dataset, a wrong shape, NaN/inf, or a dtype
    overflow, before anything is renamed into place.
    """
    path = Path(path)
    where = f"{schema.name} shard {path.name}"
    names = {d.name for d in schema.datasets}
    sizes: dict = {}
    columns: dict[str, list[np.ndarray]] = {d.name: [] for d in schema.datasets}
    row_shapes: dict[str, tuple] = {}
    for rec in items:
        extra = set(rec.arrays) - names
        missing = names - set(rec.arrays)
        if extra or missing:
            raise SchemaError(f"{where}: item {rec.meta.key}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for spec in schema.datasets:
            arr = _check_array(spec, rec.arrays[spec.name], f"{where}: item {rec.meta.key}")
            row_shapes[spec.name] = _row_shape(spec, arr, sizes, f"{where}: item {rec.meta.key}")
            columns[spec.name].append(arr)

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", libver=LIBVER, track_order=False) as h5:
            h5.attrs["schema"] = schema.name
            h5.attrs["schema_version"] = schema.version
            h5.attrs["params"] = json.dumps(params, sort_keys=True)
            h5.attrs["stage"] = stage
            h5.attrs["n_items"] = len(items)
            for k in sorted(schema.attrs):
                h5.attrs[k] = schema.attrs[k]
            for spec in ITEM_FIELDS:
                attr = spec.name.split("/", 1)[1]
                vals = [getattr(r.meta, attr) for r in items]
                data = np.asarray(vals, dtype=object if spec.dtype == STR else spec.dtype)
                _create(h5, spec, data, ())
            for spec in schema.datasets:
                parts = columns[spec.name]
                if spec.ragged:
                    counts = [len(p) for p in parts]
                    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
                    _create(h5, _OFFSETS_SPEC(spec.name), offsets, ())
                tail = tuple(sizes.get(s, s) for s in spec.shape)
                if any(isinstance(t, str) for t in tail):  # no item fixed a free size
                    tail = tuple(0 if isinstance(t, str) else t for t in tail)
                empty = np.zeros((0,) + tail, object if spec.dtype == STR else spec.dtype)
                join = np.concatenate if spec.ragged else np.stack
                _create(h5, spec, join(parts) if parts else empty, tail)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = file_sha256(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return digest
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass(frozen=True)
class ShardEntry:
    """One shard as the index lists it.  ``cache_ids`` / ``cache_keys`` (aligned with
    ``items``) let the next run of the stage reuse unchanged items (pipeline.cache)."""

    file: str
    sha256: str
    items: tuple[str, ...]
    cache_ids: tuple[str, ...] = ()
    cache_keys: tuple[str, ...] = ()


def write_index(root: str | os.PathLike, schema: StoreSchema, params: Mapping, stage: str,
                shards: Sequence[ShardEntry]) -> None:
    """Replace ``index.json`` atomically and remove shard files no longer listed."""
    root = Path(root)
    shards = sorted(shards, key=lambda s: s.file)
    doc = {
        "schema": schema.name,
        "schema_version": schema.version,
        "stage": stage,
        "params": params,
        "n_items": sum(len(s.items) for s in shards),
        "shards": [{"file": s.file, "sha256": s.sha256, "items": list(s.items),
                    **({"cache_ids": list(s.cache_ids), "cache_keys": list(s.cache_keys)} if s.cache_keys else {})}
                   for s in shards],
    }
    atomic_write_bytes(root / INDEX, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    keep = {s.file for s in shards}
    for p in root.glob("*.h5"):
        if p.name not in keep:
            p.unlink()
    for p in root.glob(".*.tmp-*"):  # leftovers of a killed writer
        p.unlink()


def write_failures(root: str | os.PathLike, failures: Sequence[Mapping]) -> None:
    """``failures.jsonl``: one JSON object per failed item (item, stage, error, message),
    sorted by item, written atomically."""
    lines = [json.dumps(dict(f), sort_keys=True) for f in sorted(failures, key=lambda f: (f["item"], f["stage"]))]
    atomic_write_bytes(Path(root) / FAILURES, ("\n".join(lines) + ("\n" if lines else "")).encode())


def read_failures(root: str | os.PathLike) -> list[dict]:
    p = Path(root) / FAILURES
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def open_shard(path: str | os.PathLike, **kwargs) -> h5py.File:
    """Open a shard read-only; a file HDF5 cannot open (truncated, garbage, not a file)
    raises SchemaError naming it.  ``kwargs`` go to ``h5py.File`` (e.g. ``rdcc_nbytes``)."""
    try:
        return h5py.File(path, "r", **kwargs)
    except OSError as exc:
        raise SchemaError(f"{os.fspath(path)}: not a readable HDF5 shard ({exc})") from None


def read_index(root: str | os.PathLike, schemas: Sequence[str] | None = None) -> tuple[dict, StoreSchema]:
    """A store's ``index.json`` and its schema, checked for name (one of ``schemas``
    when given) and version, without opening any shard.  Raises SchemaError."""
    root = Path(root)
    idx = root / INDEX
    if not root.is_dir():
        raise SchemaError(f"{root}: not a store (no such directory)")
    if not idx.exists():
        raise SchemaError(f"{root}: not a store (no {INDEX})")
    try:
        doc = json.loads(idx.read_text())
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{idx}: unreadable index: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shards"), list):
        raise SchemaError(f"{idx}: not a store index (a JSON object with a 'shards' list)")
    name, version = doc.get("schema"), doc.get("schema_version")
    if schemas is not None and name not in schemas:
        raise SchemaError(f"{root}: store has schema {name!r}, expected {' or '.join(repr(x) for x in schemas)}")
    try:
        schema = get_schema(name)
    except KeyError as exc:
        raise SchemaError(f"{root}: {exc.args[0]}") from None
    if version != schema.version:
        raise SchemaError(f"{root}: schema {name} version {version}, this fermaps reads "
                          f"version {schema.version}; regenerate the store")
    return doc, schema


class Store:
    """Read access to a store; validates on open.

    ``Store(root, schema="raw_mesh")`` raises SchemaError when the index is missing or
    unreadable, names another schema or version, lists a shard that is missing or whose
    sha256 differs, or a shard's attributes disagree with the index.
    """

    def __init__(self, root: str | os.PathLike, schema: str | None = None, verify: bool = True):
        self.root = Path(root)
        self.index, self.schema = read_index(self.root, None if schema is None else (schema,))
        name, version = self.schema.name, self.schema.version
        self.params = self.index.get("params", {})
        self._where: dict[str, tuple[str, int]] = {}
        for sh in self.index["shards"]:
            p = self.root / sh["file"]
            if not p.exists():
                raise SchemaError(f"{p}: shard listed in the index is missing")
            if verify and cached_sha256(p) != sh["sha256"]:
                raise SchemaError(f"{p}: shard content differs from the index (sha256); the store is corrupt")
            with open_shard(p) as h5:
                for attr in REQUIRED_ATTRS:
                    if attr not in h5.attrs:
                        raise SchemaError(f"{p}: missing required attribute {attr!r}")
                if h5.attrs["schema"] != name or int(h5.attrs["schema_version"]) != version:
                    raise SchemaError(f"{p}: shard schema {h5.attrs['schema']} v{h5.attrs['schema_version']} "
                                      f"differs from the index ({name} v{version})")
            for i, key in enumerate(sh["items"]):
                self._where[key] = (sh["file"], i)

    @property
    def keys(self) -> list[str]:
        return sorted(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def shard_files(self) -> list[Path]:
        return [self.root / sh["file"] for sh in self.index["shards"]]

    def metas(self) -> Iterator[ItemMeta]:
        """Identity of every item, in index order, without reading any array."""
        for path in self.shard_files():
            with h5py.File(path, "r") as h5:
                cols = {spec.name.split("/", 1)[1]: h5[spec.name][()] for spec in ITEM_FIELDS}
            for i in range(len(cols["key"])):
                yield ItemMeta(**{k: int(v[i]) if k == "label" else v[i].decode() for k, v in cols.items()})

    def read(self, key: str) -> tuple[ItemMeta, dict[str, np.ndarray]]:
        """Item identity and every dataset's value for one item."""
        try:
            file, i = self._where[key]
        except KeyError:
            raise KeyError(f"{self.root}: no item {key!r}") from None
        return read_shard_item(self.root / file, self.schema, i)

    def iter_items(self) -> Iterator[tuple[ItemMeta, dict[str, np.ndarray]]]:
        """Every item, shard by shard, in index order (one shard open at a time)."""
        for sh in self.index["shards"]:
            with h5py.File(self.root / sh["file"], "r") as h5:
                for i in range(len(sh["items"])):
                    yield _read_item(h5, self.schema, i)


def read_shard_item(path: str | os.PathLike, schema: StoreSchema, i: int) -> tuple[ItemMeta, dict[str, np.ndarray]]:
    """Item ``i`` of one shard, without validating the whole store (for workers that
    were handed a shard that the main process already validated)."""
    with h5py.File(path, "r") as h5:
        return _read_item(h5, schema, i)


def _decode(spec_dtype: str, value):
    if spec_dtype != STR:
        return value
    arr = np.asarray(value, dtype=object)
    return np.asarray([v.decode() if isinstance(v, bytes) else v for v in arr.ravel()], dtype=object).reshape(arr.shape)


def _read_item(h5: h5py.File, schema: StoreSchema, i: int) -> tuple[ItemMeta, dict[str, np.ndarray]]:
    meta = {}
    for spec in ITEM_FIELDS:
        v = h5[spec.name][i]
        meta[spec.name.split("/", 1)[1]] = v.decode() if isinstance(v, bytes) else (int(v) if spec.dtype == "int64" else v)
    arrays = {}
    for spec in schema.datasets:
        if spec.ragged:
            off = h5[f"offsets/{spec.name}"]
            a, b = int(off[i]), int(off[i + 1])
            arrays[spec.name] = _decode(spec.dtype, h5[spec.name][a:b])
        else:
            arrays[spec.name] = _decode(spec.dtype, h5[spec.name][i])
    return ItemMeta(**{f.name: meta[f.name] for f in fields(ItemMeta)}), arrays
