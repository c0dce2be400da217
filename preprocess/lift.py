"""Landmarks of a 3-D scan found in 2-D on its render and lifted back onto the mesh
(AMDFN III-B-1, Fig. 2: "render RGBD, detect feature points on the RGB image, project
them to the mesh using the depth recorded during rendering").

Three steps, all in :func:`lift_landmarks`:

1. **View.**  The mesh is turned so that the face looks along +Z, +Y up, the view
   :func:`preprocess.render.render_orthographic` expects.  Bosphorus, BU-3DFE and
   FaceScape scans already look roughly that way (``view=None``: identity).  For a scan
   in an arbitrary frame, :func:`frontal_view` estimates a rough rotation from the
   geometry alone (method below); or the caller passes one.
2. **Render and detect.**  The turned mesh is rendered orthographically (RGB from the
   texture or vertex colours) at ``size`` pixels and the 68 iBUG points are detected on
   that image with :func:`preprocess.landmarks.detect_landmarks`.  A render of 448 px
   puts a cropped face at ~300 px, well above what dlib needs (bench_landmarks: a
   >= 112 px face is found reliably with upsample 1).
3. **Lift.**  Each detected (sub-)pixel position is turned into the exact point of the
   render plane it stands for (pixel centres at integer coordinates, the detector's
   convention; ``x = xmin + (col + 0.5) p``, ``y = ymax - (row + 0.5) p``, the
   renderer's camera) and a ray is cast through it along -Z with open3d's
   ``RaycastingScene``: the first hit triangle is what the detector saw there.  The
   barycentric coordinates of the hit are recomputed in float64 from the triangle's
   x-y corners (the ray is parallel to Z, so its x-y *is* the hit's x-y); the 3-D point
   is those weights applied to the **input** vertices, so it lies exactly on the input
   mesh, in the input frame, with no round trip through the inverse rotation.
   Re-casting was chosen over interpolating the render's per-pixel hits: bilinear
   weights over the four surrounding pixels mix surfaces across depth edges (nose
   side, chin outline) and are only as fine as the pixel grid.  A point whose ray misses
   the mesh (background) is ``present=False`` with zeros, never NaN.

:func:`frontal_view` (rough frontalisation of an unregistered scan):

* the view axis is the direction of least spread of the vertices (PCA: a face scan is
  a shallow cap, wide and tall but not deep), its sign chosen so that the middle of the
  cap stands in front of its rim (the median height of the vertices in the inner
  quarter of the cap, by in-plane Mahalanobis radius, exceeds the median of all);
* the nose tip is found on the cloud seen along that axis with
  :func:`preprocess.nose.find_nose_tip` (spike-robust);
* the vertical is the line through the tip about which the face is mirror-symmetric:
  probes within ``_SYM_RADIUS_MM`` of the tip are mirrored across each candidate line
  (every 3 degrees over a half turn, then every 0.5 degree round the best) and matched
  to the nearest vertex; the cost is the median height mismatch after removing the part
  linear in the distance across the line (a residual yaw of the view axis tilts one
  half against the other; without this the minimum is shallow and often wrong);
* "up" is the side of that line where the surface falls off least within
  ``_RIDGE_FROM_MM .. _RIDGE_TO_MM`` of the tip (nasal bridge above, the drop to the
  upper lip below: about 2x apart on the sample's faces, more on real noses).
This is a heuristic for mm-scale face scans that show one face from the front half of
the head (not full heads, where least spread is not the view axis).  On the embedded
sample (Bosphorus, BU-3DFE and FaceScape styles, 58 scans under random rotations) it
lands within 3.1 degrees of the true frontal pose -- plenty for a frontal face detector,
which is all it is for; registration to the template does the fine work.  As a guard
against a wrong "up", ``lift_landmarks(view="auto")`` also tries the render turned by
quarter turns when the detector finds nothing (``try_turns``).

Why by hand: the ray casting is open3d's and the detection dlib's / MediaPipe's; the
glue (pixel -> ray geometry, exact float64 barycentrics, miss handling, the PCA +
symmetry + nose-ridge frontalisation) is what no library offers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_schema.errors import InputError
from preprocess.landmark_names import IBUG_NAMES, N_IBUG
from preprocess.scan import Landmarks

#: Default render size, pixels (see the module docstring).
DEFAULT_SIZE = 448

# frontal_view, symmetry search: probes within _SYM_RADIUS_MM of the nose tip (about
# _SYM_PROBES of them), mirrored and matched to the nearest vertex within _SYM_MATCH_MM;
# angles every _SYM_COARSE_DEG degrees over a half turn, then every half degree round the
# best.
_SYM_RADIUS_MM = 60.0
_SYM_PROBES = 3000
_SYM_MATCH_MM = 3.0
_SYM_COARSE_DEG = 3.0
# frontal_view, up vs down: the strip along the symmetry line from the tip (mm from the
# tip, half width mm) whose median fall below the tip decides.
_RIDGE_FROM_MM = 4.0
_RIDGE_TO_MM = 14.0
_RIDGE_HALF_WIDTH_MM = 3.0
# frontal_view: the "middle of the cap" is the inner quarter of the vertices by in-plane
# Mahalanobis radius.
_INNER_FRACTION = 0.25
# Degenerate clouds: second over first singular value below this = collinear.
_COLLINEAR_TOL = 1e-3


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class FrontalView:
    """A rigid turn of a scan into the render view (face along +Z, +Y up):
    ``p_view = R @ p + t``.

    R : (3, 3) float64 proper rotation (det +1).
    t : (3,) float64, mm; puts the centroid of the vertices at the origin (zeros when
        ``method`` is ``"identity"``).
    method : ``"identity"``, ``"given"`` (an (R, t) the caller passed),
        ``"pca+symmetry+nose-ridge"`` (the full method), ``"pca+symmetry"`` (no
        surface next to the tip along the symmetry line: up sign unknown) or ``"pca"``
        (no nose tip or too few points round it: up = the in-plane axis of largest
        spread, sign unknown).

    Unpacks as a pair: ``R, t = frontal_view(vertices)``.
    """

    R: np.ndarray
    t: np.ndarray
    method: str

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) input-frame points, mm -> (N, 3) float64 view-frame points, mm."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def __iter__(self):
        return iter((self.R, self.t))


@dataclass(frozen=True)
class MeshPoints:
    """Image points read back onto a mesh (:func:`pixels_to_mesh`).

    points3d : (N, 3) float64, mm, on the mesh, in the INPUT frame; 0 where not present.
    present : (N,) bool, False where the point's ray misses the mesh.
    triangle_id : (N,) int64 index of the hit face, -1 on a miss.
    bary : (N, 3) float64 barycentric weights of that face's corners (sum 1, each in
        [0, 1]); 0 on a miss.
    """

    points3d: np.ndarray
    present: np.ndarray
    triangle_id: np.ndarray
    bary: np.ndarray


@dataclass(frozen=True)
class LiftedLandmarks:
    """68 iBUG landmarks detected on a render and lifted onto the mesh.

    points3d : (68, 3) float64, mm, on the mesh, in the INPUT frame (the vertices as
        given to :func:`lift_landmarks`); rows where ``present`` is False hold 0.0.
    present : (68,) bool: found and its ray hits the mesh (False for every point when
        ``found`` is False).
    points2d : (68, 2) float64 render pixels (x right, y down, pixel centres at integer
        coordinates) as the detector gave them; zeros when not found.
    provenance : ``"lifted:<detector provenance>"``, e.g. ``"lifted:dlib"``,
        ``"lifted:dlib-mmod"``, ``"lifted:mediapipe"``.
    confidence : float, the detector's score (see ``LandmarkResult``); 0.0 if not found.
    found : bool, the detector found a face on the render.
    reason : why not ('' when found).
    triangle_id : (68,) int64 hit face per point, -1 where not present.
    bary : (68, 3) float64 barycentric weights in that face, 0 where not present.
    view : the :class:`FrontalView` used for rendering.
    extent : (xmin, xmax, ymin, ymax) mm of the render, view frame.
    pixel_size_mm : float, side of one render pixel, mm.
    turns : quarter turns (``np.rot90`` convention, counter-clockwise) of the render
        under which the face was found (0 unless ``try_turns`` was needed).
    """

    points3d: np.ndarray
    present: np.ndarray
    points2d: np.ndarray
    provenance: str
    confidence: float
    found: bool
    reason: str
    triangle_id: np.ndarray
    bary: np.ndarray
    view: FrontalView
    extent: tuple[float, float, float, float]
    pixel_size_mm: float
    turns: int = 0

    def as_landmarks(self) -> Landmarks:
        """The present points as :class:`preprocess.scan.Landmarks` (3-D, mm, input
        frame) named ``"ibug_<k>"``, provenance as above; (0, 3) when none."""
        idx = np.flatnonzero(self.present)
        return Landmarks(self.points3d[idx].copy(), tuple(IBUG_NAMES[k] for k in idx),
                         self.provenance)


# --------------------------------------------------------------------------- checks

def _vertices(vertices, item: str) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(item, f"vertices must be (V, 3), got {v.shape}")
    if len(v) == 0:
        raise InputError(item, "empty mesh (0 vertices)")
    if not np.isfinite(v).all():
        raise InputError(item, "vertices contain NaN or inf")
    return v


def _view_of(view, v: np.ndarray, faces, item: str) -> FrontalView:
    if view is None:
        return FrontalView(np.eye(3), np.zeros(3), "identity")
    if isinstance(view, str):
        if view != "auto":
            raise ValueError(f"view must be None, 'auto', a FrontalView or (R, t); got {view!r}")
        return frontal_view(v, faces, item=item)
    if isinstance(view, FrontalView):
        return view
    try:
        R, t = view
        R = np.asarray(R, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("view must be None, 'auto', a FrontalView or an (R, t) pair") from None
    if R.shape != (3, 3) or t.shape != (3,) or not (np.isfinite(R).all() and np.isfinite(t).all()):
        raise ValueError(f"view (R, t) must be finite (3, 3) and (3,), got {R.shape}, {t.shape}")
    if not (np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0):
        raise ValueError("view R is not a proper rotation")
    return FrontalView(R, t, "given")


# ----------------------------------------------------------------------- frontal view

def frontal_view(vertices, faces=None, *, assume_frontal: bool = False,
                 item: str = "mesh") -> FrontalView:
    """A rough rotation that makes a face scan look along +Z with +Y up.

    vertices : (V, 3) float, mm, finite; one face seen from the front half of the head.
    faces : (F, 3) int or None; only used to ignore unreferenced vertices when looking
        for the nose tip.
    assume_frontal : True when the caller knows the scan already looks along +Z, +Y up
        (Bosphorus, BU-3DFE, FaceScape): identity, ``t = 0``.
    item : id put in errors.

    Returns :class:`FrontalView` (``R, t = frontal_view(...)`` also works);
    ``R @ p + t`` puts the centroid at the origin.  Method and accuracy in the module
    docstring; the weaker fallbacks are named in ``method``.
    Raises InputError: not (V, 3), empty, NaN/inf, fewer than 3 vertices, all vertices
    on one line (or one point).
    """
    v = _vertices(vertices, item)
    if assume_frontal:
        return FrontalView(np.eye(3), np.zeros(3), "identity")
    if len(v) < 3:
        raise InputError(item, f"{len(v)} vertices: need at least 3 to find a view")
    centre = v.mean(axis=0)
    d = v - centre
    _, s, axes = np.linalg.svd(d, full_matrices=False)
    if not s[0] > 0 or s[1] < _COLLINEAR_TOL * s[0]:
        raise InputError(item, "vertices are collinear (or coincide): no surface to view")
    e1, e2, n = axes
    a, b, h = d @ e1, d @ e2, d @ n
    # Sign of the view axis: the middle of a face cap stands in front of its rim.
    rad = (a / s[0]) ** 2 + (b / s[1]) ** 2
    inner = rad <= np.quantile(rad, _INNER_FRACTION)
    if np.median(h[inner]) < np.median(h):
        n = -n
    # Provisional frame: z = n, y = e1 (largest spread), x = y x z (right-handed).
    y0 = e1
    x0 = np.cross(y0, n)
    basis = np.stack([x0, y0, n])
    q = d @ basis.T
    up2, method = _nose_ridge_up(q, faces, item)
    y = up2[0] * x0 + up2[1] * y0
    y /= np.linalg.norm(y)
    x = np.cross(y, n)
    R = np.stack([x, y, n])
    return FrontalView(R, -R @ centre, method)


def _nose_ridge_up(q: np.ndarray, faces, item: str) -> tuple[np.ndarray, str]:
    """In-plane unit "up" (2,) of a cloud ``q`` (V, 3) that looks along +Z (module
    docstring): the bilateral symmetry line through the nose tip, pointing to the side
    where the surface falls off least next to the tip (the nasal bridge)."""
    from scipy.spatial import cKDTree

    from preprocess.nose import find_nose_tip

    try:
        tip = find_nose_tip(q, faces, item=item).point
    except InputError:
        return np.array([0.0, 1.0]), "pca"
    rel = q[:, :2] - tip[:2]
    near = np.flatnonzero(np.einsum("ij,ij->i", rel, rel) <= _SYM_RADIUS_MM ** 2)
    if len(near) < 10:
        return np.array([0.0, 1.0]), "pca"
    tree = cKDTree(rel[near])
    probe = near[:: max(1, len(near) // _SYM_PROBES)]
    pz, pxy = q[probe, 2], rel[probe]

    def asymmetry(theta: float) -> float:
        # mirror the probes across the line through the tip at angle theta and compare
        # their heights with the surface found there (median: robust to spikes, holes)
        c, s = np.cos(2 * theta), np.sin(2 * theta)
        mirrored = np.column_stack([c * pxy[:, 0] + s * pxy[:, 1],
                                    s * pxy[:, 0] - c * pxy[:, 1]])
        dist, idx = tree.query(mirrored, distance_upper_bound=_SYM_MATCH_MM)
        ok = np.isfinite(dist)
        if ok.sum() < 10:
            return np.inf
        diff = q[near[idx[ok]], 2] - pz[ok]
        # a residual yaw of the view axis tilts one half against the other: a height
        # difference linear in the distance across the line, taken out before comparing
        across = pxy[ok] @ np.array([-np.sin(theta), np.cos(theta)])
        slope = float(diff @ across) / max(float(across @ across), 1e-12)
        return float(np.median(np.abs(diff - slope * across)))

    coarse = np.deg2rad(np.arange(0.0, 180.0, _SYM_COARSE_DEG))
    best = coarse[int(np.argmin([asymmetry(t) for t in coarse]))]
    fine = best + np.deg2rad(np.arange(-_SYM_COARSE_DEG, _SYM_COARSE_DEG + 0.25, 0.5))
    best = fine[int(np.argmin([asymmetry(t) for t in fine]))]
    d = np.array([np.cos(best), np.sin(best)])
    # the bridge side of the tip falls off least (below the tip it drops to the lip)
    along, across = rel @ d, rel @ np.array([-d[1], d[0]])
    falls = []
    for sign in (1.0, -1.0):
        strip = (sign * along >= _RIDGE_FROM_MM) & (sign * along <= _RIDGE_TO_MM) & \
                (np.abs(across) <= _RIDGE_HALF_WIDTH_MM)
        falls.append(tip[2] - np.median(q[strip, 2]) if strip.sum() >= 3 else np.inf)
    if not np.isfinite(falls).any():
        return d, "pca+symmetry"
    return (d if falls[0] <= falls[1] else -d), "pca+symmetry+nose-ridge"


# --------------------------------------------------------------------------- lifting

def _bary_xy(corners: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 3) float64 barycentric weights of (N, 2) points in triangles given by their
    (N, 3, 2) x-y corners, clipped to [0, 1] and renormalised (a ray that hit an edge in
    float32 may land a hair outside in float64).  A triangle seen edge-on (no x-y area)
    gets its corners' equal weights -- a ray parallel to it grazes it anywhere."""
    p0, p1, p2 = corners[:, 0], corners[:, 1], corners[:, 2]
    e1, e2, r = p1 - p0, p2 - p0, xy - p0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    scale = np.maximum(np.abs(e1).max(axis=1), np.abs(e2).max(axis=1)) ** 2
    flat = np.abs(det) <= 1e-12 * np.maximum(scale, 1e-300)
    safe = np.where(flat, 1.0, det)
    w1 = (r[:, 0] * e2[:, 1] - r[:, 1] * e2[:, 0]) / safe
    w2 = (e1[:, 0] * r[:, 1] - e1[:, 1] * r[:, 0]) / safe
    w = np.stack([1.0 - w1 - w2, w1, w2], axis=1)
    w[flat] = 1.0 / 3.0
    w = np.clip(w, 0.0, 1.0)
    return w / w.sum(axis=1, keepdims=True)


def pixels_to_mesh(vertices, faces, pixels, extent, pixel_size_mm: float, *,
                   view=None, item: str = "mesh") -> MeshPoints:
    """Read image points of an orthographic render back onto the mesh, exactly.

    vertices : (V, 3) float, mm, input frame; faces : (F, 3) int.
    pixels : (N, 2) float render pixels (x = column, y = row, pixel centres at integer
        coordinates) of a render of ``view.apply(vertices)`` with ``extent`` (xmin,
        xmax, ymin, ymax) mm and square pixels of ``pixel_size_mm`` (as
        :class:`preprocess.render.Rendering` reports them).
    view : None (identity), a :class:`FrontalView` or an ``(R, t)`` pair: the turn the
        render was made in.
    item : id put in errors.

    Returns :class:`MeshPoints`: the first surface point along -Z (view frame) under
    each pixel position, expressed in the input frame; misses are ``present=False``
    with zeros.  Raises InputError: bad or non-finite vertices/faces, non-finite pixels
    or extent, pixels not (N, 2).
    """
    from preprocess.render import cast_down, check_mesh  # the renderer's checks (same messages) and rays

    v, f = check_mesh(vertices, faces, item)
    px = np.asarray(pixels, dtype=np.float64)
    if px.ndim != 2 or px.shape[1] != 2:
        raise InputError(item, f"pixels must be (N, 2), got {px.shape}")
    ext = np.asarray(extent, dtype=np.float64)
    if ext.shape != (4,) or not np.isfinite(ext).all() or not np.isfinite(px).all() \
            or not (np.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise InputError(item, "pixels, extent and pixel size must be finite (size > 0)")
    fv = _view_of(view, v, f, item)
    vv = fv.apply(v)
    xmin, _, _, ymax = ext
    xy = np.column_stack([xmin + (px[:, 0] + 0.5) * pixel_size_mm,
                          ymax - (px[:, 1] + 0.5) * pixel_size_mm])
    n = len(px)
    points = np.zeros((n, 3))
    bary = np.zeros((n, 3))
    tri = cast_down(vv, f, xy).triangle
    hit = tri >= 0
    if hit.any():
        corners = f[tri[hit]]                                   # (H, 3)
        bary[hit] = _bary_xy(vv[corners][:, :, :2], xy[hit])
        points[hit] = np.einsum("nc,nck->nk", bary[hit], v[corners])
    return MeshPoints(points, hit, tri, bary)


def _unturn(points: np.ndarray, turns: int, n: int) -> np.ndarray:
    """(K, 2) pixels (x, y; centres at integers) of ``np.rot90(image, turns)`` of an
    n x n image -> the same places in ``image``.  One turn: rot[i, j] = image[j, n-1-i],
    so (x, y) -> (n - 1 - y, x); applied ``turns`` times."""
    p = np.array(points, dtype=np.float64)
    for _ in range(turns % 4):
        p = np.column_stack([n - 1 - p[:, 1], p[:, 0]])
    return p


def lift_landmarks(vertices, faces, *, texture=None, uv=None, face_uv=None, colors=None,
                   size: int = DEFAULT_SIZE, backend: str = "dlib", upsample: int = 1,
                   mmod_fallback: bool = False, view=None, try_turns: bool | None = None,
                   item: str = "mesh") -> LiftedLandmarks:
    """Detect the 68 iBUG landmarks on an RGB render of a mesh and lift them onto it.

    vertices : (V, 3) float, mm; faces : (F, 3) int.
    texture : (Ht, Wt, 3) uint8 RGB with ``uv`` (T, 2) float (v up) and ``face_uv``
        (F, 3) int (or None when T == V); or ``colors`` (V, 3) uint8 per vertex.  As
        :func:`preprocess.render.render_orthographic` takes them.  With neither, the
        render is flat gray and no face will be found.
    size : render side, pixels (square; the mesh's x-y bounding box fills it).
    backend, upsample, mmod_fallback : passed to
        :func:`preprocess.landmarks.detect_landmarks`.  The MMOD fallback is off by
        default: the render is frontal, which is what HOG is good at, and MMOD costs
        6-12 s per 448 px render on 2 cores (upsample 0-1) -- each time no face is
        found, four times with ``try_turns``.
    view : None (identity: the scan already looks along +Z, +Y up -- Bosphorus,
        BU-3DFE, FaceScape), ``"auto"`` (:func:`frontal_view`), a :class:`FrontalView`
        or an ``(R, t)`` pair.
    try_turns : when no face is found on the render, also try it turned by 180, 90 and
        270 degrees (exact pixel moves, no re-render) and keep the first turn that
        finds one: a guard against a view whose up is wrong.  Default: True for
        ``view="auto"``, else False.
    item : id put in errors and reasons.

    Returns :class:`LiftedLandmarks` with ``points3d`` in the input frame and
    ``points2d`` on the render as made (turns undone).  "No face on the render" is
    ``found=False`` with a reason, not an exception.  Raises InputError for a bad mesh
    or colour source (empty, bad shapes, indices out of range, NaN/inf), ValueError for
    a bad ``view``, size, backend or upsample.
    """
    from preprocess.landmarks import detect_landmarks
    from preprocess.render import check_mesh, render_orthographic

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (square render), got {size!r}")
    if try_turns is None:
        try_turns = isinstance(view, str) and view == "auto"
    v, f = check_mesh(vertices, faces, item)
    fv = _view_of(view, v, f, item)
    r = render_orthographic(fv.apply(v), f, size=int(size), texture=texture, uv=uv,
                            face_uv=face_uv, colors=colors, item=item)
    image = np.clip(np.rint(np.moveaxis(r.rgb, 0, -1) * 255.0), 0, 255).astype(np.uint8)
    for turns in ((0, 2, 1, 3) if try_turns else (0,)):
        det = detect_landmarks(np.ascontiguousarray(np.rot90(image, turns)), backend,
                               upsample=upsample, mmod_fallback=mmod_fallback)
        if det.found:
            break
    if not det.found:
        tried = " (also turned by 90, 180 and 270 degrees)" if try_turns else ""
        why = (f"no face found on the {image.shape[1]}x{image.shape[0]} render "
               f"(colour from {r.rgb_source}){tried}: {det.reason}")
        return LiftedLandmarks(np.zeros((N_IBUG, 3)), np.zeros(N_IBUG, dtype=bool),
                               np.zeros((N_IBUG, 2)), f"lifted:{det.provenance}", 0.0,
                               False, why, np.full(N_IBUG, -1, dtype=np.int64),
                               np.zeros((N_IBUG, 3)), fv, r.extent, r.pixel_size_mm, 0)
    pts2 = _unturn(det.points, turns, int(size))
    mp = pixels_to_mesh(v, f, pts2, r.extent, r.pixel_size_mm, view=fv, item=item)
    present = mp.present & np.asarray(det.present, dtype=bool)
    keep = present[:, None]
    return LiftedLandmarks(np.where(keep, mp.points3d, 0.0), present, pts2,
                           f"lifted:{det.provenance}", float(det.confidence), True, "",
                           np.where(present, mp.triangle_id, -1),
                           np.where(keep, mp.bary, 0.0), fv, r.extent, r.pixel_size_mm,
                           turns)
