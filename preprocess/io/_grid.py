"""Range-image grids (Bosphorus ``.bnt``, FRGC ``.abs``) to triangle meshes: one
triangulation for both formats.

Why by hand: the grid gives the connectivity for free (neighbouring cells), so a
Delaunay or a mesh library is both slower and wrong at holes and folds.
"""
from __future__ import annotations

import numpy as np


def grid_faces(valid: np.ndarray) -> np.ndarray:
    """Triangles of a range-image grid, as indices into its valid cells.

    valid : (R, C) bool, rows top-down; vertex i is the i-th valid cell in row-major
        order (the order of ``np.flatnonzero(valid)``).
    Returns (F, 3) int64.  Each 2x2 cell with corners a=(r, c), b=(r, c+1),
    c=(r+1, c), d=(r+1, c+1) is split along the b-c diagonal into (a, c, b) and
    (b, c, d); a triangle is kept when its own 3 corners are valid (so a cell with one
    missing corner still gives one triangle).  With x to the right and y up (rows
    top-down), both triangles wind counter-clockwise seen from +z, i.e. their normals
    face the scanner.  Triangles come cell by cell in row-major order.
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim != 2:
        raise ValueError(f"valid must be (R, C), got {valid.shape}")
    rows, cols = valid.shape
    if rows < 2 or cols < 2:
        return np.empty((0, 3), np.int64)
    vid = np.full(valid.shape, -1, dtype=np.int64)
    vid[valid] = np.arange(int(valid.sum()), dtype=np.int64)
    a, b = vid[:-1, :-1], vid[:-1, 1:]
    c, d = vid[1:, :-1], vid[1:, 1:]
    tris = np.stack([np.stack([a, c, b], -1), np.stack([b, c, d], -1)], axis=2)
    tris = tris.reshape(-1, 3)
    return np.ascontiguousarray(tris[(tris >= 0).all(axis=1)])


def grid_mesh(xyz: np.ndarray, valid: np.ndarray):
    """Vertices, faces and grid index of a range-image grid.

    xyz : (R, C, 3) float64, mm, rows top-down; valid : (R, C) bool.
    Returns ``(vertices (V, 3) float64, faces (F, 3) int64, grid_index (V,) int64)``
    where vertices are the valid cells in row-major order and ``grid_index`` is each
    vertex's row-major index ``r * C + c`` in the grid.
    """
    valid = np.asarray(valid, dtype=bool)
    grid_index = np.flatnonzero(valid).astype(np.int64)
    vertices = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)[grid_index]
    return vertices, grid_faces(valid), grid_index
