"""torch Datasets over the fermaps HDF5 stores, and a seeded DataLoader factory.

* :class:`MapsDataset` - one 3-D scan per sample from a ``maps_clean`` (or ``maps``)
  store, optionally with its FFNet-M masks from a ``masks`` store, named as the model's
  ``input_spec`` wants (AMDFN: ``"maps"``; FFNet-M: ``"depth"``, ``"normals"``,
  ``"texture"``, ``"mask56"``, ``"mask28"``).
* :class:`SequenceDataset` - one face sequence per sample from an ``aligned_frames``
  store, frames picked by :mod:`preprocess.frame_sampling` for STCAM, HACN or WS-LGAN.
* :class:`InMemoryDataset` - the same samples held in RAM (the loader benchmark's
  baseline).
* :func:`make_loader` - a DataLoader whose shuffling and workers are seeded.

How the stores are read
-----------------------

``__init__`` reads only each store's ``index.json`` (schema name and version checked,
item key -> shard file and row); it never opens an HDF5 file.  Files are opened on first
use by the process that reads them and kept open in a cache keyed by the process id, so
a DataLoader worker (forked or spawned) opens its own handles and never uses one that
was opened in the parent (HDF5 handles must not cross a fork).  When a shard is first
opened its schema attributes and its ``ids/key`` column are compared with the index
(SchemaError on a mismatch: the index and the shard belong to different runs).  Every
read is by row index, and every per-sample dataset of the stores is chunked one sample
per chunk, so a sample costs one chunk read (one decompression) per dataset it needs;
a sequence reads only the frames the protocol picks (one chunk per frame).
:func:`make_loader` reads a MapsDataset a batch at a time (``read_batch``): each
unfiltered row is copied from a read-only memory map of its shard (at the chunk offset
HDF5's index gives) straight into its slot of the batch tensors, which in a worker are
allocated in shared memory, so a sample is copied once on its way to the main process;
a row is checked for NaN / inf once per process (store / RAM throughput 0.96-1.05 in
``benchmarks/bench_loader.py``).  A process that reads a shard for the first time
page-faults its rows in (``bench_loader``: 1.55x the time of ``pread``, in one run);
from its second epoch on the copy runs at memory speed, so keep the reading process
alive: ``workers=0`` (the training process) or persistent workers (the train stage's
choice for map datasets).  Labels come
from the shard's ``ids/label`` column (read once when the shard is opened, like the
``ids/key`` column the check reads), optionally remapped through ``label_map`` (the
split manifest's store label -> protocol class index).

Randomness
----------

A training sample's random draws (STCAM jitter, HACN segment frames, the WS-LGAN frame)
come from ``numpy.random.default_rng([seed, epoch, index])``: the same sample in the same
epoch is identical whichever worker reads it and however many workers there are; call
``set_epoch(e)`` before each epoch for fresh draws (workers are re-created per epoch
unless the loader is persistent).  :func:`make_loader` seeds the shuffling from ``seed``
and seeds numpy / ``random`` in each worker from torch's per-worker seed, which the
DataLoader derives from the same generator.

Why by hand: torch has no HDF5 dataset, and the per-process handle cache, the index-only
construction and the protocol-specific frame picking are what make these fork-safe and
cheap; h5py does the reading and decompression.
"""
from __future__ import annotations

import math
import mmap
import os
import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from data_schema.channels import CHANNELS
from data_schema.errors import InputError, SchemaError
from data_schema.store import open_shard, read_index
from preprocess.frame_sampling import (
    HACN_K,
    STCAM_K,
    STCAM_PEAK,
    WSLGAN_SIZE,
    hacn_segments,
    stcam_indices,
    stcam_jitter,
    wslgan_last3,
    wslgan_view,
)

__all__ = ["InMemoryDataset", "MapsDataset", "SequenceDataset", "in_stored_order", "make_loader", "MAP_INPUTS",
           "SEQUENCE_PROTOCOLS"]

#: Map channels of each FFNet-M input (AMDFN's ``"maps"`` takes the chosen channels).
MAP_INPUTS: Mapping[str, tuple[str, ...]] = {
    "depth": ("D",), "normals": ("Nx", "Ny", "Nz"), "texture": ("R", "G", "B")}
#: FFNet-M inputs read from the masks store (same dataset names there).
_MASK_INPUTS = ("mask56", "mask28")
#: Shards one process keeps open at most (least recently used closed first), far below
#: the usual 1024 open-file limit even with maps and masks open side by side.
MAX_OPEN_SHARDS = 256
SEQUENCE_PROTOCOLS = ("stcam", "hacn", "wslgan")
_ALL = tuple(range(len(CHANNELS)))
#: Default STCAM jitter, frames (the paper gives no size).
STCAM_MAX_SHIFT = 2


# ------------------------------------------------------------------ store access

class _StoreIndex:
    """Key -> (shard path, row) of one store, from its ``index.json`` only."""

    def __init__(self, root: str | os.PathLike, schemas: Sequence[str]):
        self.root = Path(root)
        doc, self.schema = read_index(self.root, schemas)
        self.shard_items: dict[str, tuple[str, ...]] = {}
        self.where: dict[str, tuple[str, int]] = {}
        for sh in doc["shards"]:
            file = str(self.root / sh["file"])
            self.shard_items[file] = tuple(sh["items"])
            for row, key in enumerate(sh["items"]):
                self.where[key] = (file, row)

    def locate(self, keys: Sequence[str]) -> list[tuple[str, int]]:
        missing = [k for k in keys if k not in self.where]
        if missing:
            raise KeyError(f"{self.root}: {len(missing)} item(s) not in the store, e.g. {missing[:3]}")
        return [self.where[k] for k in keys]


class _Shard:
    """One open shard: the file, its datasets looked up once, its label column."""

    def __init__(self, path: str, index: _StoreIndex):
        # No chunk cache: a sample is read once per epoch, so h5py's default cache (8 MiB
        # per open dataset) would only hold whole shards in every worker's memory.
        self.h5 = open_shard(path, rdcc_nbytes=0)
        self.path = path
        self._map: mmap.mmap | None = None
        self.bytes: np.ndarray | None = None
        try:
            _check_shard(self.h5, path, index)
            # the item-id column is a few bytes per item: read once, not per sample
            self.labels = np.asarray(self.h5["ids/label"][()], dtype=np.int64)
            # raw rows are copied out of this process's own read-only map of the file
            with open(path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.bytes = np.frombuffer(self._map, np.uint8)
        except BaseException:
            self.h5.close()
            raise
        self._datasets: dict[str, h5py.Dataset] = {}
        self._whole_row_chunks: dict[str, _RowPlan | None] = {}
        self._row_shapes: dict[str, tuple[int, ...]] = {}

    def close(self) -> None:
        self.h5.close()
        self.bytes = None  # the only view of the map: it can close now
        if self._map is not None:
            self._map.close()
            self._map = None

    def __getitem__(self, name: str) -> h5py.Dataset:
        ds = self._datasets.get(name)
        if ds is None:  # an h5py name lookup costs tens of microseconds: do it once
            ds = self._datasets[name] = self.h5[name]
            self._whole_row_chunks[name] = _one_row_per_chunk(ds)
            self._row_shapes[name] = tuple(ds.shape[1:])
        return ds

    def row_shape(self, name: str) -> tuple[int, ...]:
        """The shape of one row of dataset ``name``."""
        self[name]
        return self._row_shapes[name]

    def row(self, name: str, i: int) -> np.ndarray:
        """Row ``i`` of dataset ``name`` (shape ``ds.shape[1:]``, its dtype), read by
        :meth:`read_into` into a new array."""
        ds = self[name]
        plan = self._whole_row_chunks[name]
        return self.read_into(name, i, np.empty(self._row_shapes[name], plan.dtype if plan else ds.dtype))

    def read_into(self, name: str, i: int, dest: np.ndarray, start: int = 0,
                  key: str | None = None) -> np.ndarray:
        """Planes ``start : start + len(dest)`` (along the row's first axis) of row ``i`` of
        dataset ``name`` into ``dest`` (the whole row when ``dest`` has the row's shape
        and ``start`` is 0), e.g. channels 5..7 of a (8, H, W) maps row straight into a
        batch tensor's slot; returns ``dest``.  With ``key`` (the item's key, for the
        message) the values are checked for NaN / inf (:func:`_finite`): a raw row once
        per process, as a whole (the file does not change while it is open), anything
        else on every read.

        The stores chunk per-sample datasets one row per chunk, so an unfiltered row is one
        raw chunk: its bytes, at the file offset HDF5's chunk index gave when the dataset
        was first used (:func:`_one_row_per_chunk`), are copied straight into ``dest`` out
        of a read-only memory map of the shard.  This skips h5py's selection machinery and
        HDF5's chunk lookup, which cost more than the copy for one sample
        (``benchmarks/bench_loader.py`` prints the ratio against h5py indexing); once a
        process has touched a row's pages, the copy runs at memory speed, about twice as
        fast as ``pread`` of the same bytes (``bench_loader`` prints the ratio: 2.0 in one run).
        The shards are never modified in place (written once, renamed into place), so the
        offsets stay valid while the file is open; a chunk that would end past the end of
        the file is a SchemaError (truncated), never read.  Compressed datasets go through
        ordinary indexing: HDF5's C inflate beat undoing gzip and byte shuffle in numpy
        (measured 0.9x before this fallback).
        """
        ds = self[name]
        shape, plan = self._row_shapes[name], self._whole_row_chunks[name]
        whole = start == 0 and dest.shape == shape
        if not whole and not (len(shape) >= 1 and dest.shape[1:] == shape[1:]
                              and 0 <= start <= shape[0] - len(dest)):
            raise ValueError(f"planes {start}:{start + len(dest)} of shape {dest.shape[1:]} are not in "
                             f"a {name} row of shape {shape}")
        if (plan is None or self.bytes is None or not 0 <= i < plan.rows or plan.offsets[i] < 0
                or dest.dtype != plan.dtype or not dest.flags.c_contiguous):
            dest[...] = ds[i] if whole else ds[i, start:start + len(dest)]
            return dest if key is None else _finite(dest, self.path, key, name)
        row_bytes = math.prod(plan.shape) * plan.dtype.itemsize
        if int(plan.offsets[i]) + row_bytes > len(self.bytes):
            raise SchemaError(f"{self.path}: {name} row {i} ends past the end of the file "
                              f"({int(plan.offsets[i]) + row_bytes} > {len(self.bytes)} bytes): "
                              f"the shard is truncated")
        if dest.nbytes:
            first = int(plan.offsets[i]) + start * (dest.nbytes // len(dest) if dest.ndim else 0)
            dest.reshape(-1).view(np.uint8)[:] = self.bytes[first:first + dest.nbytes]
        if key is not None and not plan.finite[i]:
            row = self.bytes[int(plan.offsets[i]):int(plan.offsets[i]) + row_bytes].view(plan.dtype)
            _finite(row, self.path, key, name)
            plan.finite[i] = True
        return dest


class _Handles:
    """Open read-only shards of this process, at most MAX_OPEN_SHARDS (least recently
    used closed first: a store of one shard per sequence can have thousands).  Dropped
    (not closed: they belong to the parent) when the process id changes, and never
    pickled."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._files: OrderedDict[str, _Shard] = OrderedDict()

    def get(self, path: str, index: _StoreIndex) -> _Shard:
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._files = pid, OrderedDict()
        shard = self._files.get(path)
        if shard is None:
            while len(self._files) >= MAX_OPEN_SHARDS:
                self._files.popitem(last=False)[1].close()
            shard = self._files[path] = _Shard(path, index)
        else:
            self._files.move_to_end(path)
        return shard

    def close(self) -> None:
        if self._pid == os.getpid():
            for shard in self._files.values():
                shard.close()
        self._files = OrderedDict()

    def __getstate__(self) -> dict:
        return {"_pid": None, "_files": OrderedDict()}


def _check_shard(h5: h5py.File, path: str, index: _StoreIndex) -> None:
    if h5.attrs.get("schema") != index.schema.name or int(h5.attrs.get("schema_version", -1)) != index.schema.version:
        raise SchemaError(f"{path}: shard schema {h5.attrs.get('schema')!r} "
                          f"v{h5.attrs.get('schema_version')} differs from its index")
    keys = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in h5["ids/key"][()])
    if keys != index.shard_items[path]:
        raise SchemaError(f"{path}: item keys differ from the store's index; the index and the "
                          f"shard come from different runs")


class _RowPlan(NamedTuple):
    """How :meth:`_Shard.row` reads a dataset's rows as raw chunks (looked up once: h5py's
    shape / dtype properties cost microseconds per access)."""

    rows: int
    shape: tuple[int, ...]     # one row's shape
    dtype: np.dtype
    offsets: np.ndarray        # (rows,) int64 byte offset of each row's chunk, -1 if unwritten
    finite: np.ndarray         # (rows,) bool: row found free of NaN / inf in this process


def _one_row_per_chunk(ds: h5py.Dataset) -> _RowPlan | None:
    """The :class:`_RowPlan` of ``ds``, or None when its rows cannot be copied straight
    from raw chunks (several rows per chunk, or any filter such as gzip)."""
    if (ds.chunks is None or ds.ndim < 1 or tuple(ds.chunks) != (1, *ds.shape[1:])
            or ds.dtype.kind not in "biuf" or ds.id.get_create_plist().get_nfilters()):
        return None
    offsets = np.full(ds.shape[0], -1, np.int64)
    nbytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize

    def note(info) -> None:  # HDF5's chunk index, walked once
        if info.size == nbytes and not info.filter_mask and 0 <= info.chunk_offset[0] < len(offsets):
            offsets[info.chunk_offset[0]] = info.byte_offset

    ds.id.chunk_iter(note)
    return _RowPlan(ds.shape[0], tuple(ds.shape[1:]), ds.dtype, offsets,
                    np.full(ds.shape[0], ds.dtype.kind != "f"))  # only floats can hold NaN


def _finite(arr: np.ndarray, file: str, key: str, name: str) -> np.ndarray:
    """``arr`` when every value is finite; else SchemaError: the fermaps writers refuse
    NaN/inf, so such a store was written by other code or damaged, and one NaN sample
    would otherwise surface epochs later as a NaN training loss."""
    if not np.isfinite(arr).all():
        raise SchemaError(f"{file}: {name} of {key!r} holds NaN or inf (stores written by "
                          f"fermaps never do: the store is damaged or foreign)")
    return arr


class _StoreDataset(Dataset):
    """Shared part: keys, per-process handles, labels, epoch."""

    def __init__(self, keys: Sequence[str], label_map: Mapping[int, int] | None, seed: int):
        if isinstance(keys, str):
            raise TypeError("keys must be a sequence of item keys, not one string")
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError("no item keys")
        self.label_map = None if label_map is None else {int(k): int(v) for k, v in label_map.items()}
        self.seed = int(seed)
        self.epoch = 0
        self._handles = _Handles()

    def __len__(self) -> int:
        return len(self.keys)

    def set_epoch(self, epoch: int) -> None:
        """Use fresh random draws for epoch ``epoch`` (int >= 0)."""
        self.epoch = int(epoch)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i])

    def _label(self, shard: _Shard, row: int, key: str) -> int:
        label = int(shard.labels[row])
        if self.label_map is not None:
            if label not in self.label_map:
                raise InputError(key, f"store label {label} is not in the label map "
                                      f"{sorted(self.label_map)}")
            return self.label_map[label]
        if label < 0:
            raise InputError(key, "unlabelled item (store label -1) in a training set")
        return label

    def close(self) -> None:
        """Close this process's open files (they reopen on the next read)."""
        self._handles.close()


# ----------------------------------------------------------------------- 3-D maps

def _model_input_spec(model: str) -> Mapping[str, tuple[int, ...]]:
    from train.models.amdfn import AMDFN
    from train.models.ffnet_m import FFNetM
    specs = {"amdfn": AMDFN.input_spec, "ffnet_m": FFNetM.input_spec}
    try:
        return specs[model]
    except KeyError:
        raise ValueError(f"MapsDataset serves {', '.join(specs)}; got model {model!r}") from None


def _channel_runs(channels: Sequence[int]) -> list[tuple[int, int, int]]:
    """Consecutive store channels as (output position, first store channel, count) runs:
    (0, 1, 2) -> [(0, 0, 3)]; (3, 4, 0) -> [(0, 3, 2), (2, 0, 1)]."""
    runs: list[tuple[int, int, int]] = []
    for pos, c in enumerate(channels):
        if runs and runs[-1][1] + runs[-1][2] == c:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((pos, c, 1))
    return runs


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """An uninitialised tensor; with ``shared``, in shared memory the way torch's default
    collate allocates a batch in a worker (``_new_shared``), so that sending it to the main
    process copies nothing (a plain tensor would be copied into shared memory then)."""
    if shared:
        proto = torch.empty(0, dtype=dtype)
        try:  # private torch API (what default_collate calls): else a plain tensor
            storage = proto._typed_storage()._new_shared(math.prod(shape))
        except AttributeError:
            pass
        else:
            return proto.new(storage).view(shape)
    return torch.empty(shape, dtype=dtype)


class MapsDataset(_StoreDataset):
    """Attribute maps (and masks) of 3-D scans, one scan per sample.

    Parameters
    ----------
    maps_root : a ``maps_clean`` (or ``maps``) store directory.
    keys : item keys, in sample order (e.g. a split manifest's ``train`` list).
    model : ``"amdfn"`` or ``"ffnet_m"``: which model's ``input_spec`` names the outputs.
    channels : AMDFN only: channel names to stack, in this order (default all 8,
        ``data_schema.channels.CHANNELS``: Nx Ny Nz D C R G B).
    masks_root : a ``masks`` store with the same keys; FFNet-M's ``mask56`` / ``mask28``
        come from it (without it, FFNet-M samples have no masks: ``masked=False``).
    label_map : store label -> training label (``train.splits.manifest_label_map``).

    A sample is a dict of tensors:

    * AMDFN: ``"maps"`` (C, H, W) float32 in [0, 1];
    * FFNet-M: ``"depth"`` (1, H, W), ``"normals"`` (3, H, W), ``"texture"`` (3, H, W)
      float32 in [0, 1] from the same maps, and with ``masks_root`` ``"mask56"``
      (56, 56), ``"mask28"`` (28, 28) float32 weights in [0, 1];
    * always ``"valid"`` (1, H, W) bool (pixel on the face; augmentation keeps the
      background of flipped normals at 0 with it) and ``"label"`` int64 scalar.

    H = W = 112 for the seed models (checked against the model's ``input_spec``).
    """

    def __init__(self, maps_root: str | os.PathLike, keys: Sequence[str], *, model: str = "amdfn",
                 channels: Sequence[str] | None = None, masks_root: str | os.PathLike | None = None,
                 label_map: Mapping[int, int] | None = None):
        super().__init__(keys, label_map, 0)
        self.model = model
        spec = _model_input_spec(model)
        if model == "amdfn":
            names = tuple(CHANNELS) if channels is None else tuple(channels)
            unknown = [c for c in names if c not in CHANNELS]
            if unknown or not names or len(set(names)) != len(names):
                raise ValueError(f"channels must be distinct names of {CHANNELS}, got {names}")
            self.groups = {"maps": tuple(CHANNELS.index(c) for c in names)}
        else:
            if channels is not None:
                raise ValueError("channels apply to AMDFN only; FFNet-M takes depth, normals, texture")
            self.groups = {name: tuple(CHANNELS.index(c) for c in MAP_INPUTS[name])
                           for name in spec if name in MAP_INPUTS}
        self.map_size = tuple(spec[next(iter(self.groups))][1:])
        self.mask_inputs = {n: tuple(spec[n]) for n in _MASK_INPUTS if n in spec} if masks_root else {}
        self._maps = _StoreIndex(maps_root, ("maps_clean", "maps"))
        self._rows = self._maps.locate(self.keys)
        self._masks = None if masks_root is None else _StoreIndex(masks_root, ("masks",))
        self._mask_rows = None if self._masks is None else self._masks.locate(self.keys)
        self._runs = {name: _channel_runs(idx) for name, idx in self.groups.items()}

    @property
    def normal_channels(self) -> dict[str, tuple[int | None, int | None]]:
        """Output name -> (index of Nx, index of Ny) on its channel axis (None where the
        channel is not there), for :func:`train.augment.hflip` / ``rotate``."""
        out = {}
        for name, idx in self.groups.items():
            nx = idx.index(0) if 0 in idx else None
            ny = idx.index(1) if 1 in idx else None
            if nx is not None or ny is not None:
                out[name] = (nx, ny)
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: t[0] for name, t in self._read([i], shared=False).items()}

    def read_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Samples ``indices`` as one batch: the dict :meth:`__getitem__` gives, each
        tensor with a leading batch axis (what the default collate would make of them).

        Each sample's rows are read straight into its slot of the batch tensors, and in a
        DataLoader worker those tensors live in shared memory (as torch's own collate
        allocates them), so a batch is copied once, from the file into the memory the
        main process maps: no per-sample arrays, no stacking copy.  :func:`make_loader`
        reads MapsDatasets this way (``benchmarks/bench_loader.py``).
        """
        return self._read(indices, shared=torch.utils.data.get_worker_info() is not None)

    def _read(self, indices: Sequence[int], shared: bool) -> dict[str, torch.Tensor]:
        n = len(indices)
        out = {name: _batch_tensor((n, len(idx), *self.map_size), torch.float32, shared)
               for name, idx in self.groups.items()}
        out["valid"] = _batch_tensor((n, 1, *self.map_size), torch.bool, shared)
        for name, shape in self.mask_inputs.items():
            out[name] = _batch_tensor((n, *shape), torch.float32, shared)
        arrays = {name: t.numpy() for name, t in out.items()}
        want = (len(CHANNELS), *self.map_size)
        labels = []
        for b, i in enumerate(indices):
            key = self.keys[i]
            file, row = self._rows[i]
            shard = self._handles.get(file, self._maps)
            if shard.row_shape("maps") != want:
                raise SchemaError(f"{file}: maps of {key!r} are {shard.row_shape('maps')}, "
                                  f"{self.model} wants {want}")
            for name, runs in self._runs.items():  # each run of channels is one read
                dest = arrays[name][b]
                for pos, first, count in runs:
                    shard.read_into("maps", row, dest[pos:pos + count], first, key=key)
            shard.read_into("valid", row, arrays["valid"][b, 0])
            if self._masks is not None:
                mfile, mrow = self._mask_rows[i]
                mshard = self._handles.get(mfile, self._masks)
                for name, shape in self.mask_inputs.items():
                    if mshard.row_shape(name) != shape:
                        raise SchemaError(f"{mfile}: {name} of {key!r} is {mshard.row_shape(name)}, "
                                          f"{self.model} wants {shape}")
                    mshard.read_into(name, mrow, arrays[name][b], key=key)
            labels.append(self._label(shard, row, key))
        out["label"] = torch.tensor(labels, dtype=torch.int64)
        return out

    def labels(self) -> np.ndarray:
        """(N,) int64 training labels of every sample (reads only ``ids/label``)."""
        return np.asarray([self._label(self._handles.get(f, self._maps), r, k)
                           for k, (f, r) in zip(self.keys, self._rows)], dtype=np.int64)


# ---------------------------------------------------------------------- sequences

def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    shrink = frame.shape[0] >= size and frame.shape[1] >= size
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class SequenceDataset(_StoreDataset):
    """Face sequences from an ``aligned_frames`` store, sampled per video protocol.

    Parameters
    ----------
    aligned_root : an ``aligned_frames`` store directory (S x S RGB frames).
    keys : item keys in sample order.
    protocol : ``"stcam"``, ``"hacn"`` or ``"wslgan"``.
    train : True: random draws (STCAM jitter within ``max_shift`` frames, one random frame
        per HACN segment, one of WS-LGAN's last 3 frames); False: the fixed evaluation
        frames (STCAM's 7 evenly spaced frames, each HACN segment's centre, the last
        frame) - the indices ``frame_samples`` stores.
    seed : int, the random draws' seed (see the module docstring).
    size : output side, pixels.  Defaults: STCAM the stored S (240; the 224 crop is
        :func:`train.augment.random_crop_5` / ``center_crop``), HACN 224, WS-LGAN 48.
    label_map : store label -> training label.
    max_shift : STCAM jitter bound, frames.  k : HACN segments.

    A sample is ``{"x": ..., "label": int64}`` with ``"x"`` float32 in [0, 1]:

    * STCAM: (3, 7, size, size) = (C, T, H, W), RGB; the peak is the last frame for CK+ /
      Oulu-CASIA and the middle frame for MMI (``frame_sampling.STCAM_PEAK`` by the
      item's dataset);
    * HACN: (k, 3, size, size) = (T, C, H, W), RGB; a sequence shorter than k gives all
      its frames and repeats the last one up to k (the model needs exactly k);
    * WS-LGAN: (1, size, size) gray (``frame_sampling.wslgan_view`` of the aligned frame,
      which is already a face crop), plus ``"landmarks"`` (68, 2) float32, the frame's
      aligned iBUG-68 landmarks in the output's pixels (x right, y down, pixel centres
      at integers), for the attention-map targets.
    """

    def __init__(self, aligned_root: str | os.PathLike, keys: Sequence[str], protocol: str,
                 train: bool, seed: int = 0, size: int | None = None, *,
                 label_map: Mapping[int, int] | None = None, max_shift: int = STCAM_MAX_SHIFT,
                 k: int = HACN_K):
        super().__init__(keys, label_map, seed)
        if protocol not in SEQUENCE_PROTOCOLS:
            raise ValueError(f"protocol must be one of {SEQUENCE_PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol
        self.train = bool(train)
        self.size = size if size is not None else {"stcam": None, "hacn": 224, "wslgan": WSLGAN_SIZE}[protocol]
        if self.size is not None and (isinstance(self.size, bool) or int(self.size) < 1):
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.max_shift = int(max_shift)
        self.k = int(k)
        self._store = _StoreIndex(aligned_root, ("aligned_frames",))
        self._rows = self._store.locate(self.keys)

    def frame_indices(self, i: int, n_frames: int, dataset: str) -> np.ndarray:
        """Frame rows (into the sequence's n_frames aligned frames) that sample i uses."""
        rng = self._rng(i) if self.train else None
        if self.protocol == "stcam":
            peak = STCAM_PEAK.get(dataset, "last")
            if rng is None:
                return stcam_indices(n_frames, peak=peak, k=STCAM_K)
            return stcam_jitter(n_frames, rng, peak=peak, k=STCAM_K, max_shift=self.max_shift)
        if self.protocol == "hacn":
            idx = hacn_segments(n_frames, self.k, rng)
            return np.concatenate([idx, np.full(self.k - len(idx), idx[-1], dtype=np.int64)])
        last3 = wslgan_last3(n_frames)
        return last3[[int(rng.integers(3)) if rng is not None else 2]]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        key = self.keys[i]
        file, row = self._rows[i]
        shard = self._handles.get(file, self._store)
        a, b = (int(v) for v in shard["offsets/frames"][row:row + 2])
        if b <= a:
            raise InputError(key, "sequence has no aligned frame")
        dataset = shard["ids/dataset"][row]
        dataset = dataset.decode() if isinstance(dataset, bytes) else str(dataset)
        idx = self.frame_indices(i, b - a, dataset)
        # one chunk per distinct frame; short sequences repeat frames
        uniq, inverse = np.unique(idx, return_inverse=True)
        read = {int(u): shard.row("frames", a + int(u)) for u in uniq}
        frames = [read[int(u)] for u in uniq[inverse]]
        out: dict[str, torch.Tensor] = {}
        if self.protocol == "wslgan":
            frame = frames[0]
            view = wslgan_view(frame, None, self.size, item=key)
            la = int(shard["offsets/landmarks68"][row])
            lm = _finite(shard["landmarks68"][la + int(idx[0])], file, key, "landmarks68").astype(np.float64)
            side = min(frame.shape[:2])
            y0, x0 = (frame.shape[0] - side) // 2, (frame.shape[1] - side) // 2
            # central square [x0, x0 + side) -> [0, size): pixel centres map affinely
            scale = self.size / side
            lm = (lm - (x0, y0) + 0.5) * scale - 0.5
            out["x"] = torch.from_numpy((view.astype(np.float32) / 255.0)[None])
            out["landmarks"] = torch.from_numpy(lm.astype(np.float32))
        else:
            if self.size is not None:
                frames = [_resize(f, self.size) for f in frames]
            clip = torch.from_numpy(np.stack(frames)).to(torch.float32).div_(255.0)  # (T, H, W, 3)
            out["x"] = (clip.permute(3, 0, 1, 2) if self.protocol == "stcam" else clip.permute(0, 3, 1, 2)).contiguous()
        out["label"] = torch.tensor(self._label(shard, row, key), dtype=torch.int64)
        return out


# ------------------------------------------------------------------------- in RAM

class InMemoryDataset(Dataset):
    """Every sample of ``dataset`` read once and held in RAM as stacked tensors.

    Samples must be dicts of tensors of equal shapes across samples.  For a dataset with
    random draws (``SequenceDataset(train=True)``) the one draw made here is frozen.
    """

    def __init__(self, dataset: Dataset):
        n = len(dataset)
        if n == 0:
            raise ValueError("empty dataset")
        samples = [dataset[i] for i in range(n)]
        self.tensors = {name: torch.stack([s[name] for s in samples]) for name in samples[0]}

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: t[i] for name, t in self.tensors.items()}


# ------------------------------------------------------------------------- loader

def _seed_worker(worker_id: int) -> None:
    # torch already seeded this worker with base_seed + worker_id, base_seed drawn from
    # the loader's generator: derive numpy's and random's seeds from it.
    s = torch.initial_seed()
    np.random.seed(s % 2**32)
    random.seed(s)


class _BatchReads(Dataset):
    """``dataset`` seen one batch per item: ``self[indices] = dataset.read_batch(indices)``
    (a DataLoader with ``batch_size=None`` and a BatchSampler; torch's documented way to
    load batched data directly)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.dataset.read_batch(indices)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class _EpochDraw(Sampler):
    """``sampler``, drawing one number from ``generator`` at the start of every pass.

    A DataLoader draws its workers' base seed from its generator each time it creates
    them (every epoch, unless they persist), just before the shuffle.  With persistent
    workers :func:`make_loader` gives the DataLoader a generator of its own and makes
    this draw here instead, so the shuffling generator goes through the same states
    either way: the same batches, and a run resumed from a saved generator state
    (``train.loop``) continues as an uninterrupted one whatever its workers were.
    """

    def __init__(self, sampler: Sampler, generator: torch.Generator):
        self.sampler, self.generator = sampler, generator

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # as the DataLoader does
        return iter(self.sampler)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int, seed: int, *,
                drop_last: bool = False, pin_memory: bool | None = None,
                persistent_workers: bool = False) -> DataLoader:
    """A DataLoader whose order and worker seeds follow from ``seed``.

    dataset : any map-style dataset (the ones above yield dicts of tensors; the default
        collate stacks them into a dict of batched tensors).  A dataset with a
        ``read_batch(indices)`` method (:class:`MapsDataset`) is read a batch at a time
        through it instead; the batches are the same.
    batch_size : int >= 1.  shuffle : reshuffle every epoch (from the seeded generator).
    workers : worker processes (0: read in this process).
    seed : int; the same seed gives the same batches and the same per-worker numpy /
        torch / random seeds.
    pin_memory : default True when CUDA is available.
    persistent_workers : keep the worker processes from one epoch to the next (with
        ``workers`` > 0): a worker then keeps its open shards and mapped pages.  The
        batches are the same either way, and a run may resume with the other setting
        (:class:`_EpochDraw`).  Datasets whose samples depend on ``set_epoch``
        (``SequenceDataset(train=True)``) need workers re-created every epoch: a
        persistent worker keeps the epoch it started with.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if int(workers) < 0:
        raise ValueError(f"workers must be >= 0, got {workers!r}")
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    workers = int(workers)
    persistent = bool(persistent_workers) and workers > 0
    # the sampler the DataLoader would build itself, drawing from ``gen``
    order = RandomSampler(dataset, generator=gen) if shuffle else SequentialSampler(dataset)
    if persistent:
        order = _EpochDraw(order, gen)
    common = dict(num_workers=workers, worker_init_fn=_seed_worker if workers else None,
                  # persistent workers: their base seed from a generator of their own
                  generator=torch.Generator().manual_seed(int(seed) + 1) if persistent else gen,
                  pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
                  persistent_workers=persistent)
    if callable(getattr(dataset, "read_batch", None)):
        return DataLoader(_BatchReads(dataset), batch_size=None,
                          sampler=BatchSampler(order, int(batch_size), drop_last), **common)
    return DataLoader(dataset, batch_size=int(batch_size), sampler=order, drop_last=drop_last, **common)


def in_stored_order(loader: Iterable) -> Iterable:
    """``loader``'s samples in their stored order and in the same batch size, read in
    this process, without drawing from its shuffling generator (which is checkpointed:
    drawing would change the next epoch's batches).  Anything but a DataLoader is
    returned as it is."""
    if not isinstance(loader, DataLoader):
        return loader
    if isinstance(loader.dataset, _BatchReads):
        batches = BatchSampler(SequentialSampler(loader.dataset), loader.sampler.batch_size, False)
        return DataLoader(loader.dataset, batch_size=None, sampler=batches, num_workers=0)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False, num_workers=0,
                      collate_fn=loader.collate_fn)
