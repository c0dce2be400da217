"""Geometric registration: a face scan posed by its surface alone, for scans with no
landmark file and no face a detector finds (issue 13, build item 3, last fallback).

Method:

1. **Points.**  The vertices the faces reference, thinned to one per ``voxel_mm`` cube
   (open3d's ``voxel_down_sample``: the mean of each cube, which also averages the
   scanner's noise) -- ICP cost and the nose search scale with the point count.
2. **Starts.**  :func:`preprocess.lift.frontal_view` gives a rough frontal rotation
   from the geometry (the axis of least spread, the bilateral symmetry line through
   the nose tip, the nasal bridge for "up").  On a head turned far (a Bosphorus "CR"
   scan, whose ear and cheek widen the cap) or a bust with shoulders (a BU-3DFE raw
   export) that axis can be 10-30 degrees off, and the nose search of step 3 can then
   land on a cheek or the forehead; so the search also starts from the scan's own axes
   (scanners look along +Z) and from each of the two turned by ``+-_TURN_DEG`` in yaw
   and in pitch (duplicates dropped).  ``start`` in the result names the winner.
3. **Nose tip.**  For each start the nose tip is found on the turned cloud by
   :func:`preprocess.nose.find_nose_tip` (Mian et al. 2006: horizontal slices, the
   most protruding point) and put on the template's nose tip (the origin); only the
   points within ``crop_radius_mm`` of it are used from here on (hair, ears, neck and
   shoulders farther out would pull the fit).
4. **Coarse ICP** (every start): open3d's point-to-plane ``registration_icp`` against
   the template surface's points and normals, with a shrinking maximum correspondence
   distance (``_COARSE_MM``), on an even subsample of ``_ICP_POINTS`` points.
5. **Symmetric refinement** (the ``_REFINE`` best starts by the distance of step 6):
   with a template that is not the subject's face (the shipped one is a mean of others), free
   ICP trades yaw and roll for shape: a frontal real Bosphorus scan drifts 8-14
   degrees in yaw.  The face's own mirror symmetry does not depend on the template, so
   each refinement pass (a) finds the face's symmetry plane by ICP of the face's mirror
   image (x -> -x) to the face itself (``A M p ~ p``: the reflection ``A M`` is
   ``I - 2 n n^T`` with plane ``n . x = d``) and turns it onto x = 0 by the least
   rotation (about ``n x e_x``: the pitch is left alone), then (b) fits the face joined
   with its mirror image to the (symmetric) template: a symmetric cloud on a symmetric
   target keeps its symmetry plane, so this ICP only moves pitch, height and depth
   (``_FINE_MM``).
6. **Choice and test.**  The fit's *distance* is the mean over the template points of
   the distance to the nearest scan point, capped at ``_CAP_MM`` (a graded coverage:
   a pose that leaves part of the template face uncovered pays for it, one that lays
   forehead or chin on the template's nose pays more); the start with the smallest
   wins.  Reported with it: *fitness*, the fraction of the cropped scan points with a
   template point within ``inlier_mm``, and *coverage*, the fraction of template points
   with a scan point within ``inlier_mm``.  A fit with a distance above
   ``max_distance_mm`` or a coverage below ``min_coverage`` is refused (InputError): a
   plane or a sphere fitted to the template leaves much of the face unmatched.

The rmse reported is open3d's inlier RMSE of the final pose (``evaluate_registration``
at the last correspondence distance: RMS Euclidean distance of matched scan and
template points, mm); with the template's 2 mm grid it includes about 0.5-0.8 mm of grid
spacing.

Why by hand: ICP is open3d's; what no library offers is the face-specific glue: the
starts, the nose-centred crop, the symmetry plane, the schedule and the face test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from data_schema.errors import InputError
from preprocess.lift import frontal_view
from preprocess.nose import find_nose_tip
from preprocess.open3d_core import open3d_core
from preprocess.pose.template_surface import TemplateSurface, load_template_surface
from preprocess.registration import Registration

#: Maximum ICP correspondence distance of each round, mm: coarse (every start), fine
#: (the symmetric refinement), and the mirror ICP that finds the symmetry plane.
_COARSE_MM = (20.0, 10.0)
_FINE_MM = (6.0, 3.0)
_MIRROR_MM = (8.0, 4.0)
#: ICP iterations per round, and its relative convergence tolerance.
_ITERATIONS = 12
_CONVERGED = 1e-5
#: Grid the ICP's transforms are put on, for run-to-run identical results (_quantized).
_QUANTUM = 1e-7
#: ICP runs on about this many points of the crop (an even subsample).
_ICP_POINTS = 1500
#: Most passes of the symmetric refinement, the symmetry correction (degrees) below
#: which it stops, and how many of the best starts get it.
_SYM_PASSES = 6
_SYM_TOL_DEG = 0.5
_REFINE = 2
#: Radius of the neighbourhood for the normals the mirror ICP needs, mm.
_NORMAL_RADIUS_MM = 5.0
#: Cap on a point's distance in the fit's distances, mm; the template's nose region
#: (x-y radius round the tip, mm); the scan's central region for the asymmetry, mm.
_CAP_MM = 10.0
_NOSE_MM = 15.0
_SYMMETRY_MM = 60.0
#: Yaw and pitch turns of each base start, degrees; starts closer than
#: _SAME_START_DEG in rotation and _SAME_START_MM in nose tip are one.
_TURN_DEG = 25.0
_SAME_START_DEG = 5.0
_SAME_START_MM = 5.0
#: x -> -x, as a row multiplier.
_MIRROR = np.array([-1.0, 1.0, 1.0])
#: Fewer points than this (referenced, after thinning, after cropping): no registration.
MIN_POINTS = 200


@dataclass(frozen=True)
class GeometricRegistration:
    """The result of :func:`geometric_registration`.

    registration : Registration(R (3, 3), t (3,) mm, rmse mm, used_names=()) with
        ``p_template ~= R @ p_scan + t``; rmse = ICP inlier RMSE of the final pose, mm.
    distance : mean distance of the template points to the registered scan, each
        capped at ``_CAP_MM``, mm (module docstring, step 6).
    nose_distance : the same over the template's nose (within ``_NOSE_MM`` of the tip).
    asymmetry : mean distance of the registered scan's central points (within
        ``_SYMMETRY_MM`` of the tip in x-y) to the scan's mirror image, capped, mm.
        The fit chosen has the least sum of the three (``cost``).
    fitness : fraction of the cropped scan points within ``inlier_mm`` of a template
        point after the fit.
    coverage : fraction of the template points within ``inlier_mm`` of a scan point.
    nose_tip : (3,) float64 mm, scan frame: the nose tip found from the winning start.
    start : the winning start, e.g. ``"frontal_view yaw+25"`` or ``"scan axes"``.
    n_points : scan points within the crop radius (after thinning).
    """

    registration: Registration
    distance: float
    nose_distance: float
    asymmetry: float
    fitness: float
    coverage: float
    nose_tip: np.ndarray
    start: str
    n_points: int

    @property
    def cost(self) -> float:
        """distance + nose_distance + asymmetry, mm: the choice criterion."""
        return self.distance + self.nose_distance + self.asymmetry


@dataclass(frozen=True)
class _Start:
    name: str
    T: np.ndarray          # (4, 4) scan -> start frame, nose tip on the origin
    tip: np.ndarray        # (3,) nose tip, scan frame, mm
    points: np.ndarray     # (P, 3) scan points within the crop radius of the tip, mm


@dataclass(frozen=True)
class _Fit:
    T: np.ndarray          # (4, 4) scan -> template
    distance: float        # mm (module docstring, step 6)
    nose_distance: float   # mm
    asymmetry: float       # mm
    fitness: float
    coverage: float

    @property
    def cost(self) -> float:
        """mm, lower is better: the sum of the three distances."""
        return self.distance + self.nose_distance + self.asymmetry


# --------------------------------------------------------------------------- helpers

def _rigid4(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def _apply(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(P, 3) points under the (4, 4) rigid transform T."""
    return p @ T[:3, :3].T + T[:3, 3]


def _angle_deg(R: np.ndarray) -> float:
    """Rotation angle of a (3, 3) rotation, degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def _sparse(p: np.ndarray) -> np.ndarray:
    """An even subsample of about ``_ICP_POINTS`` rows of ``p`` (P, 3)."""
    return p[::max(1, len(p) // _ICP_POINTS)]


def _cloud(points: np.ndarray, normals: np.ndarray | None = None):
    """An open3d point cloud (copies: open3d refuses read-only arrays)."""
    o3d = open3d_core()
    c = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.array(points, dtype=np.float64)))
    if normals is not None:
        c.normals = o3d.utility.Vector3dVector(np.array(normals, dtype=np.float64))
    return c


def _icp(src: np.ndarray, target, T: np.ndarray, schedule) -> np.ndarray:
    """Point-to-plane ICP of points ``src`` (P, 3) mm to the open3d cloud ``target``
    (with normals) from the guess ``T`` (4, 4), one round per maximum correspondence
    distance of ``schedule`` (mm).  Returns the (4, 4) transform."""
    reg = open3d_core().pipelines.registration
    source = _cloud(src)
    estimation = reg.TransformationEstimationPointToPlane()
    criteria = reg.ICPConvergenceCriteria(relative_fitness=_CONVERGED,
                                          relative_rmse=_CONVERGED, max_iteration=_ITERATIONS)
    for dist in schedule:
        T = _quantized(np.asarray(reg.registration_icp(source, target, dist, T, estimation,
                                                       criteria).transformation))
    return T


def _quantized(T: np.ndarray) -> np.ndarray:
    """(4, 4) rigid ``T`` on a grid of ``_QUANTUM`` (rotation entries; translation mm),
    the rotation made orthonormal again (SVD).  open3d's ICP sums its normal equations
    in parallel (TBB), so the same input gives transforms that differ in the last bits
    from run to run, even with OMP_NUM_THREADS=1 (measured on bs000_CR_RU_0.bnt); on
    the grid they agree, and the stores stay byte-stable.  1e-7 is far below the ICP's
    own tolerance (``_CONVERGED``) and far above its run-to-run noise (~1e-15)."""
    u, _, vt = np.linalg.svd(np.round(T[:3, :3] / _QUANTUM) * _QUANTUM)
    R = u @ vt
    return _rigid4(R, np.round(T[:3, 3] / _QUANTUM) * _QUANTUM)


# --------------------------------------------------------------------------- steps

def _thin(vertices, faces, voxel_mm: float, item: str) -> np.ndarray:
    """Step 1: (P, 3) float64, the referenced vertices, one mean point per voxel."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1:] != (3,):
        raise InputError(item, f"vertices must be (V, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise InputError(item, "vertices contain NaN or inf")
    if faces is not None:
        f = np.asarray(faces)
        if f.size:
            if f.ndim != 2 or f.shape[1:] != (3,) or not np.issubdtype(f.dtype, np.integer) \
                    or f.min() < 0 or f.max() >= len(v):
                raise InputError(item, f"faces must be (F, 3) indices into {len(v)} vertices")
            v = v[np.unique(f)]
    if len(v) < MIN_POINTS:
        raise InputError(item, f"{len(v)} points: too few for a geometric registration "
                               f"(need {MIN_POINTS})")
    p = np.asarray(_cloud(v).voxel_down_sample(voxel_mm).points)
    if len(p) < MIN_POINTS:
        raise InputError(item, f"{len(p)} points after thinning to {voxel_mm:g} mm: too "
                               f"few for a geometric registration (need {MIN_POINTS})")
    return p


def _turn(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3, 3) rotation: pitch about +X, then yaw about +Y, degrees."""
    a, b = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return ry @ rx


def _starts(points: np.ndarray, crop_radius_mm: float, item: str) -> list[_Start]:
    """Steps 2-3: the distinct starts that have a nose tip with at least MIN_POINTS
    points round it."""
    try:
        bases = [("frontal_view", frontal_view(points, item=item).R)]
    except InputError:                       # degenerate cloud: the scan's axes remain
        bases = []
    bases.append(("scan axes", np.eye(3)))
    turns = [("", 0.0, 0.0)] + [(f" {k}{s:+g}", *((s, 0.0) if k == "yaw" else (0.0, s)))
                                for k in ("yaw", "pitch") for s in (_TURN_DEG, -_TURN_DEG)]
    centre = points.mean(axis=0)
    out: list[_Start] = []
    for base, B in bases:
        for label, yaw, pitch in turns:
            R0 = _turn(yaw, pitch) @ B
            q = (points - centre) @ R0.T                  # q = R0 (p - centre)
            try:
                tip_q = find_nose_tip(q, item=item).point
            except InputError:
                continue
            near = np.einsum("ij,ij->i", q - tip_q, q - tip_q) <= crop_radius_mm ** 2
            tip = tip_q @ R0 + centre
            if near.sum() < MIN_POINTS or any(
                    _angle_deg(R0 @ s.T[:3, :3].T) < _SAME_START_DEG
                    and np.linalg.norm(tip - s.tip) < _SAME_START_MM for s in out):
                continue
            out.append(_Start(base + label, _rigid4(R0, -R0 @ centre - tip_q), tip,
                              points[near]))
    return out


def _mirror_correction(p: np.ndarray) -> np.ndarray:
    """Step 5a: (4, 4) rigid correction that puts the mirror-symmetry plane of a face
    ``p`` (P, 3) mm, roughly canonical, on x = 0."""
    o3d = open3d_core()
    surface = _cloud(p)
    surface.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=_NORMAL_RADIUS_MM,
                                                                  max_nn=30))
    surface.orient_normals_to_align_with_direction(np.array([0.0, 0.0, 1.0]))
    A = _icp(p * _MIRROR, surface, np.eye(4), _MIRROR_MM)
    # A M p ~ p: the reflection x -> L x + b, L = A_R M, is I - 2 n n^T, b = 2 d n
    L = A[:3, :3] * _MIRROR
    vec = np.linalg.eigh(0.5 * (np.eye(3) - 0.5 * (L + L.T)))[1]
    n = vec[:, -1] * (1.0 if vec[0, -1] >= 0 else -1.0)
    d = 0.5 * float(n @ A[:3, 3])
    # the least rotation taking n to +X, about n x e_x (Rodrigues with sin = |axis|)
    axis = np.cross(n, [1.0, 0.0, 0.0])
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + K + K @ K / (1.0 + n[0])
    return _rigid4(R, np.array([-d, 0.0, 0.0]))


def _symmetric_fit(src: np.ndarray, T: np.ndarray, target) -> np.ndarray:
    """Step 5: refine a scan -> template guess ``T`` (4, 4) of points ``src`` (P, 3) mm;
    passes until the symmetry correction is below ``_SYM_TOL_DEG`` (at most
    ``_SYM_PASSES``: a far-turned face, half hidden, needs a few)."""
    for _ in range(_SYM_PASSES):
        C = _mirror_correction(_apply(T, src))
        T = C @ T
        p = _apply(T, src)
        T = _icp(np.concatenate([p, p * _MIRROR]), target, np.eye(4), _FINE_MM) @ T
        if _angle_deg(C[:3, :3]) < _SYM_TOL_DEG:
            break
    return T


def _capped_mean(tree: cKDTree, query: np.ndarray) -> float:
    """Mean distance of the ``query`` points (Q, 3) to the tree's nearest point, each
    capped at ``_CAP_MM``, mm (``_CAP_MM`` when there is no query point)."""
    if len(query) == 0:
        return _CAP_MM
    d = tree.query(query, distance_upper_bound=_CAP_MM)[0]
    return float(np.minimum(d, _CAP_MM).mean())


def _score(src: np.ndarray, T: np.ndarray, template: TemplateSurface, template_tree: cKDTree,
           inlier_mm: float) -> _Fit:
    """Step 6: the figures of the scan points ``src`` (P, 3) mm under ``T``."""
    moved = _apply(T, src)
    scan_tree = cKDTree(moved)
    tpl = template.points
    d_tpl = scan_tree.query(tpl, distance_upper_bound=_CAP_MM)[0]
    d_scan = template_tree.query(moved, distance_upper_bound=inlier_mm)[0]
    nose = np.einsum("ij,ij->i", tpl[:, :2], tpl[:, :2]) <= _NOSE_MM ** 2
    central = moved[np.einsum("ij,ij->i", moved[:, :2], moved[:, :2]) <= _SYMMETRY_MM ** 2]
    return _Fit(T, float(np.minimum(d_tpl, _CAP_MM).mean()),
                float(np.minimum(d_tpl[nose], _CAP_MM).mean()) if nose.any() else _CAP_MM,
                _capped_mean(scan_tree, central * _MIRROR),
                float(np.isfinite(d_scan).mean()), float((d_tpl <= inlier_mm).mean()))


# --------------------------------------------------------------------------- entry

def geometric_registration(vertices, faces=None, template_surface: TemplateSurface | None = None,
                           *, crop_radius_mm: float = 75.0, voxel_mm: float = 2.0,
                           inlier_mm: float = 4.0, max_cost_mm: float = 14.0,
                           min_coverage: float = 0.3,
                           item: str = "geometric_registration") -> GeometricRegistration:
    """Rigid pose of a face scan from its geometry alone (method in the module
    docstring).

    vertices : (V, 3) float, mm, scan frame (the face may look along any axis).
    faces : (F, 3) int or None; when given, unreferenced vertices are ignored.
    template_surface : the target (default :func:`load_template_surface`).
    crop_radius_mm : scan points farther than this from the nose tip are left out, mm.
    voxel_mm : thinning cube side, mm.
    inlier_mm : distance for the fitness / coverage figures, mm.
    max_cost_mm, min_coverage : the fit is refused when its cost (distance + nose
        distance + asymmetry, mm) is above the first or its coverage below the second.
    item : id put in errors.

    Returns :class:`GeometricRegistration` (``.registration``: the Registration).
    Raises InputError: bad vertices / faces, too few points, no start with a nose tip
    and enough points round it, or a best fit that does not match the template (the
    message gives its figures).
    """
    tpl = load_template_surface() if template_surface is None else template_surface
    points = _thin(vertices, faces, voxel_mm, item)
    starts = _starts(points, crop_radius_mm, item)
    if not starts:
        raise InputError(item, "geometric registration: no nose tip with enough points "
                               f"within {crop_radius_mm:g} mm of it from any start")
    target = _cloud(tpl.points, tpl.normals)
    tree = cKDTree(tpl.points)
    coarse = []
    for st in starts:
        src = _sparse(st.points)
        coarse.append(_score(src, _icp(src, target, st.T, _COARSE_MM), tpl, tree, inlier_mm))
    order = np.argsort([f.cost for f in coarse], kind="stable")[:_REFINE]
    refined = [(_score(starts[k].points,
                       _symmetric_fit(_sparse(starts[k].points), coarse[k].T, target),
                       tpl, tree, inlier_mm), starts[k]) for k in order]
    best, st = min(refined, key=lambda fs: fs[0].cost)
    if best.cost > max_cost_mm or best.coverage < min_coverage:
        raise InputError(item, "geometric registration: the surface does not match the "
                               f"template face (cost {best.cost:.2f} mm = distance "
                               f"{best.distance:.2f} + nose {best.nose_distance:.2f} + "
                               f"asymmetry {best.asymmetry:.2f}, max {max_cost_mm:g}; "
                               f"coverage {best.coverage:.2f} within {inlier_mm:g} mm, "
                               f"min {min_coverage:g})")
    # rounded to 1e-6 mm: open3d's parallel sum differs in the last bits run to run
    rmse = round(float(open3d_core().pipelines.registration.evaluate_registration(
        _cloud(st.points), target, _FINE_MM[-1], best.T).inlier_rmse), 6)
    R, t = best.T[:3, :3].copy(), best.T[:3, 3].copy()
    return GeometricRegistration(Registration(R, t, rmse, ()), best.distance,
                                 best.nose_distance, best.asymmetry, best.fitness,
                                 best.coverage, st.tip, st.name, len(st.points))
