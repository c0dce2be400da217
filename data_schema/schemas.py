"""Store schemas as code: every dataset a shard holds, with dtype, shape, chunking,
compression and units, plus the attributes every shard must carry.

A store is a directory of HDF5 shards plus ``index.json``.  Inside a shard, N items are
stored side by side:

* per-item datasets have shape (N, *shape) and one item per chunk;
* ragged datasets (meshes, frames, landmarks) are flat over the items, (sum_i n_i, *shape),
  with ``offsets/<name>`` (N + 1,) int64 so that item i owns rows
  ``offsets[i]:offsets[i + 1]``; they are chunked by a fixed number of rows.

Every shard also holds the item-id datasets of ``ITEM_FIELDS`` and the root attributes
of ``REQUIRED_ATTRS``.  ``schemas_json()`` is the golden form a test compares.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Mapping

from data_schema.channels import CHANNEL_NORMALISATION, CHANNELS

STR = "str"  # variable-length UTF-8 string


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a shard.

    name : dataset path inside the shard.
    dtype : numpy dtype name (``"float64"``, ``"uint8"``...) or ``"str"``.
    shape : per-row shape after the leading axis; a string entry (``"H"``) is a size fixed
        within a shard but free between shards.
    ragged : True when rows of all items are concatenated (see module docstring).
    chunk_rows : rows per chunk along the leading axis (1 for per-item data = one
        sample per chunk).
    compression : ``"gzip"`` (level 4 + shuffle) or ``None`` (already compressed bytes).
    unit : physical unit / value range, e.g. ``"mm"``, ``"pixel, x right y down"``.
    description : what it holds.
    """

    name: str
    dtype: str
    shape: tuple
    ragged: bool
    chunk_rows: int
    compression: str | None
    unit: str
    description: str


@dataclass(frozen=True)
class StoreSchema:
    """A store's contract.  ``attrs`` are constant string attributes (JSON) written into
    every shard besides ``REQUIRED_ATTRS``."""

    name: str
    version: int
    description: str
    datasets: tuple[DatasetSpec, ...]
    attrs: Mapping[str, str] = field(default_factory=dict)

    def spec(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"schema {self.name} v{self.version} has no dataset {name!r}")


# Item identity, stored per item in every shard (see data_schema.store.ItemMeta).
ITEM_FIELDS: tuple[DatasetSpec, ...] = (
    DatasetSpec("ids/key", STR, (), False, 1, "gzip", "", "unique item key dataset/subject/session/expression/file"),
    DatasetSpec("ids/dataset", STR, (), False, 1, "gzip", "", "dataset name (bosphorus, bu3dfe, facescape, frgc, ckplus, oulu, mmi, afew, generic)"),
    DatasetSpec("ids/subject", STR, (), False, 1, "gzip", "", "subject id as the dataset writes it"),
    DatasetSpec("ids/session", STR, (), False, 1, "gzip", "", "session / sequence / take id"),
    DatasetSpec("ids/expression", STR, (), False, 1, "gzip", "", "the dataset's own expression code"),
    DatasetSpec("ids/label", "int64", (), False, 1, "gzip", "class index", "label from data_schema.labels for the dataset; -1 unlabelled"),
    DatasetSpec("ids/source", STR, (), False, 1, "gzip", "", "source path relative to the raw root"),
    DatasetSpec("ids/source_sha256", STR, (), False, 1, "gzip", "", "sha256 of the source file (of the sorted file list + contents for a folder)"),
    DatasetSpec("ids/format", STR, (), False, 1, "gzip", "", "reader format name (bnt, wrl, facescape_obj, abs, mesh, video, ckplus, oulu)"),
)

REQUIRED_ATTRS: Mapping[str, str] = MappingProxyType({
    "schema": "schema name",
    "schema_version": "schema version (int)",
    "params": "JSON of the stage parameters that made the shard",
    "stage": "the stage that wrote the shard",
    "n_items": "number of items in the shard",
})

def _ds(name, dtype, shape, ragged, chunk_rows, compression, unit, description):
    return DatasetSpec(name, dtype, shape, ragged, chunk_rows, compression, unit, description)


# The mesh part every mesh store shares (raw, registered, cropped).
MESH_DATASETS: tuple[DatasetSpec, ...] = (
    _ds("vertices", "float64", (3,), True, 16384, "gzip", "mm", "vertex positions (frame: see the schema description)"),
    _ds("faces", "int32", (3,), True, 16384, "gzip", "vertex index", "triangles, indices local to the item"),
    _ds("colors", "uint8", (3,), True, 16384, "gzip", "RGB 0..255", "per-vertex colour (0 rows when none)"),
    _ds("uv", "float64", (2,), True, 16384, "gzip", "[0,1], u right, v up", "texture coordinates"),
    _ds("face_uv", "int32", (3,), True, 16384, "gzip", "uv index", "per-corner indices into uv (0 rows when no uv)"),
    _ds("texture_png", "uint8", (), True, 1 << 20, None, "PNG bytes", "texture image encoded losslessly as PNG (0 bytes when none)"),
    _ds("landmarks", "float64", (3,), True, 256, "gzip", "mm", "3-D landmarks, same frame as the vertices"),
    _ds("landmark_names", STR, (), True, 256, "gzip", "", "name of each 3-D landmark"),
    _ds("landmark_vertex", "int64", (), True, 256, "gzip", "vertex index or -1", "vertex each 3-D landmark names, -1 when none"),
    _ds("landmarks2d", "float64", (2,), True, 256, "gzip", "pixel, x right y down, on the texture", "2-D landmarks from the dataset's file"),
    _ds("landmark2d_names", STR, (), True, 256, "gzip", "", "name of each 2-D landmark"),
)

RAW_MESH = StoreSchema(
    "raw_mesh", 2,
    "Every raw 3-D scan as read by preprocess.io: mesh in the scan's own frame, colour, texture, landmarks.",
    MESH_DATASETS + (
        _ds("grid_index", "int64", (), True, 16384, "gzip", "row-major cell index", "range-image cell of each vertex (0 rows when not a grid)"),
        _ds("grid_shape", "int64", (2,), False, 1, "gzip", "cells", "(rows, cols) of the range image; (0, 0) when not a grid"),
        _ds("landmark_provenance", STR, (), False, 1, "gzip", "", "provenance of the 3-D landmarks ('' when none)"),
        _ds("warnings", STR, (), True, 256, "gzip", "", "what the reader noted but did not refuse (generic ids for an unexpected file name, missing texture or landmarks...), one row each"),
    ),
)

REGISTERED_MESH = StoreSchema(
    "registered_mesh", 2,
    "Scans rigidly registered to the landmark template (Arun SVD): canonical frame, mm, face along +Z, +Y up.",
    MESH_DATASETS + (
        _ds("landmark_provenance", STR, (), False, 1, "gzip", "", "provenance of the landmarks the fit used"),
        _ds("rotation", "float64", (3, 3), False, 1, "gzip", "", "R of p_canonical = R p_raw + t"),
        _ds("translation", "float64", (3,), False, 1, "gzip", "mm", "t of p_canonical = R p_raw + t"),
        _ds("rmse_mm", "float64", (), False, 1, "gzip", "mm", "RMS residual of the fit: landmarks, or the ICP inliers for geometric"),
        _ds("n_landmarks_used", "int64", (), False, 1, "gzip", "", "landmarks matched to the template (0 for geometric)"),
        _ds("registration_method", STR, (), False, 1, "gzip", "", "how the scan was posed: file, texture, shaded or geometric"),
        _ds("registration_tried", STR, (), False, 1, "gzip", "", "the methods tried before it and why each failed ('' when the first worked)"),
    ),
)

FACE_MESH = StoreSchema(
    "face_mesh", 1,
    "Registered scans cropped by a sphere around the nose tip; canonical frame shifted so the nose tip is the origin.",
    MESH_DATASETS + (
        _ds("nose_tip", "float64", (3,), False, 1, "gzip", "mm", "nose tip in the registered frame (before the shift)"),
        _ds("nose_method", STR, (), False, 1, "gzip", "", "how the nose tip was found"),
        _ds("source_vertex", "int64", (), True, 16384, "gzip", "vertex index", "index of each kept vertex in the registered mesh"),
    ),
)

# Written into every maps shard as JSON, so a plain h5py user knows what each channel is.
_MAP_ATTRS = {"channels": json.dumps(list(CHANNELS)),
              "normalisation": json.dumps(CHANNEL_NORMALISATION, sort_keys=True)}

_MAP_COMMON = (
    _ds("valid", "bool", ("H", "W"), False, 1, "gzip", "", "pixel hit the face"),
    _ds("landmarks68_px", "float32", (68, 2), False, 1, "gzip", "pixel, x right y down", "iBUG-68 landmarks projected onto the maps (0 where absent)"),
    _ds("landmarks68_present", "bool", (68,), False, 1, "gzip", "", "which iBUG-68 landmarks the scan has"),
    _ds("pixel_size_mm", "float64", (), False, 1, "gzip", "mm/pixel", "side of one pixel"),
    _ds("extent_mm", "float64", (4,), False, 1, "gzip", "mm", "xmin, xmax, ymin, ymax of the image (outer edges)"),
)

MAPS = StoreSchema(
    "maps", 1,
    "AMDFN attribute maps rendered orthographically from the cropped face (channels and normalisation in attrs).",
    (
        _ds("maps", "float32", (8, "H", "W"), False, 1, "gzip", "[0,1], see attrs", "Nx, Ny, Nz, D, C, R, G, B"),
        _ds("depth_mm", "float32", ("H", "W"), False, 1, "gzip", "mm", "z of the first hit (nose tip = 0), 0 off the face"),
        _ds("depth_range_mm", "float64", (), False, 1, "gzip", "mm", "depth behind the nose tip that maps to D = 0"),
    ) + _MAP_COMMON,
    attrs=_MAP_ATTRS,
)

MAPS_CLEAN = StoreSchema(
    "maps_clean", 2,
    "Attribute maps after FFNet-M depth cleaning (outliers, holes, 3x3 Gaussian) with normals recomputed from the depth.",
    (
        # uncompressed: training reads one whole chunk per sample, and inflating 400 kB
        # cost ~1 ms a sample, 3-6x the read itself (benchmarks/bench_loader.py)
        _ds("maps", "float32", (8, "H", "W"), False, 1, None, "[0,1], see attrs", "Nx, Ny, Nz, D from the cleaned depth; C, R, G, B as rendered"),
        _ds("depth_mm", "float32", ("H", "W"), False, 1, "gzip", "mm", "cleaned depth (nose tip = 0), 0 off the face"),
        _ds("n_outliers", "int64", (), False, 1, "gzip", "pixels", "outliers removed"),
        _ds("n_filled", "int64", (), False, 1, "gzip", "pixels", "hole pixels filled"),
        # v2: uncompressed too, as training reads it with every sample (12.5 kB; inflating
        # it was a fifth of a sample's read)
        _ds("valid", "bool", ("H", "W"), False, 1, None, "", "pixel hit the face"),
    ) + tuple(d for d in _MAP_COMMON if d.name != "valid"),
    attrs=_MAP_ATTRS,
)

RAW_FRAMES = StoreSchema(
    "raw_frames", 1,
    "Every raw face sequence (image folder or video) decoded to RGB frames.",
    (
        DatasetSpec("frames", "uint8", ("H", "W", 3), True, 1, "gzip", "RGB 0..255", "all frames of all items of the shard (same size within a shard)"),
        DatasetSpec("frame_names", STR, (), True, 256, "gzip", "", "image file name or frame_NNNNNN"),
        DatasetSpec("landmarks68", "float32", (68, 2), True, 256, "gzip", "pixel, x right y down", "per-frame 68 landmarks from dataset files (zeros where has_landmarks is false)"),
        DatasetSpec("has_landmarks", "bool", (), True, 256, "gzip", "", "whether the frame has a landmark file"),
        DatasetSpec("fps", "float64", (), False, 1, "gzip", "frames/s", "frame rate of the sequence"),
    ),
)

MASKS = StoreSchema(
    "masks", 1,
    "FFNet-M landmark masks (2.2) per scan, keyed by the maps' ids; the same masks serve texture, depth and normals.",
    (
        _ds("mask56", "float32", (56, 56), False, 1, "gzip", "weight [0,1]", "mask-1: max over the 51 inner landmarks of 1 - 0.1 |P-L|_1 where |P-L|_inf <= 2"),
        _ds("mask28", "float32", (28, 28), False, 1, "gzip", "weight [0,1]", "mask-2: landmarks / 2, same rule with |P-L|_inf <= 1"),
        _ds("landmarks68", "float32", (68, 2), False, 1, "gzip", "pixel on the 56x56 texture, x right y down", "iBUG-68 landmarks (0 where absent)"),
        _ds("landmarks_present", "bool", (68,), False, 1, "gzip", "", "which of the 68 landmarks exist"),
        _ds("landmark_source", STR, (), False, 1, "gzip", "", "dlib / dlib-mmod / mediapipe / projected"),
        _ds("texture56", "uint8", (56, 56, 3), False, 1, "gzip", "RGB 0..255", "the 56x56 texture crop the masks belong to"),
    ),
)

ALIGNED_FRAMES = StoreSchema(
    "aligned_frames", 2,
    "Every kept frame of every sequence, face-aligned by a similarity to the reference and cropped to S x S (one frame per chunk).",
    (
        _ds("frames", "uint8", ("S", "S", 3), True, 1, "gzip", "RGB 0..255", "aligned frames, flat over the sequences of the shard"),
        _ds("landmarks68", "float32", (68, 2), True, 256, "gzip", "pixel of the aligned frame, x right y down", "aligned iBUG-68 landmarks per frame"),
        _ds("transforms", "float64", (2, 3), True, 256, "gzip", "input px -> aligned px", "similarity of each frame"),
        _ds("face_found", "bool", (), True, 256, "gzip", "", "landmarks found in this frame (file, tracked or detected)"),
        _ds("interpolated", "bool", (), True, 256, "gzip", "", "transform bridged over a short gap"),
        _ds("score", "float32", (), True, 256, "gzip", "detector score", "dlib HOG margin / Haar weight / 1 for files / 0 interpolated"),
        _ds("frame_index", "int64", (), True, 256, "gzip", "frame", "index of the frame in the raw sequence"),
        _ds("method", STR, (), True, 256, "gzip", "", "file / detected / tracked / interpolated"),
        _ds("head_pose", "float32", (3,), True, 256, "gzip", "degrees", "yaw, pitch, roll of the head (preprocess.head_pose: x image-right, y image-up, z toward the camera; yaw > 0 turns the face to image right, pitch > 0 tilts it down, roll > 0 is counter-clockwise on screen)"),
        _ds("face_size", "float32", (), True, 256, "gzip", "pixel of the input frame", "side of the 68 landmarks' bounding box, sqrt(width x height)"),
        _ds("sharpness", "float32", (), True, 256, "gzip", "grey level^2", "variance of the Laplacian of the aligned grey crop inside the landmarks' hull (preprocess.frame_quality)"),
        _ds("n_frames_in", "int64", (), False, 1, "gzip", "frames", "frames of the raw sequence"),
        _ds("dropped", STR, (), False, 1, "gzip", "", "JSON list of [frame index, reason] for frames not kept"),
    ),
)

FRAME_SAMPLES = StoreSchema(
    "frame_samples", 1,
    "Evaluation-time frame indices per protocol into each aligned sequence (training re-samples with jitter).",
    (
        _ds("stcam", "int64", (7,), False, 1, "gzip", "aligned frame row", "STCAM: first, 5 evenly spaced, peak (MMI: middle)"),
        _ds("hacn", "int64", (), True, 256, "gzip", "aligned frame row", "HACN: centre frame of each of k segments (all frames when fewer than k)"),
        _ds("wslgan", "int64", (3,), False, 1, "gzip", "aligned frame row", "WS-LGAN: the last 3 frames"),
        _ds("n_frames", "int64", (), False, 1, "gzip", "frames", "aligned frames of the sequence"),
    ),
)

SCHEMAS: Mapping[str, StoreSchema] = MappingProxyType({s.name: s for s in (
    RAW_MESH, RAW_FRAMES, REGISTERED_MESH, FACE_MESH, MAPS, MAPS_CLEAN, MASKS,
    ALIGNED_FRAMES, FRAME_SAMPLES)})


def get_schema(name: str) -> StoreSchema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KeyError(f"unknown store schema {name!r}; known: {', '.join(SCHEMAS)}") from None


def schemas_json() -> str:
    """Canonical JSON of every schema, the item fields and required attributes."""
    doc = {
        "item_fields": [asdict(d) for d in ITEM_FIELDS],
        "required_attrs": dict(REQUIRED_ATTRS),
        "schemas": {n: {**asdict(s), "attrs": {k: s.attrs[k] for k in sorted(s.attrs)}} for n, s in sorted(SCHEMAS.items())},
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"
