"""Rigid generalised Procrustes analysis (GPA) of landmark sets with missing points.

N shapes of P named points each (NaN rows = the shape lacks that point).  GPA finds the
mean shape and one rotation + translation per shape that bring every shape as close to
it as possible (Gower 1975; Dryden & Mardia, *Statistical Shape Analysis*, ch. 7), here
without scaling, because the shapes are real faces in mm and the mean must stay in mm:

1. the reference is the shape with the most points, centred on its centroid;
2. every shape is fitted rigidly (:func:`preprocess.registration.fit_rigid`, Arun SVD)
   to the current mean on the points both have;
3. the new mean of each point is the average of the aligned shapes that have it;
4. the new mean is fitted rigidly back onto the previous one (GPA determines the mean
   only up to a rigid motion; this pins the gauge so the iteration converges instead of
   drifting), and 2-4 repeat until the mean moves less than ``tol_mm`` (RMS).

Missing points: a shape contributes the points it has, both to its own fit and to the
mean (the "GPA with missing landmarks" of Albers & Gower 2010, in its simplest form: the
mean of each point over the shapes that have it).  A shape that shares fewer than 3
non-collinear points with the mean cannot be posed; it is left out of that iteration
and reported in ``excluded``.

Why by hand: the loop is a few lines around ``fit_rigid``; scipy's
``scipy.spatial.procrustes`` is two-shape and scales, and no maintained package does
rigid GPA with missing points.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from data_schema.errors import InputError
from preprocess.registration import apply_rigid, fit_rigid

TOL_MM = 1e-6
MAX_ITER = 100


@dataclass(frozen=True)
class GPAResult:
    """Result of :func:`gpa`.

    mean : (P, 3) float64, mm, the mean shape (NaN rows: no used shape has the point).
        Its frame is the reference shape's, centred; only its shape is meaningful.
    count : (P,) int64, how many used shapes have each point.
    aligned : (N, P, 3) float64, mm, each shape posed onto the mean (NaN where missing,
        and for excluded shapes).
    R : (N, 3, 3) float64 and t : (N, 3) float64 mm, ``aligned[i] = R[i] @ shape[i] + t[i]``
        (identity / zero for excluded shapes).
    spread_mm : (P,) float64, per point RMS distance (mm) of the aligned shapes from the
        mean: sqrt(mean_i |aligned_i - mean|^2) over the shapes with the point; NaN
        where count is 0.
    iterations : alignment rounds run.
    converged : the last round moved the mean less than the tolerance (RMS, mm).
    change_mm : RMS movement of the mean in the last round, mm.
    excluded : shape index -> why it could not be posed in the last round.
    """

    mean: np.ndarray
    count: np.ndarray
    aligned: np.ndarray
    R: np.ndarray
    t: np.ndarray
    spread_mm: np.ndarray
    iterations: int
    converged: bool
    change_mm: float
    excluded: Mapping[int, str] = field(default_factory=dict)

    @property
    def used(self) -> np.ndarray:
        """(N,) bool: the shape was posed and contributes to the mean."""
        keep = np.ones(len(self.aligned), bool)
        keep[list(self.excluded)] = False
        return keep


def _nanmean_points(aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, P, 3) with NaN rows -> per-point mean (P, 3) (NaN where no shape has it), count (P,)."""
    have = ~np.isnan(aligned[..., 0])
    count = have.sum(axis=0)
    total = np.where(have[..., None], aligned, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count[:, None]
    mean[count == 0] = np.nan
    return mean, count.astype(np.int64)


def _rms(d: np.ndarray) -> float:
    """RMS length of the finite rows of (K, 3) differences (0 for none)."""
    d = d[~np.isnan(d[:, 0])]
    return float(np.sqrt(np.mean(np.einsum("ij,ij->i", d, d)))) if len(d) else 0.0


def _pose(src: np.ndarray, dst: np.ndarray, item: str):
    """Rigid fit of src onto dst on the rows finite in both ((P, 3) each, NaN = missing)."""
    both = ~(np.isnan(src[:, 0]) | np.isnan(dst[:, 0]))
    return fit_rigid(src[both], dst[both], item=item)


def gpa(shapes: np.ndarray, *, tol_mm: float = TOL_MM, max_iter: int = MAX_ITER) -> GPAResult:
    """Rigid GPA (rotation + translation, no scale) of landmark sets, NaN = missing.

    shapes : (N, P, 3) float, mm; a row of NaN is a point the shape lacks (a row with
        any NaN counts as missing).
    tol_mm : convergence: RMS movement of the mean between rounds, mm.
    max_iter : most rounds.

    Returns GPAResult (see there).  Raises InputError when shapes is not (N, P, 3), or
    fewer than 2 shapes can be posed (nothing to average).
    """
    x = np.array(shapes, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError("gpa", f"shapes must be (N, P, 3), got {x.shape}")
    x[np.isnan(x).any(axis=2)] = np.nan
    n, p, _ = x.shape
    counts = (~np.isnan(x[..., 0])).sum(axis=1)
    if n < 2:
        raise InputError("gpa", f"{n} shape(s): GPA needs at least 2")
    ref = x[int(np.argmax(counts))]                   # argmax: the first of the fullest
    mean = ref - np.nanmean(ref, axis=0)
    R = np.tile(np.eye(3), (n, 1, 1))
    t = np.zeros((n, 3))
    aligned = np.full_like(x, np.nan)
    excluded: dict[int, str] = {}
    change, it = np.inf, 0
    while it < max_iter:
        it += 1
        excluded = {}
        aligned = np.full_like(x, np.nan)
        for i in range(n):
            try:
                fit = _pose(x[i], mean, item=f"shape {i}")
            except InputError as exc:
                excluded[i] = exc.reason
                R[i], t[i] = np.eye(3), 0.0
                continue
            R[i], t[i] = fit.R, fit.t
            aligned[i] = apply_rigid(x[i], fit.R, fit.t)
        if n - len(excluded) < 2:
            raise InputError("gpa", f"only {n - len(excluded)} of {n} shapes can be posed: "
                                    + "; ".join(f"shape {i}: {r}" for i, r in sorted(excluded.items())[:3]))
        new, _ = _nanmean_points(aligned)
        # pin the gauge: the new mean, moved rigidly onto the previous one
        g = _pose(new, mean, item="gpa mean")
        new = apply_rigid(new, g.R, g.t)
        aligned = aligned @ g.R.T + g.t
        R = np.einsum("ij,njk->nik", g.R, R)
        t = t @ g.R.T + g.t
        for i in excluded:
            R[i], t[i] = np.eye(3), 0.0
        change = _rms(new - mean) if np.array_equal(np.isnan(new), np.isnan(mean)) else np.inf
        mean = new
        if change < tol_mm:
            break
    mean, count = _nanmean_points(aligned)
    d2 = np.einsum("npk,npk->np", aligned - mean, aligned - mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(np.nansum(d2, axis=0) / count)
    spread[count == 0] = np.nan
    return GPAResult(mean, count, aligned, R, t, spread, it, bool(change < tol_mm), float(change), excluded)
