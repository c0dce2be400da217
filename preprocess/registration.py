"""Rigid pose registration of a scan to the landmark template (AMDFN III-B-1, eq. 1-2).

``fit_rigid`` is the least-squares rotation + translation of Arun, Huang & Blostein
(1987): weighted centroids, the 3 x 3 cross-covariance, its SVD, and the reflection
guard of Umeyama (1991) (when ``det(V U^T) < 0`` the singular vector of the smallest
singular value is flipped, which gives the best *proper* rotation).
``register_landmarks`` matches named landmarks to the template through the iBUG-68
vocabulary of :mod:`preprocess.landmark_names` and fits the scan -> template pose.

Why by hand: the algorithm is ten lines of numpy; the libraries that have it
(``scipy.spatial.transform.Rotation.align_vectors``, open3d, trimesh) either do not
estimate the translation, do not take weights, or do not report which degeneracy
(too few points, collinear points, a reflection) made a fit meaningless -- here each is
an :class:`~data_schema.errors.InputError` naming the item, as the stages need.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data_schema.errors import InputError
from preprocess.landmark_names import to_ibug

#: Default collinearity tolerance: a point set whose second principal spread (RMS
#: distance from the best line) is below this fraction of its first is "collinear".
COLLINEAR_TOL = 1e-3


@dataclass(frozen=True)
class RigidFit:
    """A rigid transform ``dst ~= R @ src + t``.

    R : (3, 3) float64, a proper rotation (det = +1).
    t : (3,) float64, mm.
    rmse : float, mm: sqrt(sum_i w_i |R src_i + t - dst_i|^2 / sum_i w_i) (plain RMS
        residual without weights).
    n : int, number of points with a positive weight.
    """

    R: np.ndarray
    t: np.ndarray
    rmse: float
    n: int


@dataclass(frozen=True)
class Registration:
    """The pose that takes a scan into the template (canonical) frame:
    ``p_template ~= R @ p_scan + t``.

    R : (3, 3) float64 rotation (det = +1); t : (3,) float64, mm;
    rmse : float, mm, residual of the landmarks used;
    used_names : the template (``"ibug_<k>"``) names of the landmarks used (matched,
        positive weight), in input order.
    """

    R: np.ndarray
    t: np.ndarray
    rmse: float
    used_names: tuple[str, ...]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) scan-frame points -> (N, 3) template-frame points, float64 mm."""
        return apply_rigid(points, self.R, self.t)


def apply_rigid(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``R @ p + t`` for each row p of points.

    points : (N, 3) (or (3,)) float, mm; R : (3, 3); t : (3,).  Returns float64 of the
    same shape as points.
    """
    p = np.asarray(points, dtype=np.float64)
    return p @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64)


def _spread_ratio(centred: np.ndarray) -> float:
    """Second over first singular value of a centred (N, 3) set (0 if all coincide)."""
    s = np.linalg.svd(centred, compute_uv=False)
    return float(s[1] / s[0]) if s[0] > 0 else 0.0


def fit_rigid(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, *,
              collinear_tol: float = COLLINEAR_TOL, item: str = "fit_rigid") -> RigidFit:
    """Least-squares rigid transform taking ``src`` onto ``dst`` (Arun et al. 1987).

    Minimises ``sum_i w_i |R src_i + t - dst_i|^2`` over rotations R (det = +1, never a
    reflection) and translations t.

    src, dst : (N, 3) float, mm, corresponding points.
    weights : (N,) float >= 0, or None (all 1).  A zero weight ignores a point.
    collinear_tol : a set (src or dst, restricted to positive weights, weighted and
        centred) whose second singular value is below ``collinear_tol`` times its
        first counts as (near-)collinear: the rotation about that line is undetermined.
    item : item id / description put in errors.

    Returns RigidFit(R (3, 3), t (3,), rmse mm, n).  Raises InputError: shapes that are
    not (N, 3) alike, non-finite values, negative or non-finite weights, fewer than 3
    points with a positive weight, (near-)collinear points.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1:] != (3,) or src.shape != dst.shape:
        raise InputError(item, f"point sets must both be (N, 3), got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise InputError(item, "non-finite (NaN/inf) landmark coordinates")
    if weights is None:
        w = np.ones(len(src))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(src),):
            raise InputError(item, f"weights must be ({len(src)},), got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise InputError(item, "weights must be finite and >= 0")
    keep = w > 0
    n = int(keep.sum())
    if n < 3:
        raise InputError(item, f"{n} point(s) with a positive weight: a rigid fit needs >= 3")
    src, dst, w = src[keep], dst[keep], w[keep]
    w = w / w.sum()                                    # scale-free: only ratios matter
    cs, cd = w @ src, w @ dst
    sq = np.sqrt(w)[:, None]
    a, b = (src - cs) * sq, (dst - cd) * sq
    for name, x in (("source", a), ("target", b)):
        ratio = _spread_ratio(x)
        if ratio < collinear_tol:
            raise InputError(item, f"{name} landmarks are (near-)collinear: spread ratio "
                                   f"{ratio:.2e} < {collinear_tol:.0e}; the rotation about "
                                   "their line is undetermined")
    H = a.T @ b                                        # 3 x 3 weighted cross-covariance
    U, _, Vt = np.linalg.svd(H)
    d = 1.0 if np.linalg.det(Vt.T @ U.T) >= 0 else -1.0
    # Umeyama: flip the direction of the smallest singular value, never a reflection
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    t = cd - R @ cs
    res = src @ R.T + t - dst
    rmse = float(np.sqrt(w @ np.einsum("ij,ij->i", res, res)))
    return RigidFit(R, t, rmse, n)


def register_landmarks(points: np.ndarray, names: Sequence[str], template, *,
                       weights: np.ndarray | None = None, max_rmse_mm: float,
                       trim_fraction: float = 0.0, item: str = "register_landmarks") -> Registration:
    """Rigid pose of a scan from its named landmarks to the template.

    points : (N, 3) float, mm, scan frame.
    names : N landmark names: ``"ibug_<k>"``, Bosphorus labels or ``"bnd_<k>"``
        (translated by :func:`preprocess.landmark_names.to_ibug`); names with no iBUG
        counterpart or not in the template are skipped.
    template : a :class:`preprocess.template.Template` (or anything with ``points``
        (M, 3) and ``names`` (M,)).
    weights : (N,) float >= 0 per input landmark, or None.
    max_rmse_mm : the fit is rejected when its RMS residual (mm) exceeds this.
    trim_fraction : in [0, 0.5): after a first fit the ``floor(trim_fraction * n)``
        landmarks with the largest residuals are left out and the pose is fitted again
        on the rest (at least 4 kept); rmse and ``used_names`` are those of the kept
        points.  Expressions move a few landmarks (an open mouth, raised brows) far from
        a neutral template, and a detector misplaces a few: the trimmed fit follows the
        rigid part of the face.
    item : item id put in errors.

    Returns Registration(R, t, rmse, used_names) with ``template ~= R @ scan + t``.
    Raises InputError: points not (N, 3) / names of another length, two landmarks with
    the same template name, fewer than 3 matched landmarks, the errors of
    :func:`fit_rigid`, and an rmse above ``max_rmse_mm`` (the message names it).
    """
    p = np.asarray(points, dtype=np.float64)
    names = tuple(names)
    if p.ndim != 2 or p.shape[1:] != (3,) or len(p) != len(names):
        raise InputError(item, f"{p.shape} landmark points for {len(names)} names")
    where = {name: k for k, name in enumerate(template.names)}
    rows, used = [], []
    for i, name in enumerate(names):
        canon = to_ibug(name)
        if canon is None or canon not in where:
            continue
        if canon in used:
            raise InputError(item, f"two landmarks map to {canon} (second: {name!r})")
        rows.append(i)
        used.append(canon)
    if len(rows) < 3:
        raise InputError(item, f"only {len(rows)} landmark(s) match the template "
                               f"(names: {', '.join(names[:6])}{'...' if len(names) > 6 else ''})")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(names),):
            raise InputError(item, f"weights must be ({len(names)},), got {w.shape}")
        w = w[rows]
        if np.isfinite(w).all() and (w >= 0).all():   # else fit_rigid says what is wrong
            used = [c for c, wk in zip(used, w) if wk > 0]
            rows = [r for r, wk in zip(rows, w) if wk > 0]
            w = w[w > 0]
    if not 0.0 <= trim_fraction < 0.5:
        raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
    tpl = np.asarray(template.points, dtype=np.float64)[[where[c] for c in used]]
    fit = fit_rigid(p[rows], tpl, w, item=item)
    n_drop = min(int(trim_fraction * len(rows)), len(rows) - 4)
    if n_drop > 0:
        res = np.linalg.norm(apply_rigid(p[rows], fit.R, fit.t) - tpl, axis=1)
        keep = np.sort(np.argsort(res, kind="stable")[:len(rows) - n_drop])
        rows, used, tpl = [rows[k] for k in keep], [used[k] for k in keep], tpl[keep]
        w = None if w is None else w[keep]
        fit = fit_rigid(p[rows], tpl, w, item=item)
    if not fit.rmse <= max_rmse_mm:
        raise InputError(item, f"landmark registration rmse {fit.rmse:.2f} mm exceeds "
                               f"max_rmse_mm = {max_rmse_mm:g} ({fit.n} landmarks)")
    return Registration(fit.R, fit.t, fit.rmse, tuple(used))
