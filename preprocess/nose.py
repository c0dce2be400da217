"""Nose-tip detection and the sphere crop of a registered face (AMDFN III-B-2, after
Mian, Bennamoun & Owens 2006).

:func:`find_nose_tip` works on a face already registered to the canonical frame (it
looks along +Z, +Y up; :mod:`preprocess.registration`).  As Mian et al., it cuts the
face into horizontal slices (bands of y) and takes the most protruding point of each,
then the most protruding of those slice maxima.  Two guards make it robust to what
scanners produce:

* *spikes* (single vertices tens of mm off the surface): a vertex's protrusion is the
  **median z of its x-y neighbourhood** (its 16 nearest vertices in x-y within
  ``max(3 mm, 2 x vertex spacing)``), not its own z, and a vertex whose own z differs
  from that median by more than ``spike_mm`` is never a candidate;
* *thin bands of bad points* (a clump, a strand of hair, up to 2 slices tall): the
  slice-maximum profile is filtered by a running median over 5 neighbouring slices;
  the tip is taken near the peak of that filtered profile, from a slice whose maximum
  does not stand more than ``spike_mm`` above it.

Holes need nothing: they only remove points.  The peak of the median surface sits a
little off the apex, on the flatter side (toward the nasion), so the last step moves to
the highest vertex within that neighbourhood radius of the winner, skipping any vertex
that stands more than ``jump_mm`` above all of its own neighbours (a lone spike does; a
smooth apex does not).  The tip is a vertex: accuracy is about one vertex spacing.
With a landmark estimate (``hint``), the search is limited to the points within
``hint_radius_mm`` of it in the x-y plane.

Mian et al. handle unregistered faces by the altitude of a triangle inscribed in each
slice; here registration comes first, so the height along +Z is the altitude.

:func:`crop_sphere` keeps the faces whose three vertices lie within a sphere round the
nose tip, drops unreferenced vertices and then the small disconnected pieces (size =
surface area; a piece below ``min_component_fraction`` of the largest piece's area is
removed), keeping the order of the vertices and faces that remain.

Why by hand: no maintained library has a nose-tip detector; the crop is a few numpy
lines around ``scipy.sparse.csgraph.connected_components`` and, unlike trimesh's
``submesh``/``split``, keeps the original vertex order and returns the index arrays
that carry per-vertex and per-face data (uv, colours, landmark vertex indices) along.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from data_schema.errors import InputError
from preprocess.landmark_names import BU3DFE_NOSE_TIP_PAIR, ibug_index

_NEIGHBOURS = 16          # cap on the neighbourhood size of the robust height
_SPACING_SAMPLE = 4096    # vertices whose nearest neighbour estimates the spacing
_PROFILE_WINDOW = 5       # slices in the running median of the slice-maximum profile


@dataclass(frozen=True)
class NoseTip:
    """A detected nose tip.

    point : (3,) float64, mm, same frame as the vertices: ``vertices[index]``.
    index : int, the tip vertex (into the input vertices).
    method : how it was found: ``"slices"``, ``"slices+hint"``, or
        ``"slices(hint ignored: ...)"`` when no vertex lay near the hint and the whole
        face was searched.
    """

    point: np.ndarray
    index: int
    method: str


@dataclass(frozen=True)
class CroppedMesh:
    """A mesh cut out of a larger one.

    vertices : (V', 3) float64, mm.
    faces : (F', 3) int64 into ``vertices``.
    kept_index : (V',) int64, ascending: ``vertices == input_vertices[kept_index]``.
    face_index : (F',) int64, ascending: the rows of the input faces kept.
    removed_components : int, disconnected pieces dropped for being too small.
    """

    vertices: np.ndarray
    faces: np.ndarray
    kept_index: np.ndarray
    face_index: np.ndarray
    removed_components: int = 0

    def carry(self, per_vertex: np.ndarray) -> np.ndarray:
        """A per-vertex array of the input mesh (V, ...) -> its rows for the kept
        vertices (V', ...)."""
        return np.asarray(per_vertex)[self.kept_index]


# ------------------------------------------------------------------------ validation
def _vertices(vertices, item: str) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1:] != (3,):
        raise InputError(item, f"vertices must be (V, 3), got {v.shape}")
    if len(v) == 0:
        raise InputError(item, "empty mesh: no vertices")
    if not np.isfinite(v).all():
        raise InputError(item, f"{int((~np.isfinite(v)).any(axis=1).sum())} vertices "
                               "with NaN/inf coordinates")
    return v


def _faces(faces, n_vertices: int, item: str) -> np.ndarray:
    f = np.asarray(faces)
    if f.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if f.ndim != 2 or f.shape[1:] != (3,) or not np.issubdtype(f.dtype, np.integer):
        raise InputError(item, f"faces must be (F, 3) integers, got {f.shape} {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if f.min() < 0 or f.max() >= n_vertices:
        raise InputError(item, f"face vertex index out of range [0, {n_vertices})")
    return f


def _point3(p, what: str, item: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.shape != (3,) or not np.isfinite(a).all():
        raise InputError(item, f"{what} must be 3 finite numbers (mm), got {p!r}")
    return a


# ------------------------------------------------------------------------ nose tip
def landmark_nose_tip(points: np.ndarray, names: Sequence[str]) -> np.ndarray | None:
    """The nose tip a landmark set gives, as a hint for :func:`find_nose_tip`.

    points : (L, 3) float, mm; names : L names (``"ibug_30"``, Bosphorus ``"Nose
    tip"``, or BU-3DFE ``"bnd_37"`` + ``"bnd_42"``, whose midpoint is the usual
    stand-in).  Returns (3,) float64 mm, or None when the set has no nose tip.
    """
    p = np.asarray(points, dtype=np.float64)
    names = list(names)
    for i, name in enumerate(names):
        if ibug_index(name) == 30 and np.isfinite(p[i]).all():
            return p[i].copy()
    a, b = (f"bnd_{k}" for k in BU3DFE_NOSE_TIP_PAIR)
    if a in names and b in names:
        mid = 0.5 * (p[names.index(a)] + p[names.index(b)])
        if np.isfinite(mid).all():
            return mid
    return None


def _robust_height(xy: np.ndarray, z: np.ndarray, query: np.ndarray, tree: cKDTree,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Median z over the x-y neighbourhood (radius) of the vertices ``query``; and the
    neighbourhood sizes."""
    k = min(_NEIGHBOURS, len(xy))
    dist, idx = tree.query(xy[query], k=k, distance_upper_bound=radius)
    dist, idx = dist.reshape(len(query), k), idx.reshape(len(query), k)
    zz = np.append(z, np.nan)[idx]                 # missing neighbours -> index len(xy)
    count = np.isfinite(dist).sum(axis=1)
    med = np.empty(len(query))
    full = count == k                              # the usual case: plain median, fast
    med[full] = np.median(zz[full], axis=1)
    if not full.all():
        med[~full] = np.nanmedian(zz[~full], axis=1)
    return med, count


def _nearest_distinct(tree: cKDTree, query: np.ndarray, k: int) -> np.ndarray:
    """(Q,) distance from each query point (a point of the tree) to its nearest
    *distinct* neighbour among its ``k`` nearest, inf if all k coincide with it.

    Meshes with duplicated vertices (a triangle soup gives every vertex twins) would
    otherwise have spacing 0.  Most points have no twin: their second-nearest point
    (the first is the point itself) is the answer, so ``k`` neighbours are fetched
    only for the rest -- the same numbers for ~half the query time.
    """
    if k < 2:
        return np.zeros(1)
    d = tree.query(query, k=2)[0][:, 1]
    twin = ~(d > 0)
    if twin.any():
        dk = tree.query(query[twin], k=k)[0]
        d[twin] = np.where(dk > 0, dk, np.inf).min(axis=1)
    return d


def _slice_winner(y: np.ndarray, h: np.ndarray, slice_mm: float, spike_mm: float) -> int:
    """Index (into y/h) of the tip: the slice maxima, a running median of that profile
    over ``_PROFILE_WINDOW`` slices, the slice where the filtered profile peaks; then
    the highest slice maximum near it that does not stand more than ``spike_mm`` above
    the filtered profile (an artefact up to ``_PROFILE_WINDOW // 2`` slices tall)."""
    band = np.floor((y - y.min()) / slice_mm).astype(np.int64)
    order = np.lexsort((-h, band))                  # by band, highest h first
    bands, first = np.unique(band[order], return_index=True)
    winner = order[first]                           # (B,) slice maxima
    half = _PROFILE_WINDOW // 2
    nb = int(bands[-1]) + 1
    prof = np.full(nb + 2 * half, np.nan)           # padded with empty slices
    prof[bands + half] = h[winner]
    windows = np.stack([prof[k:k + nb] for k in range(_PROFILE_WINDOW)])
    smooth = np.nanmedian(windows, axis=0)          # (nb,), NaN only if no slice near
    best = int(np.nanargmax(smooth))
    by_band = dict(zip(bands.tolist(), winner.tolist()))
    pick, pick_h = None, -np.inf
    for b in range(best - half, best + half + 1):
        if b in by_band and prof[b + half] <= smooth[b] + spike_mm and prof[b + half] > pick_h:
            pick, pick_h = by_band[b], prof[b + half]
    if pick is None:                                # nothing usable round the peak
        pick = by_band[min(by_band, key=lambda b: abs(b - best))]
    return pick


def _local_top(xy: np.ndarray, z: np.ndarray, tree: cKDTree, allowed: np.ndarray,
               centre: int, radius: float, jump_mm: float) -> int:
    """The highest allowed vertex within ``radius`` (x-y) of ``centre`` that stands at
    most ``jump_mm`` above every other vertex of its own neighbourhood (a lone spike
    stands far above all of them; the apex of a smooth surface barely does)."""
    near = np.asarray(tree.query_ball_point(xy[centre], radius), dtype=np.int64)
    near = near[allowed[near]]
    if len(near) == 0:
        return centre
    k = min(_NEIGHBOURS, len(xy))
    dist, idx = tree.query(xy[near], k=k, distance_upper_bound=radius)
    dist, idx = dist.reshape(len(near), k), idx.reshape(len(near), k)
    zz = np.append(z, -np.inf)[idx]
    zz[idx == near[:, None]] = -np.inf               # not the vertex itself
    highest_other = zz.max(axis=1)
    fine = z[near] - highest_other <= jump_mm
    if not fine.any():
        return centre
    return int(near[fine][np.argmax(z[near[fine]])])


def find_nose_tip(vertices: np.ndarray, faces: np.ndarray | None = None, *,
                  hint: np.ndarray | None = None, hint_radius_mm: float = 20.0,
                  slice_mm: float = 2.0, spike_mm: float = 5.0, jump_mm: float = 2.0,
                  item: str = "find_nose_tip") -> NoseTip:
    """Nose tip of a registered face (looking along +Z, +Y up); method in the module
    docstring.

    vertices : (V, 3) float, mm, registered frame.
    faces : (F, 3) int or None; when given, vertices no face references are ignored.
    hint : (3,) float mm, a landmark estimate of the tip (registered frame), or None;
        the search is limited to vertices within ``hint_radius_mm`` of it in x-y (when
        none lies there the whole face is searched and ``method`` says so).
    slice_mm : height of the horizontal slices, mm.
    spike_mm : a vertex whose z differs from its neighbourhood median by more than this
        (mm) is never the tip; a slice maximum that stands this far above the running
        median of the slice profile is skipped.
    jump_mm : in the last step, a vertex standing more than this (mm) above every
        other vertex of its neighbourhood is taken for a spike.
    item : item id put in errors.

    Returns NoseTip(point (3,) float64 mm, index int, method str).  Raises InputError:
    vertices not (V, 3), empty or non-finite; bad faces; a non-finite hint; no vertex
    with at least 3 x-y neighbours (incl. itself) that is not a spike.
    """
    v = _vertices(vertices, item)
    use = np.ones(len(v), dtype=bool)
    if faces is not None:
        f = _faces(faces, len(v), item)
        use[:] = False
        use[f.ravel()] = True
    pool = np.flatnonzero(use)
    if len(pool) == 0:
        raise InputError(item, "no vertex is referenced by a face")
    xy_all, z_all = v[pool, :2], v[pool, 2]
    tree = cKDTree(xy_all)
    step = max(1, len(pool) // _SPACING_SAMPLE)     # a strided sample is plenty
    nn = _nearest_distinct(tree, xy_all[::step], min(8, len(pool)))
    positive = nn[np.isfinite(nn)]
    spacing = float(np.median(positive)) if len(positive) else 0.0
    if spacing == 0.0:
        raise InputError(item, "all vertices share one x-y position: no surface to search")

    method = "slices"
    cand = np.arange(len(pool))
    if hint is not None:
        hint = _point3(hint, "hint", item)
        d2 = np.sum((xy_all - hint[:2]) ** 2, axis=1)
        near = np.flatnonzero(d2 <= hint_radius_mm ** 2)
        if len(near):
            cand, method = near, "slices+hint"
        else:
            method = f"slices(hint ignored: no vertex within {hint_radius_mm:g} mm)"

    radius = max(3.0, 2.0 * spacing)
    h, count = _robust_height(xy_all, z_all, cand, tree, radius)
    ok = (count >= 3) & (np.abs(z_all[cand] - h) <= spike_mm)
    if not ok.any():
        raise InputError(item, "no vertex with a supported (non-spike) neighbourhood")
    cand, h = cand[ok], h[ok]
    winner = int(cand[_slice_winner(xy_all[cand, 1], h, slice_mm, spike_mm)])
    # the median surface peaks a little off the apex on the flatter side (toward the
    # nasion): step to the highest genuine vertex round it
    allowed = np.zeros(len(pool), dtype=bool)
    allowed[cand] = True
    tip = _local_top(xy_all, z_all, tree, allowed, winner, radius, jump_mm)
    return NoseTip(v[pool[tip]].copy(), int(pool[tip]), method)


# ------------------------------------------------------------------------ crop
def _face_areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def _any_face_area_above(v: np.ndarray, f: np.ndarray, area: float) -> bool:
    """Whether some face has an area above ``area`` (mm^2): face chunks in order, so
    an ordinary mesh answers from its first chunk instead of every face's area."""
    chunk = 4096
    return any(_face_areas(v, f[s:s + chunk]).max() > area for s in range(0, len(f), chunk))


def _zero_area(points: np.ndarray) -> float:
    """Area below which a face counts as degenerate, mm^2: rounding of a rotated
    collinear mesh leaves areas ~1e-14, not 0, so the test is relative to the extent."""
    extent = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
    return 1e-10 * max(extent, 1.0) ** 2


def crop_sphere(vertices: np.ndarray, faces: np.ndarray, center: np.ndarray,
                radius_mm: float = 80.0, *, min_component_fraction: float = 0.05,
                item: str = "crop_sphere") -> CroppedMesh:
    """Cut the part of a mesh inside a sphere, without the small detached pieces.

    vertices : (V, 3) float, mm; faces : (F, 3) int; center : (3,) float, mm (the nose
    tip); radius_mm : sphere radius, mm (a vertex at distance <= radius is inside).
    min_component_fraction : pieces (connected through shared vertices) whose surface
        area is below this fraction of the largest piece's are removed; 0 keeps all.
    item : item id put in errors.

    Keeps the faces whose three vertices are inside, then the vertices they reference,
    then the pieces large enough; order of vertices and faces is kept.  Returns
    CroppedMesh(vertices (V', 3), faces (F', 3), kept_index (V',), face_index (F',),
    removed_components).  Raises InputError: bad vertices / faces / centre, no face
    inside the sphere, or only zero-area faces inside.  ValueError: radius <= 0 or a
    fraction outside [0, 1] (parameters, not data).
    """
    if not (np.isfinite(radius_mm) and radius_mm > 0):
        raise ValueError(f"radius_mm must be > 0, got {radius_mm}")
    if not 0.0 <= min_component_fraction <= 1.0:
        raise ValueError(f"min_component_fraction must be in [0, 1], got {min_component_fraction}")
    v = _vertices(vertices, item)
    f = _faces(faces, len(v), item)
    c = _point3(center, "center", item)
    d = v - c
    inside = np.einsum("ij,ij->i", d, d) <= float(radius_mm) ** 2
    face_rows = np.flatnonzero(inside[f[:, 0]] & inside[f[:, 1]] & inside[f[:, 2]])
    if len(face_rows) == 0:
        raise InputError(item, f"no face lies within {radius_mm:g} mm of the centre "
                               f"{np.round(c, 2).tolist()}")
    kf = f[face_rows]
    used = np.zeros(len(v), dtype=bool)
    used[kf.ravel()] = True
    kept = np.flatnonzero(used)
    new_id = np.cumsum(used) - 1                      # old vertex id -> new (if used)
    kf = new_id[kf]

    # pieces: connected components of the vertex graph of the kept faces
    edges = np.concatenate([kf[:, [0, 1]], kf[:, [1, 2]], kf[:, [2, 0]]])
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                       shape=(len(kept), len(kept)))
    n_comp, label = connected_components(graph, directed=False)
    removed = 0
    if n_comp > 1 and min_component_fraction > 0:
        area = np.bincount(label[kf[:, 0]], weights=_face_areas(v[kept], kf),
                           minlength=n_comp)
        if area.max() <= _zero_area(v[kept]):
            raise InputError(item, "every face inside the sphere has zero area")
        big = area >= min_component_fraction * area.max()
        removed = int(n_comp - big.sum())
        keep_face = big[label[kf[:, 0]]]
        face_rows, kf = face_rows[keep_face], kf[keep_face]
        used2 = np.zeros(len(kept), dtype=bool)
        used2[kf.ravel()] = True
        kf = (np.cumsum(used2) - 1)[kf]
        kept = kept[used2]
    elif not _any_face_area_above(v, f[face_rows], _zero_area(v[kept])):
        raise InputError(item, "every face inside the sphere has zero area")
    return CroppedMesh(v[kept].copy(), kf.astype(np.int64), kept.astype(np.int64),
                       face_rows.astype(np.int64), removed)
