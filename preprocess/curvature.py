"""Vertex normals, principal curvatures and the shape index of a triangle mesh.

The three quantities behind AMDFN's normal and curvature images (seed
``amdfn_3d_fer_multichannel_fusion``, section III-B-4/5):

* :func:`vertex_normals` -- eq. 3-4: unit face normals summed over the faces around a
  vertex and normalised (the paper's *uniform* weighting; area and angle weighting on
  request).
* :func:`principal_curvatures` -- eq. 6-7: Goldfeather & Interrante's local cubic fit
  that uses the neighbours' *normals* as well as their positions ("A novel cubic-order
  algorithm for approximating principal direction vectors", ACM TOG 2004).  The
  paper's eq. 7 prints the Weingarten matrix as ``[[A, B], [C, D]]``: a typo, the
  matrix of the fit ``z = A/2 x^2 + B xy + C/2 y^2 + ...`` is the symmetric
  ``[[A, B], [B, C]]`` (D is a cubic coefficient), and that is what is used here.
* :func:`shape_index` -- eq. 5, written with ``arctan2`` so that umbilic and planar
  points are defined.

Conventions (fixed here, tested in ``tests/preprocess/test_curvature.py``)
------------------------------------------------------------------------
* Millimetres; curvatures in 1/mm.
* Normals follow the faces' winding by the right-hand rule: for a face (a, b, c) the
  normal is ``(b - a) x (c - a)`` normalised.  Scans wound toward the viewer (+Z) get
  normals toward the viewer; a closed surface wound counter-clockwise seen from outside
  gets outward normals.
* Curvature sign: positive where the surface bends *toward* the normal.  With outward
  normals a convex sphere of radius R has ``k1 = k2 = -1/R``; a concave bowl seen from
  its open side (normal pointing out of the bowl) has ``+1/R``.  With this sign eq. 5
  gives 1 on a convex cap (the nose tip) and 0 on a cup (an eye socket) -- Dorai & Jain's
  scale (cup 0, rut 0.25, saddle 0.5, ridge 0.75, cap 1).

Why hand-written
----------------
No well-kept library implements this estimator: trimesh offers ball-integral mean and
Gaussian curvature; pymeshlab (VCG) offers quadric fits to positions, Taubin's and
normal-cycle estimators; none fits the cubic with the neighbours' normals that the
paper names.  The fit is also the hot spot of the 3-D chain, so it is written as
batched numpy in float64:

* normals: component-wise cross products in cache-sized chunks of faces, summed per
  vertex by ``np.bincount``;
* neighbourhoods: the 2-ring is the pattern of A @ A (A = H + H^T the edge adjacency
  from the half-edge matrix H, one scipy sparse product), or a k-d tree ball;
* per batch of ~32k (vertex, neighbour) pairs in a padded (K, n) table: six gathers,
  the rotation into each vertex's frame, and the 42 neighbourhood moments
  (``sum x^p y^q``, ``sum z x^p y^q``, ...) by 10 grouped ``einsum`` reductions --
  the 7x7 normal equations are linear in those moments, so no (V, 3K, 7) design
  matrix is ever formed;
* per chunk of ~7k vertices: the normal equations assembled from the moments and
  solved by a Gaussian elimination vectorised across vertices that updates only the
  upper triangle (cubic unknowns first, so only the 3x3 Schur complement in A, B, C
  is back-substituted).

Speed (``benchmarks/bench_curvature.py``, this 2-core machine shared with other jobs,
best of interleaved rounds, process memory settings of ``pipeline.allocator``): 36k-
vertex grid face ~34-44 ms single-threaded against ~110-150 ms for pymeshlab's
"Quadric Fitting" (ratio 2.2-3.4, mostly 3.0-3.4; CPU-time ratio 3.1-3.7); 160k
vertices ~145-210 ms against ~510-900 ms (2.7-4.0, mostly 3.2-3.5).  The work is
memory-bound numpy passes (~35 ns per (vertex, neighbour) pair for ~140 array
operations), so load from other processes on the shared caches costs it more than
pymeshlab's compute-bound loop; without the allocator settings ~25 % of the time went
to page faults (freed blocks returned to the kernel and faulted in again).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from data_schema.errors import InputError

__all__ = ["Curvatures", "vertex_normals", "principal_curvatures", "shape_index"]

# A face whose two edges at a corner are parallel to within this sine has no normal.
_DEGENERATE_SINE = 1e-12
# The fallback normal of a vertex with no usable face and no usable neighbour: the
# registered face looks along +Z (DESIGN.md), so +Z is the least surprising guess.
_FALLBACK_NORMAL = np.array([0.0, 0.0, 1.0])
# Coordinates beyond this (mm) are rejected as garbage rather than risk overflow.
_MAX_COORD_MM = 1e9
# Pivot (after Jacobi scaling, so in (0, 1]) below which a fit counts as singular.
_PIVOT_TOL = 1e-10


@dataclass(frozen=True)
class Curvatures:
    """Principal curvatures of every vertex.

    k1, k2 : (V,) float64, 1/mm, ``k1 >= k2`` everywhere; positive where the surface
        bends toward the vertex normal (a convex sphere with outward normals has
        ``k1 = k2 = -1/R``).  Never NaN; 0 where no fit was possible.
    dir1, dir2 : (V, 3) float64 unit tangent vectors of the principal directions of
        ``k1`` and ``k2``; ``dir2 = normal x dir1``.  At umbilic points (k1 = k2) any
        tangent pair is correct; the one returned is the local frame's x/y axes.
    ok : (V,) bool, True where the full 7-unknown cubic fit was well posed.  False
        where it fell back to the 3-unknown quadratic fit (with normals) or, if even
        that was singular (fewer than two usable neighbours), to ``k1 = k2 = 0``.
    """

    k1: np.ndarray
    k2: np.ndarray
    dir1: np.ndarray
    dir2: np.ndarray
    ok: np.ndarray


# --------------------------------------------------------------------------- checks

def _check_vertices(vertices, where: str) -> np.ndarray:
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(where, f"vertices must have shape (V, 3), got {v.shape}")
    if v.shape[0] == 0:
        raise InputError(where, "empty mesh: no vertices")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise InputError(where, f"vertices must be real numbers, got dtype {v.dtype}")
    v = np.ascontiguousarray(v, dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        raise InputError(where, f"vertices contain {int(bad.any(axis=1).sum())} non-finite "
                                f"(NaN/inf) points")
    big = float(np.abs(v).max())
    if big > _MAX_COORD_MM:
        # Far beyond any scanner (1000 km); such numbers only come from corrupt files.
        raise InputError(where, f"vertex coordinates reach {big:.3g} mm (> {_MAX_COORD_MM:g})")
    return v


def _check_faces(faces, n_vertices: int, where: str) -> np.ndarray:
    f = np.asarray(faces)
    if f.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(where, f"faces must have shape (F, 3), got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(where, f"faces must be integer vertex indices, got dtype {f.dtype}")
    f = f.astype(np.int64, copy=False)
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= n_vertices:
        raise InputError(where, f"face indices span [{lo}, {hi}] but there are "
                                f"{n_vertices} vertices")
    return f


# -------------------------------------------------------------------------- normals

def vertex_normals(vertices, faces, *, weighting: str = "uniform") -> np.ndarray:
    """Unit vertex normals, AMDFN eq. 3-4.

    Parameters
    ----------
    vertices : (V, 3) float, mm.  Finite.
    faces : (F, 3) int, indices into ``vertices``; F may be 0.
    weighting : how the faces around a vertex are weighted before normalising:
        ``"uniform"`` -- unit face normals summed (the paper's eq. 4, the default);
        ``"area"`` -- weighted by face area; ``"angle"`` -- weighted by the face's
        interior angle at the vertex (insensitive to how a polygon was triangulated).

    Returns
    -------
    (V, 3) float64 unit vectors, oriented by the faces' winding (right-hand rule:
    face (a, b, c) has normal ``(b - a) x (c - a)``, which equals eq. 3's
    ``(V1 - V2) x (V2 - V3)``).

    Degenerate input never yields NaN: zero-area faces (repeated or collinear corners)
    contribute nothing; a vertex whose weighted sum vanishes (no face, only degenerate
    faces, or faces that cancel) gets the normalised mean of its edge neighbours'
    normals, and if that is also zero, +Z ``(0, 0, 1)``, the registered viewing
    direction.

    Raises
    ------
    InputError : wrong shapes, non-finite vertices, out-of-range face indices, empty mesh,
        unknown ``weighting``.
    """
    where = "vertex_normals"
    v = _check_vertices(vertices, where)
    f = _check_faces(faces, len(v), where)
    if weighting not in ("uniform", "area", "angle"):
        raise InputError(where, f"weighting must be 'uniform', 'area' or 'angle', "
                                f"got {weighting!r}")
    return _vertex_normals(v, f, weighting)


def _vertex_normals(v: np.ndarray, f: np.ndarray, weighting: str = "uniform") -> np.ndarray:
    """:func:`vertex_normals` on checked input.

    Component-wise (~5x faster than ``np.cross`` on (F, 3) rows) and in chunks of
    ``_FACE_CHUNK`` faces, so that the ~25 temporaries stay in cache instead of each
    being a fresh multi-MB array (measured ~2x faster on 320k faces); the weighted
    face normals land straight in the per-corner layout the bincounts read.
    """
    V, F = len(v), len(f)
    acc = np.zeros((3, V))
    mag = 0.0
    if F:
        vt = [np.ascontiguousarray(v[:, k]) for k in range(3)]
        ft = np.ascontiguousarray(f.T)
        idx = ft.ravel()                                   # corner c of face i at c F + i
        wts = np.empty((3, 3, F))                          # [xyz][corner] weighted normal
        wmag = np.empty((3, F)) if weighting != "uniform" else None
        for s in range(0, F, _FACE_CHUNK):
            e = min(s + _FACE_CHUNK, F)
            _face_terms(vt, ft[:, s:e], weighting, wts[:, :, s:e],
                        None if wmag is None else wmag[:, s:e])
        for k in range(3):
            acc[k] = np.bincount(idx, weights=wts[k].ravel(), minlength=V)
        # Sums of unit vectors (uniform): an absolute test suffices; otherwise the sum
        # is judged against the total weight.
        mag = 1.0 if wmag is None else np.bincount(idx, weights=wmag.ravel(), minlength=V)
    norm = np.sqrt(acc[0] * acc[0] + acc[1] * acc[1] + acc[2] * acc[2])
    # "Sums to ~0" is judged against the size of what was summed (faces that cancel).
    bad = ~(norm > 1e-9 * mag) | (norm == 0)
    out = np.empty((V, 3))
    if bad.any():
        good_v = ~bad
        out[good_v] = (acc[:, good_v] / norm[good_v]).T
        out[bad] = _fallback_normals(out, bad, f)
    else:
        out[:] = (acc / norm).T
    return out


# Faces per chunk of the normal computation (~25 float64 temporaries of this length).
_FACE_CHUNK = 1 << 13


def _face_terms(vt, ft, weighting: str, wts: np.ndarray, wmag) -> None:
    """Weighted normals of a chunk of faces, per corner, into ``wts`` (3 xyz, 3 corners,
    n) and, for area / angle weighting, the weights into ``wmag`` (3 corners, n).

    vt : three (V,) coordinate arrays; ft : (3, n) corner indices of the chunk.
    """
    p = [[vt[k][ft[c]] for k in range(3)] for c in range(3)]        # p[corner][xyz]
    ea = [p[1][k] - p[0][k] for k in range(3)]
    eb = [p[2][k] - p[0][k] for k in range(3)]
    cr = [ea[1] * eb[2] - ea[2] * eb[1], ea[2] * eb[0] - ea[0] * eb[2],
          ea[0] * eb[1] - ea[1] * eb[0]]
    a2 = cr[0] * cr[0] + cr[1] * cr[1] + cr[2] * cr[2]                 # (2 area)^2
    la = ea[0] * ea[0] + ea[1] * ea[1] + ea[2] * ea[2]
    lb = eb[0] * eb[0] + eb[1] * eb[1] + eb[2] * eb[2]
    # Zero-area faces (repeated or collinear corners) have no normal: weight 0.
    good = (a2 > 0) & (a2 > _DEGENERATE_SINE ** 2 * la * lb)
    inv = np.zeros_like(a2)
    inv[good] = 1.0 / np.sqrt(a2[good])
    if weighting == "angle":
        ang = _corner_angles(p)
        for k in range(3):                                   # unit normal x angle
            unit = cr[k] * inv
            for c in range(3):
                np.multiply(unit, ang[c], out=wts[k, c])
        for c in range(3):
            np.multiply(ang[c], good, out=wmag[c])
        return
    wf = inv if weighting == "uniform" else good.astype(np.float64)
    for k in range(3):
        wts[k, :] = cr[k] * wf
    if wmag is not None:
        wmag[:] = np.sqrt(a2) * good


def _corner_angles(p) -> list[np.ndarray]:
    """Interior angles (radians) at the three corners; p[corner][xyz] are (F,) arrays."""
    out = []
    for c in range(3):
        o, q, r = p[c], p[(c + 1) % 3], p[(c + 2) % 3]
        a = [q[k] - o[k] for k in range(3)]
        b = [r[k] - o[k] for k in range(3)]
        cx = a[1] * b[2] - a[2] * b[1]
        cy = a[2] * b[0] - a[0] * b[2]
        cz = a[0] * b[1] - a[1] * b[0]
        # atan2(|a x b|, a . b) stays accurate for angles near 0 and pi.
        out.append(np.arctan2(np.sqrt(cx * cx + cy * cy + cz * cz),
                              a[0] * b[0] + a[1] * b[1] + a[2] * b[2]))
    return out


def _fallback_normals(normals: np.ndarray, bad: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Normals for the ``bad`` vertices: mean of good edge neighbours, else +Z."""
    nb = np.flatnonzero(bad)
    res = np.tile(_FALLBACK_NORMAL, (len(nb), 1))
    if len(faces):
        src = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        src = np.concatenate([src, src[:, ::-1]])          # both directions of each edge
        keep = bad[src[:, 0]] & ~bad[src[:, 1]]
        i, j = src[keep, 0], src[keep, 1]
        if len(i):
            slot = np.full(len(bad), -1)
            slot[nb] = np.arange(len(nb))
            s = np.zeros((len(nb), 3))
            for c in range(3):
                s[:, c] = np.bincount(slot[i], weights=normals[j, c], minlength=len(nb))
            n = np.linalg.norm(s, axis=1)
            use = n > 1e-9
            res[use] = s[use] / n[use, None]
    return res


# -------------------------------------------------------------------- neighbourhoods

def _ring_csr(faces: np.ndarray, V: int, rings: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of each vertex's n-ring through mesh edges, itself included.

    Uses the edge adjacency A without self-loops: in a triangle mesh every edge has a
    third vertex, so the walks of exactly n >= 2 steps (the pattern of A^n) reach the
    vertex itself and everything within n edges -- one sparse product for the 2-ring
    on a smaller matrix than A + I.  Vertices on no face get the self-loop explicitly.

    A = H + H^T with H the half-edge matrix (a -> b for each face edge): in a
    consistently wound mesh H already holds almost every edge once per direction, so
    building it sorts and merges half as many entries as building A from both
    directions of every face edge (measured 2.5x faster; the pattern is the same).
    """
    a = faces.ravel()
    b = faces[:, [1, 2, 0]].ravel()                  # a -> b runs over every face edge
    # Only the sparsity pattern is used; int32 walk counts cannot overflow for any
    # real valence.
    H = sp.csr_array((np.ones(len(a), np.int32), (a, b)), shape=(V, V))
    A = H + H.T
    own = np.arange(V) if rings == 1 or len(a) == 0 else \
        np.flatnonzero(np.bincount(a, minlength=V) == 0)
    if len(own):
        A = A + sp.csr_array((np.ones(len(own), np.int32), (own, own)), shape=(V, V))
    R = A
    for _ in range(rings - 1):
        R = R @ A
    return R.indptr, R.indices


# Radius neighbourhoods: the ball is sampled, not taken whole.  A 0.8 mm scan holds
# ~300 vertices within 8 mm against the 2-ring's 18, and the fit's cost grows with the
# count.  The fit's noise falls with the radius squared but only with the square root
# of the count, so the neighbours are one vertex per cube of side
# radius / _BALL_CELLS_PER_RADIUS (~10-13 in a ball on a surface, whatever the radius).
# Roughness on the real scans of RenderParams, roughest scan at 10 mm: 2 cubes per
# radius 0.077 (more samples, a slower fit), 1.75 0.081, 1.5 0.086.  The speed at this
# setting is bench_curvature's ratio.
_BALL_CELLS_PER_RADIUS = 1.75
# Vertices share one ball per cube of half the sample's side, centred on the members'
# mean (at most the cube's diagonal, sqrt(3) / 3.5 radius, from a member): one k-d
# tree query per group instead of one per vertex.
# A group whose sampled ball holds fewer samples than this (a mesh coarser than the
# radius, a border) takes this many nearest samples instead.
_BALL_MIN_NEIGHBOURS = 8


def _cell_keys(q: np.ndarray) -> np.ndarray:
    """(V,) int64 id of each row of the non-negative integer cell coordinates ``q``
    (V, 3); equal ids = same cell.  Exact (no hashing) while the grid spans < 2^62
    cells; beyond that (a radius absurdly small for the mesh) by np.unique."""
    span = q.max(axis=0) + 1
    if float(span[0]) * float(span[1]) * float(span[2]) >= 2.0 ** 62:
        return np.unique(q, axis=0, return_inverse=True)[1].ravel().astype(np.int64)
    return (q[:, 0] * span[1] + q[:, 1]) * span[2] + q[:, 2]


def _radius_csr(v: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, perm): each vertex's sampled ball of ``radius`` mm, itself
    first, with the rows in the order ``perm`` (row r is vertex ``perm[r]``; indices
    are row numbers too).  The rows go by ball size, so that the fit's padded batches
    (``_moments_batch`` pads each batch to its largest ball) waste little.

    The ball's members are the sample vertices (one per cube of side
    ``radius / _BALL_CELLS_PER_RADIUS``: the first vertex of its first half-side cube)
    within ``radius`` of the mean of the vertex's
    group (the vertices of its cube of side ``radius / (2 _BALL_CELLS_PER_RADIUS)``,
    half the sample's, so both grids come from one set of cell coordinates).
    A vertex left with fewer than ``_BALL_MIN_NEIGHBOURS`` others (a border, a mesh
    coarser than the cubes) takes its ``_BALL_MIN_NEIGHBOURS`` nearest sample vertices
    instead.
    """
    V = len(v)
    q = ((v - v.min(axis=0)) * (2.0 * _BALL_CELLS_PER_RADIUS / radius)).astype(np.int64)
    _, first, group = np.unique(_cell_keys(q), return_index=True, return_inverse=True)
    group = group.ravel()
    G = len(first)
    # the sample cubes (twice the side) from the groups' cells: a unique over G, not V
    _, sample_group = np.unique(_cell_keys(q[first] >> 1), return_index=True)
    sample = first[sample_group]
    size = np.bincount(group, minlength=G)
    centre = np.stack([np.bincount(group, weights=v[:, k], minlength=G) for k in range(3)],
                      axis=1) / size[:, None]
    samples = cKDTree(v[sample])
    pairs = cKDTree(centre).sparse_distance_matrix(samples, radius, output_type="ndarray")
    gi, members = pairs["i"], sample[pairs["j"]]
    few = np.bincount(gi, minlength=G) < _BALL_MIN_NEIGHBOURS
    if few.any():   # too few in reach (a border, a coarse mesh): the nearest samples
        k = min(_BALL_MIN_NEIGHBOURS, len(sample))
        nn = samples.query(centre[few], k=k)[1].reshape(-1, k)
        drop = few[gi]
        gi = np.concatenate([gi[~drop], np.repeat(np.flatnonzero(few), k)])
        members = np.concatenate([members[~drop], sample[nn].ravel()])
    gcount = np.bincount(gi, minlength=G)
    # The groups' member lists, grouped: a stable sort of 16-bit keys is numpy's radix
    # sort (O(n), ~5x faster than int64).
    members = members[np.argsort(gi.astype(np.uint16) if G <= 1 << 16 else gi, kind="stable")]
    gptr = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(gcount, out=gptr[1:])
    count = gcount[group] + 1
    perm = np.argsort(count, kind="stable")
    row_of = np.empty(V, dtype=np.int64)
    row_of[perm] = np.arange(V)
    count = count[perm]
    indptr = np.zeros(V + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    # Row r (vertex perm[r]): itself, then its group's members (itself among them if
    # it is a sample vertex: a second zero row in every moment, harmless).
    indices = np.empty(int(indptr[-1]), dtype=np.int64)
    indices[indptr[:-1]] = np.arange(V)
    g = group[perm]
    rest = np.ones(len(indices), dtype=bool)
    rest[indptr[:-1]] = False
    src = np.repeat(gptr[g] - indptr[:-1] - 1, count - 1) + np.flatnonzero(rest)
    indices[rest] = row_of[members[src]]
    return indptr, indices, perm


# ------------------------------------------------------- the cubic fit, symbolically
#
# Unknowns in elimination order: the four cubic coefficients first, so that after
# eliminating them the 3x3 Schur complement in (A, B, C) is solved directly and the
# cubic coefficients never need back-substitution.
_UNKNOWNS = ("D", "E", "F", "G", "A", "B", "C")
# Each neighbour gives three equations (AMDFN eq. 6).  A row maps an unknown to
# (coefficient, (p, q)) meaning coefficient * x^p y^q; the right-hand sides are the
# neighbour's height z and its normal's slopes z_x = -a/c, z_y = -b/c.  The code
# carries sx = a/c, sy = b/c and flips the sign of those rows' coefficients instead.
_ROW_Z = {"A": (0.5, (2, 0)), "B": (1.0, (1, 1)), "C": (0.5, (0, 2)), "D": (1.0, (3, 0)),
          "E": (1.0, (2, 1)), "F": (1.0, (1, 2)), "G": (1.0, (0, 3))}
_ROW_ZX = {"A": (1.0, (1, 0)), "B": (1.0, (0, 1)), "D": (3.0, (2, 0)),
           "E": (2.0, (1, 1)), "F": (1.0, (0, 2))}
_ROW_ZY = {"B": (1.0, (1, 0)), "C": (1.0, (0, 1)), "E": (1.0, (2, 0)),
           "F": (2.0, (1, 1)), "G": (3.0, (0, 2))}
_ROWS = (("z", 1.0, _ROW_Z), ("sx", -1.0, _ROW_ZX), ("sy", -1.0, _ROW_ZY))


def _normal_equation_tables():
    """The normal equations of the fit as a linear map of neighbourhood moments.

    Moments: ``S[p, q] = sum_nbrs x^p y^q`` (degree 2..6) and
    ``T[r, p, q] = sum_nbrs r * x^p y^q`` for r in z, sx, sy.  Returns
    (keys, C): ``keys`` lists the 42 moments as ("S", (p, q)) or (r, (p, q)), and
    C (56, 42) maps them to the 49 entries of M (row-major 7x7) and the 7 of b, in
    ``_UNKNOWNS`` order.
    """
    m_terms = {}
    b_terms = {}
    for rhs, sign, row in _ROWS:
        for i, ui in enumerate(_UNKNOWNS):
            if ui not in row:
                continue
            ci, (pi, qi) = row[ui]
            key = (i, (rhs, (pi, qi)))
            b_terms[key] = b_terms.get(key, 0.0) + sign * ci
            for j, uj in enumerate(_UNKNOWNS):
                if uj in row:
                    cj, (pj, qj) = row[uj]
                    key = (i, j, ("S", (pi + pj, qi + qj)))
                    m_terms[key] = m_terms.get(key, 0.0) + ci * cj
    keys = sorted({k[2] for k in m_terms}) + sorted({k[1] for k in b_terms})
    col = {k: n for n, k in enumerate(keys)}
    C = np.zeros((56, len(keys)))
    for (i, j, k), c in m_terms.items():
        C[7 * i + j, col[k]] += c
    for (i, k), c in b_terms.items():
        C[49 + i, col[k]] += c
    return keys, C


_MOMENT_KEYS, _MOMENTS_TO_SYSTEM = _normal_equation_tables()

# Per-pair work rows (each a (K, n) array in a batch): the neighbour's local x, y, the
# monomials of degree 2 and 3, the right-hand sides z, sx, sy and the normal's c.
_W_EXP = ((1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3))
_W_Z, _W_SX, _W_SY, _W_C = 9, 10, 11, 12
_W_ROWS = 13
# The 42 moments as grouped products ``row f x rows[slice]``, one einsum call
# (``"akn,kn->an"``) per group instead of one per moment (~20 % less time).  Checked
# against _MOMENT_KEYS below.
_GROUPS = ((0, slice(0, 9)), (1, slice(1, 5, 3)), (2, slice(5, 9)), (5, slice(5, 9)),
           (8, slice(6, 9)), (4, slice(4, 8, 3)), (4, slice(8, 9)),
           (_W_Z, slice(2, 9)), (_W_SX, slice(0, 5)), (_W_SY, slice(0, 5)))


def _group_layout():
    """(row offsets of each group, row of each _MOMENT_KEYS entry, total rows)."""
    rhs = {_W_Z: "z", _W_SX: "sx", _W_SY: "sy"}
    where, offsets, r = {}, [], 0
    for f, sl in _GROUPS:
        offsets.append(r)
        for w in range(_W_ROWS)[sl]:
            p, q = _W_EXP[w]
            if f in rhs:
                key = (rhs[f], (p, q))
            else:
                key = ("S", (p + _W_EXP[f][0], q + _W_EXP[f][1]))
            where.setdefault(key, r)
            r += 1
    missing = [k for k in _MOMENT_KEYS if k not in where]
    assert not missing, missing
    return offsets, [where[k] for k in _MOMENT_KEYS], r


_GROUP_OFFSETS, _MOMENT_ROW, _N_MOMENT_ROWS = _group_layout()
# Upper triangle of M and all of b as short sums over moment rows: [(row, [(coef, m)])],
# rows 0..48 = M row-major (i <= j only), 49..55 = b.
_SYSTEM_TERMS = [(r, [(c, _MOMENT_ROW[k]) for k, c in enumerate(_MOMENTS_TO_SYSTEM[r])
                      if c != 0.0])
                 for r in range(56) if r >= 49 or r // 7 <= r % 7]
# Neighbour slots (K x chunk) per batch: sized so that the ~20 work arrays of a batch
# stay within a few MB of cache and the batch loop's Python overhead stays small.
_BATCH_SLOTS = 1 << 15
# Vertices per solve batch (56 x this float64 of normal equations, ~4 MB).
_SOLVE_BATCH = 1 << 13


# ----------------------------------------------------------------------- the solver

def _frames(n: np.ndarray) -> np.ndarray:
    """(3, 3, N) rows e1, e2, n (each (3, N)) of right-handed orthonormal frames, e1 x e2 = n.

    ``n`` : (N, 3) unit normals.  Closed form of Duff et al. (JCGT 2017), branch-free;
    the paper picks the tangent axes at random, any orthonormal pair is valid.
    """
    nx, ny, nz = n[:, 0], n[:, 1], n[:, 2]
    s = np.copysign(1.0, nz)
    a = -1.0 / (s + nz)
    b = nx * ny * a
    return np.stack([np.stack([1.0 + s * nx * nx * a, s * b, -s * nx]),
                     np.stack([b, s + ny * ny * a, -ny]),
                     np.stack([nx, ny, nz])])


class _Workspace:
    """Work arrays reused across the batches of one thread: allocating and freeing
    multi-MB arrays per batch costs page faults that rival the arithmetic."""

    def __init__(self, K: int, n: int):
        self.nb = np.empty(n * K, dtype=np.intp)
        self.G = np.empty((6, n * K))
        self.W = np.empty((_W_ROWS, n * K))
        self.slots = np.arange(K)


def _moments_batch(s: int, e: int, indptr, indices, PN, Fr, min_cos, ws: _Workspace,
                   mom, n_used, off: int):
    """Neighbourhood moments of vertices s..e-1 into ``mom[:, s-off:e-off]`` (rows as
    laid out by ``_GROUPS``), the number of usable neighbours into ``n_used`` likewise.

    PN : six (V,) float64 arrays x, y, z, nx, ny, nz of all vertices; Fr : (3, 3, >= e-s)
    local frames (rows e1, e2, n) of the batch's vertices.
    """
    n = e - s
    ip0, ip1 = int(indptr[s]), int(indptr[e])
    cnt = np.diff(indptr[s:e + 1])
    K = int(cnt.max())
    # Padded (K, n) neighbour table; padding repeats the vertex itself, whose local
    # coordinates and normal slopes are zero, so it adds nothing to any moment.
    # Filled through the transposed view (CSR order); neighbour slot k of all vertices
    # is one contiguous row, which the reductions below sum over fastest.
    nb = ws.nb[:K * n].reshape(K, n)
    nb[:] = np.arange(s, e)
    nb.T[ws.slots[:K] < cnt[:, None]] = indices[ip0:ip1]

    G = ws.G[:, :K * n].reshape(6, K, n)
    for r in range(6):
        np.take(PN[r], nb, out=G[r], mode="clip")   # "clip": no buffering; all valid
    for r in range(3):
        G[r] -= PN[r][s:e]
    # Local frame: x, y, z of each neighbour and a, b, c of its normal.
    W = ws.W[:, :K * n].reshape(_W_ROWS, K, n)
    for g, rows in ((0, (0, 1, _W_Z)), (1, (_W_SX, _W_SY, _W_C))):
        for f, w in enumerate(rows):
            np.einsum("ckn,cn->kn", G[3 * g:3 * g + 3], Fr[f, :, :n], out=W[w])
    x, y, a, b, c = W[0], W[1], W[_W_SX], W[_W_SY], W[_W_C]
    # A neighbour whose normal turns more than ~75 degrees away (a fold, an outlier, a
    # flipped face) would give a near-infinite slope a/c: drop it entirely.
    drop = c < min_cos
    used = cnt - 1                                   # ``cnt`` counts the vertex itself
    if drop.any():
        W[:, drop] = 0.0
        c[drop] = 1.0
        used = used - drop.sum(axis=0)
    n_used[s - off:e - off] = used
    np.divide(a, c, out=a)                           # sx = a / c  (z_x = -sx)
    np.divide(b, c, out=b)                           # sy = b / c  (z_y = -sy)
    np.multiply(x, x, out=W[2])
    np.multiply(x, y, out=W[3])
    np.multiply(y, y, out=W[4])
    np.multiply(W[2], x, out=W[5])
    np.multiply(W[2], y, out=W[6])
    np.multiply(W[4], x, out=W[7])
    np.multiply(W[4], y, out=W[8])
    m = mom[:, s - off:e - off]
    for (f, sl), r0 in zip(_GROUPS, _GROUP_OFFSETS):
        part = W[sl]
        np.einsum("akn,kn->an", part, W[f], out=m[r0:r0 + len(part)])


def _solve_batch(s: int, e: int, mom, n_used, Fr, out):
    """Normal equations from the moments ``mom[:, :e-s]`` and ``n_used[:e-s]`` of
    vertices s..e-1, solve, principal curvatures and directions into ``out`` =
    (k1, k2, ok, dir1, dir2).  Fr : (3, 3, e-s) the vertices' local frames."""
    n = e - s
    sysm = np.zeros((56, n))          # the lower triangle of M stays 0 (never assembled)
    tmp = np.empty(n)
    m = mom[:, :n]
    for r, terms in _SYSTEM_TERMS:
        dst = sysm[r]
        c0, k0 = terms[0]
        np.multiply(m[k0], c0, out=dst)
        for cf, k in terms[1:]:
            np.multiply(m[k], cf, out=tmp)
            dst += tmp
    abc, ok = _solve(sysm[:49].reshape(7, 7, n), sysm[49:])
    ok &= n_used[:n] >= 3                           # 3 neighbours = 9 equations >= 7
    A, B, C = abc
    H = 0.5 * (A + C)
    t = 0.5 * (A - C)
    # sqrt, not np.hypot (3x slower); an overflow is caught by _fit_all's final guard.
    R = np.sqrt(t * t + B * B)
    # Eigenvector of k1 at angle theta in the (e1, e2) plane, theta = atan2(B, t) / 2,
    # by half-angle formulas (no trigonometry); umbilics (R = 0) take theta = 0.
    flat = R == 0
    Rs = np.where(flat, 1.0, R)
    cos2 = np.where(flat, 1.0, t / Rs)
    ct = np.sqrt(0.5 * (1.0 + cos2))
    st = np.copysign(np.sqrt(np.maximum(0.5 * (1.0 - cos2), 0.0)), np.where(flat, 0.0, B))
    k1, k2, okv, d1, d2 = out
    np.add(H, R, out=k1[s:e])
    np.subtract(H, R, out=k2[s:e])
    okv[s:e] = ok
    e1, e2 = Fr[0], Fr[1]
    d1[s:e] = (ct * e1 + st * e2).T
    d2[s:e] = (ct * e2 - st * e1).T


def _solve(M: np.ndarray, b: np.ndarray):
    """Least squares for (A, B, C) from the (7, 7, n) normal equations, batched.

    Only the upper triangle of ``M`` is used (it is symmetric; the lower one must be
    finite, it is updated but never read).  Gaussian elimination
    without pivoting (M is positive semi-definite), vectorised across vertices, cubic
    unknowns first.  A vertex is well posed when every pivot exceeds ``_PIVOT_TOL``
    times its diagonal entry -- the pivots of the Jacobi-scaled matrix, so the test
    does not depend on the neighbourhood's size in mm.  Elsewhere the 3-unknown
    quadratic fit (the same equations without the cubic terms: the (A, B, C) block of
    M) is solved, or 0 if that is singular too.

    Returns ((3, n) A, B, C in 1/mm, (n,) bool well-posed).  ``M`` and ``b`` are
    overwritten.
    """
    n = M.shape[2]
    tmp = np.empty((7, n))
    f = np.empty((6, n))
    diag = np.einsum("iin->in", M).copy()
    quad_M, quad_b = M[4:, 4:].copy(), b[4:].copy()
    ok = np.ones(n, dtype=bool)
    piv = np.empty((7, n))
    for k in range(7):
        p = M[k, k]
        good = p > _PIVOT_TOL * diag[k]
        ok &= good
        piv[k] = np.where(good, p, 1.0)              # keeps flagged vertices finite
        if k < 6:
            m = 6 - k
            fk = f[:m]
            np.divide(M[k, k + 1:], piv[k], out=fk)  # = column k / pivot, by symmetry
            # Rank-1 update of the upper triangle of the trailing block, row by row
            # (the lower triangle is never read: half the work of the full block).
            for i in range(m):
                r = k + 1 + i
                t = tmp[:7 - r]
                np.multiply(M[k, r:], fk[i], out=t)
                M[r, r:] -= t
            t = tmp[:m]
            np.multiply(fk, b[k], out=t)
            b[k + 1:] -= t
    u = np.empty((3, n))
    for k in (6, 5, 4):
        acc = b[k].copy()
        for j in range(k + 1, 7):
            acc -= M[k, j] * u[j - 4]
        u[k - 4] = acc / piv[k]
    if not ok.all():
        bad = np.flatnonzero(~ok)
        qm = quad_M[:, :, bad]
        # Fill the lower triangle from the upper one (only the upper was assembled).
        qm[1, 0], qm[2, 0], qm[2, 1] = qm[0, 1], qm[0, 2], qm[1, 2]
        u[:, bad] = _solve_quadratic(qm, quad_b[:, bad])
    return u, ok


def _solve_quadratic(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, m) solution of symmetric (3, 3, m) systems by Cramer's rule; 0 where singular."""
    d = np.sqrt(np.maximum(np.einsum("iin->in", M), 0.0))
    sc = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    m = M * sc[:, None, :] * sc[None, :, :]            # unit diagonal: det in [0, 1]
    r = b * sc

    def det3(q):
        return (q[0, 0] * (q[1, 1] * q[2, 2] - q[1, 2] * q[2, 1])
                - q[0, 1] * (q[1, 0] * q[2, 2] - q[1, 2] * q[2, 0])
                + q[0, 2] * (q[1, 0] * q[2, 1] - q[1, 1] * q[2, 0]))

    det = det3(m)
    good = det > _PIVOT_TOL
    dsafe = np.where(good, det, 1.0)
    out = np.zeros_like(r)
    for i in range(3):
        mi = m.copy()
        mi[:, i] = r
        out[i] = np.where(good, det3(mi) / dsafe, 0.0)
    return out * sc


def _fit_all(v, nrm, indptr, indices, min_cos, threads):
    """The cubic fit of every vertex -> (k1, k2, ok, dir1, dir2).

    Vertices go in chunks of ``_SOLVE_BATCH`` (shared out to ``threads`` threads;
    numpy releases the GIL): the neighbour moments of a chunk are computed in batches
    of ~``_BATCH_SLOTS`` (vertex, neighbour) pairs into a reused buffer, then the
    chunk's 7x7 systems are solved together -- the solve is ~150 numpy calls, so it
    wants long vectors, while the per-pair work wants cache-sized batches.
    """
    V = len(v)
    K = int(np.diff(indptr).max())
    n = int(min(V, max(64, _BATCH_SLOTS // K)))
    # Six separate arrays, not rows of one (6, V) array: np.take from a row *view* of a
    # large array measured ~4x slower per element (numpy 2.4) than from an array that
    # owns its data.
    PN = [np.array(a, dtype=np.float64, order="C") for a in (*v.T, *nrm.T)]
    out = (np.empty(V), np.empty(V), np.empty(V, dtype=bool), np.empty((V, 3)),
           np.empty((V, 3)))

    def work(part):
        ws = _Workspace(K, n)
        mom = np.empty((_N_MOMENT_ROWS, m))
        n_used = np.empty(m, dtype=np.int64)
        for S, E in part:
            # Frames per chunk, not for the whole mesh: large meshes then stream less
            # memory (computing them is a few vector operations).
            Fr = _frames(nrm[S:E])
            for s in range(S, E, n):
                _moments_batch(s, min(s + n, E), indptr, indices, PN, Fr[:, :, s - S:],
                               min_cos, ws, mom, n_used, S)
            _solve_batch(S, E, mom, n_used, Fr, out)

    # Chunks hold whole moment batches (no ragged batch per chunk) and give every
    # thread a share.
    m = n * max(1, min(_SOLVE_BATCH // n, -(-V // (n * max(1, threads)))))
    _run_split(work, [(s, min(s + m, V)) for s in range(0, V, m)], threads)
    k1, k2, ok, d1, d2 = out
    # Last line of defence (overflow on absurd coordinates): nothing non-finite leaves.
    # Whole-array tests first: the per-vertex mask (row-wise all() on (V, 3)) costs
    # ~2 % of the fit and is only needed when something is non-finite.
    if not all(np.isfinite(a).all() for a in out if a.dtype != bool):
        fin = np.isfinite(k1) & np.isfinite(k2) & np.isfinite(d1).all(1) & np.isfinite(d2).all(1)
        bad = ~fin
        k1[bad] = k2[bad] = 0.0
        ok[bad] = False
        Fr = _frames(nrm[bad])
        d1[bad] = Fr[0].T
        d2[bad] = Fr[1].T
    return out


def _run_split(fn, bounds, threads):
    """fn(list of (s, e)) on ``threads`` interleaved shares of ``bounds``."""
    t = min(threads, len(bounds))
    if t <= 1:
        fn(bounds)
        return
    with ThreadPoolExecutor(t) as ex:
        list(ex.map(fn, [bounds[i::t] for i in range(t)]))


def principal_curvatures(vertices, faces, normals=None, *, rings: int = 2,
                         radius_mm: float | None = None, min_normal_cos: float = 0.25,
                         threads: int = 1) -> Curvatures:
    """Principal curvatures and directions by the cubic fit with normals (AMDFN eq. 6-7).

    For each vertex: a local frame with the vertex normal as z; every neighbour gives
    three equations -- its height ``z`` and its normal's slopes ``z_x = -a/c``,
    ``z_y = -b/c`` (a, b, c its normal in the frame) -- for the seven coefficients
    A..G of ``z = A/2 x^2 + B xy + C/2 y^2 + D x^3 + E x^2 y + F x y^2 + G y^3``;
    least squares gives them, and k1 >= k2 are the eigenvalues of ``[[A, B], [B, C]]``.
    All equations have weight 1, as in the paper.

    Parameters
    ----------
    vertices : (V, 3) float, mm.  Finite.
    faces : (F, 3) int, indices into ``vertices``.  Used for the default normals and
        for the n-ring; may be empty when ``radius_mm`` and ``normals`` are given.
    normals : (V, 3) float vertex normals (normalised here), or None for
        ``vertex_normals(vertices, faces)``.  Their orientation fixes the sign of k.
    rings : neighbourhood = vertices within this many mesh edges (default 2, 18
        neighbours on a regular triangulation).  Ignored when ``radius_mm`` is given.
    radius_mm : if given, the neighbourhood is a sampled ball of this radius (mm): about
        a dozen vertices spread over it (:func:`_radius_csr`), so the cost does not grow
        with the radius; use it for irregular or noisy meshes (the render default).
    min_normal_cos : a neighbour whose normal makes ``cos < min_normal_cos`` with the
        vertex normal (default 0.25, about 75 degrees) is dropped: its slope equations
        would be near-singular.
    threads : batches of vertices processed in this many threads (numpy releases the
        GIL); 1 by default because the pipeline already runs one item per process.
        ``0`` means ``os.cpu_count()``.

    Returns
    -------
    Curvatures(k1, k2, dir1, dir2, ok); see :class:`Curvatures` for shapes, units and
    the sign convention.  Vertices with fewer than 3 usable neighbours, or whose
    neighbours do not determine the cubic (e.g. collinear), fall back to the quadratic
    fit (3 unknowns) or to 0 and get ``ok = False``.  Never NaN.

    Raises
    ------
    InputError : wrong shapes, non-finite input, out-of-range faces, empty mesh, bad
        parameters.
    """
    where = "principal_curvatures"
    v = _check_vertices(vertices, where)
    f = _check_faces(faces, len(v), where)
    V = len(v)
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float64)
        if nrm.shape != (V, 3):
            raise InputError(where, f"normals must have shape {(V, 3)}, got {nrm.shape}")
        ln = np.linalg.norm(nrm, axis=1)
        if not np.all(np.isfinite(ln)) or np.any(ln < 1e-12):
            raise InputError(where, "normals must be finite and non-zero")
        nrm = nrm / ln[:, None]
    if radius_mm is not None:
        if not (np.isfinite(radius_mm) and radius_mm > 0):
            raise InputError(where, f"radius_mm must be a positive number, got {radius_mm!r}")
        hood = lambda: _radius_csr(v, float(radius_mm))  # noqa: E731
    else:
        if int(rings) != rings or rings < 1:
            raise InputError(where, f"rings must be a positive integer, got {rings!r}")
        hood = lambda: (*_ring_csr(f, V, int(rings)), None)  # noqa: E731
    if not (-1.0 <= min_normal_cos < 1.0):
        raise InputError(where, f"min_normal_cos must be in [-1, 1), got {min_normal_cos!r}")
    nthreads = (os.cpu_count() or 1) if threads == 0 else max(1, int(threads))

    if normals is None and nthreads > 1:
        # Normals and neighbourhoods are independent and both release the GIL.
        with ThreadPoolExecutor(2) as ex:
            fut = ex.submit(_vertex_normals, v, f)
            indptr, indices, perm = hood()
            nrm = fut.result()
    else:
        if normals is None:
            nrm = _vertex_normals(v, f)
        indptr, indices, perm = hood()
    if perm is None:
        k1, k2, ok, d1, d2 = _fit_all(v, nrm, indptr, indices, min_normal_cos, nthreads)
    else:   # rows in the neighbourhood's order: fit there, then back to vertex order
        row_of = np.empty(V, dtype=np.int64)
        row_of[perm] = np.arange(V)
        k1, k2, ok, d1, d2 = (a[row_of] for a in _fit_all(v[perm], nrm[perm], indptr, indices,
                                                          min_normal_cos, nthreads))
    return Curvatures(k1=k1, k2=k2, dir1=d1, dir2=d2, ok=ok)


# ---------------------------------------------------------------------- shape index

def shape_index(k1, k2, *, planar_tol: float = 1e-6) -> np.ndarray:
    """Shape index in [0, 1], AMDFN eq. 5: ``1/2 - (1/pi) arctan((k1 + k2) / (k1 - k2))``.

    Parameters
    ----------
    k1, k2 : (V,) float (any equal shapes), 1/mm, principal curvatures in the sign
        convention of :func:`principal_curvatures` (convex cap negative).  They are
        re-sorted so that k1 >= k2 even if the caller swapped them.
    planar_tol : 1/mm.  Where both ``|k1|`` and ``|k2|`` are at most this (radius of
        curvature beyond 1 m by default) the point counts as planar.

    Returns
    -------
    Same shape as k1, float64 in [0, 1]: 0 cup, 0.25 rut, 0.5 saddle, 0.75 ridge, 1 cap
    (Dorai & Jain's scale).

    Written as ``arctan2(k1 + k2, k1 - k2)`` so that umbilic points (k1 = k2 != 0) give
    exactly 1 (convex cap, k < 0) or 0 (cup, k > 0) instead of 0/0.  Planar points,
    where the index is undefined and the sign of round-off curvatures would pick an
    arbitrary value, give 0.5 by convention.  Never NaN; infinite curvatures are
    handled by the same formula (equal infinities count as umbilic).

    Raises
    ------
    InputError : shapes differ, or a curvature is NaN.
    """
    a = np.asarray(k1, dtype=np.float64)
    b = np.asarray(k2, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError("shape_index", f"k1 {a.shape} and k2 {b.shape} differ in shape")
    if np.isnan(a).any() or np.isnan(b).any():
        raise InputError("shape_index", "curvatures contain NaN")
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    with np.errstate(invalid="ignore"):
        # abs() turns a -0.0 difference into +0.0: arctan2(y, -0.0) would jump by pi.
        diff = np.abs(hi - lo)
        tot = hi + lo
    # inf - inf: equal infinities are an umbilic (diff 0); opposite ones a saddle (tot 0).
    diff = np.where(np.isnan(diff), 0.0, diff)
    tot = np.where(np.isnan(tot), 0.0, tot)
    si = 0.5 - np.arctan2(tot, diff) / np.pi
    planar = (np.abs(hi) <= planar_tol) & (np.abs(lo) <= planar_tol)
    return np.clip(np.where(planar, 0.5, si), 0.0, 1.0)
