"""The canonical in-memory 3-D scan every reader returns and every 3-D step consumes.

Conventions: millimetres, right-handed.  Texture coordinates follow OBJ/VRML: ``u``
to the right, ``v`` up, both in [0, 1]; pixel (row, col) of an (H, W) texture is
``((1 - v) * H, u * W)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Landmarks:
    """Named landmark points with their provenance.

    points : (L, D) float64; D = 3 (mm, same frame as the scan's vertices) or
        D = 2 (pixels, x right, y down, on the image they were taken from).
    names : L names as the source spells them (e.g. ``"Nose tip"``, ``"ibug_30"``,
        ``"bnd_36"``).
    provenance : where they came from: ``"file:lm3"``, ``"file:lm2"``, ``"file:bnd"``,
        ``"file:facescape"``, ``"file:ckplus"``, ``"dlib"``, ``"mediapipe"``, ``"synthetic"``.
    vertex_index : (L,) int64 vertex index of each point when the source names one
        (BU-3DFE .bnd, FaceScape indices), else None.
    """

    points: np.ndarray
    names: tuple[str, ...]
    provenance: str
    vertex_index: np.ndarray | None = None

    def __post_init__(self):
        if self.points.ndim != 2 or self.points.shape[0] != len(self.names):
            raise ValueError(f"landmarks: {self.points.shape} points for {len(self.names)} names")


@dataclass(frozen=True)
class ItemIds:
    """Who and what an item (scan or sequence) is, parsed from its file name/layout.

    dataset : ``"bosphorus"``, ``"bu3dfe"``, ``"facescape"``, ``"frgc"``, ``"ckplus"``,
        ``"oulu"``, ``"mmi"``, ``"afew"`` or ``"generic"``.
    subject : subject id as the dataset writes it (``"bs000"``, ``"F0001"``, ``"S005"``).
    session : sequence / session / take id (``"0"``, ``"001"``), ``""`` if none.
    expression : the dataset's own expression code (``"HAPPY"``, ``"HA"``, ``"smile"``,
        ``"3"``); ``""`` when unknown.
    label : integer label from ``data_schema.labels.label_map(dataset)``, -1 unlabelled.
    source : path of the main source file (or folder), as given to the reader.
    """

    dataset: str
    subject: str
    session: str = ""
    expression: str = ""
    label: int = -1
    source: str = ""

    @property
    def key(self) -> str:
        """Stable item id used in stores: ``dataset/subject/session/expression`` plus
        the source's base name so that two takes never collide."""
        import os
        base = os.path.basename(self.source.rstrip("/"))
        return "/".join((self.dataset, self.subject, self.session or "-",
                         self.expression or "-", base))


@dataclass(frozen=True)
class Scan:
    """One 3-D face scan.

    vertices : (V, 3) float64, mm.  Finite.
    faces : (F, 3) int64 indices into vertices (fan-triangulated polygons).
    ids : ItemIds.
    colors : (V, 3) uint8 per-vertex RGB, or None.
    texture : (H, W, 3) uint8 RGB texture image, or None.
    uv : (T, 2) float64 texture coordinates (see module docstring), or None.
    face_uv : (F, 3) int64 per-corner indices into ``uv``, or None.  For formats
        with one uv per vertex it equals ``faces``.
    landmarks : Landmarks (3-D, mm) or None.
    landmarks2d : Landmarks (2-D, pixels of the texture image) or None.
    grid_shape : (rows, cols) of the range image the scan came from (.bnt, .abs), or None.
    grid_index : (V,) int64 row-major index of each vertex in that grid, rows top-down.
    texture_name : file name of the texture as the source names it ('' if none).
    """

    vertices: np.ndarray
    faces: np.ndarray
    ids: ItemIds
    colors: np.ndarray | None = None
    texture: np.ndarray | None = None
    uv: np.ndarray | None = None
    face_uv: np.ndarray | None = None
    landmarks: Landmarks | None = None
    landmarks2d: Landmarks | None = None
    grid_shape: tuple[int, int] | None = None
    grid_index: np.ndarray | None = None
    texture_name: str = ""
    extra: dict = field(default_factory=dict)
