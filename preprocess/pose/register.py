"""One entry point for posing a scan in the canonical frame: the fallbacks of issue 13
(build item 3), tried in order, the first that succeeds wins.

1. ``file`` -- the scan's own 3-D landmark file (.lm3, .bnd, FaceScape indices);
2. ``texture`` -- dlib on an orthographic render of the scan's texture / vertex
   colours, lifted to 3-D (:func:`preprocess.lift.lift_landmarks`, AMDFN Fig. 2);
3. ``shaded`` -- dlib on a Lambertian render of the geometry alone
   (:mod:`preprocess.pose.shaded`), when there is no texture or no face on it;
4. ``geometric`` -- nose tip, symmetry / principal axes and point-to-plane ICP to the
   template face surface (:mod:`preprocess.pose.geometric`).

A landmark method succeeds when its Arun fit to the template
(:func:`preprocess.registration.register_landmarks`) passes the residual limit; a
method that fails leaves its reason in ``tried``, and when every method fails the
InputError lists them all.  The detected landmarks are rendered first in the scan's own
frame (identity view: Bosphorus, BU-3DFE, FaceScape and the POL-DB / PolyWorks export
look along +Z) and, when no face is found there, in the view
:func:`preprocess.lift.frontal_view` estimates from the geometry.

Why by hand: the order and bookkeeping of the fallbacks is this project's; each method
is a library call or its own module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_schema.errors import InputError
from preprocess.registration import Registration, register_landmarks

METHODS = ("file", "texture", "shaded", "geometric")
#: The jaw line (iBUG 0-16) is a silhouette that moves with the view: lifted landmarks
#: keep the 51 inner points only.
_INNER_FROM = 17


@dataclass(frozen=True)
class Pose:
    """How a scan was posed.

    registration : Registration (R, t, rmse mm, used template names), ``p_canonical =
        R p_scan + t``.
    method : the method that succeeded, one of :data:`METHODS`.
    landmarks : (L, 3) float64 mm, scan frame: the landmarks the fit used (the file's,
        or the lifted inner 51); for ``geometric`` the template's inner 51 placed on the
        posed scan (:func:`template_landmarks_on_scan`: approximate, for the masks).
    landmark_names : L names (file vocabulary or ``"ibug_<k>"``).
    provenance : where the landmarks came from (``"file:lm3"``, ``"lifted:dlib"``,
        ``"shaded:lifted:dlib"``, ``"template:icp ..."``).
    tried : ``"<method>: <why it failed>"`` for each method tried before this one.
    """

    registration: Registration
    method: str
    landmarks: np.ndarray
    landmark_names: tuple[str, ...]
    provenance: str
    tried: tuple[str, ...]


def detected_landmarks(vertices, faces, colour=None, *, size: int = 448, inner_only: bool = True,
                       item: str = "scan"):
    """iBUG landmarks found by dlib on a render of the scan and lifted onto it.

    vertices : (V, 3) float64 mm; faces : (F, 3) int.
    colour : the renderer's colour keywords (texture, uv, face_uv, colors); None: the
        Lambertian shading of the geometry (:func:`preprocess.pose.shaded.shaded_colors`).
    inner_only : keep the 51 inner points (17..67) only.
    The scan is rendered in its own frame first and, when no face is found there, in
    :func:`preprocess.lift.frontal_view`'s view (with quarter turns).
    Returns :class:`preprocess.scan.Landmarks` ((L, 3) mm, scan frame, ``"ibug_<k>"``,
    provenance ``"lifted:dlib"`` or ``"shaded:lifted:dlib"``) or a str: why none.
    """
    from preprocess.lift import FrontalView, frontal_view, lift_landmarks
    from preprocess.pose.shaded import shaded_colors
    from preprocess.scan import Landmarks

    reasons = []
    for view in (FrontalView(np.eye(3), np.zeros(3), "identity"), None):
        if view is None:
            view = frontal_view(vertices, faces, item=item)
        kw = colour if colour is not None else {"colors": shaded_colors(vertices, faces, view.R)}
        res = lift_landmarks(vertices, faces, size=size, backend="dlib", upsample=1, view=view,
                             try_turns=view.method != "identity", item=item, **kw)
        if res.found:
            lm = res.as_landmarks()
            keep = [i for i, n in enumerate(lm.names) if not inner_only or int(n[5:]) >= _INNER_FROM]
            if len(keep) >= 3:
                prov = lm.provenance if colour is not None else f"shaded:{lm.provenance}"
                return Landmarks(lm.points[keep], tuple(lm.names[i] for i in keep), prov)
            reasons.append(f"{len(keep)} inner landmark(s) on the mesh")
        else:
            reasons.append(res.reason)
    return " / ".join(dict.fromkeys(reasons))


def template_landmarks_on_scan(vertices: np.ndarray, faces: np.ndarray, registration: Registration,
                               template) -> tuple[np.ndarray, tuple[str, ...]]:
    """The template's inner iBUG landmarks (17..67) placed on a scan posed without
    landmarks: each goes to the posed mesh's nearest used vertex, then back to the scan
    frame.  Approximate (the template is not the subject: a few mm), but it gives the
    crop its nose hint and the masks their points.

    vertices : (V, 3) float64 mm, scan frame; faces : (F, 3) int; registration :
    ``p_canonical = R p_scan + t``; template : landmark Template (canonical frame).
    Returns ((L, 3) float64 mm scan frame, L ``"ibug_<k>"`` names).
    """
    from scipy.spatial import cKDTree

    from preprocess.landmark_names import ibug_index

    used = np.unique(faces) if len(faces) else np.arange(len(vertices))
    posed = registration.apply(vertices[used])
    keep = [i for i, n in enumerate(template.names)
            if (k := ibug_index(str(n))) is not None and k >= _INNER_FROM]
    nearest = cKDTree(posed).query(np.asarray(template.points, np.float64)[keep])[1]
    return vertices[used[nearest]].astype(np.float64), tuple(str(template.names[i]) for i in keep)


def pose_scan(vertices: np.ndarray, faces: np.ndarray, *, template, surface=None,
              file_landmarks: tuple[np.ndarray, tuple[str, ...], str] | None = None,
              colour: dict | None = None, methods: tuple[str, ...] = METHODS,
              max_rmse_mm: float, trim_fraction: float = 0.0, lift_size: int = 448,
              item: str = "scan") -> Pose:
    """Pose a scan in the canonical frame by the first method of ``methods`` that works.

    vertices : (V, 3) float64 mm; faces : (F, 3) int.
    template : landmark Template (:mod:`preprocess.template`); surface : TemplateSurface
        for ``geometric`` (:mod:`preprocess.pose.template_surface`; None: the shipped one).
    file_landmarks : (points (L, 3) mm, names, provenance) of the scan's landmark file,
        or None.
    colour : the renderer's colour keywords (texture, uv, face_uv, colors); None or all
        None: the scan has no colour and ``texture`` is skipped.
    methods : the methods to try, in order (a subset of :data:`METHODS`).
    max_rmse_mm : landmark fits above this residual are rejected (next method).
    trim_fraction : share of the worst landmarks left out of the fit
        (:func:`preprocess.registration.register_landmarks`).
    lift_size : render side in pixels for the detector.

    Returns :class:`Pose`.  Raises InputError naming every method tried and why it
    failed; ValueError for an unknown method.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"registration methods must be a non-empty subset of {METHODS}, got {methods}")
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    colour = {k: val for k, val in (colour or {}).items() if val is not None}
    tried: list[str] = []
    for method in methods:
        try:
            if method == "geometric":
                from preprocess.pose.geometric import geometric_registration
                from preprocess.pose.template_surface import load_template_surface

                geo = geometric_registration(v, f, surface or load_template_surface(), item=item)
                points, names = template_landmarks_on_scan(v, f, geo.registration, template)
                prov = (f"template:icp (template landmarks on the surface posed by ICP, start "
                        f"{geo.start}, distance {geo.distance:.2f} mm, coverage {geo.coverage:.2f})")
                return Pose(geo.registration, method, points, names, prov, tuple(tried))
            if method == "file":
                if file_landmarks is None or len(file_landmarks[0]) == 0:
                    tried.append("file: no landmark file beside the scan")
                    continue
                points, names, prov = file_landmarks
            elif method == "texture":
                if not colour:
                    tried.append("texture: the scan has no texture or vertex colours")
                    continue
                got = detected_landmarks(v, f, colour, size=lift_size, item=item)
                if isinstance(got, str):
                    tried.append(f"texture: {got}")
                    continue
                points, names, prov = got.points, got.names, got.provenance
            else:  # shaded
                got = detected_landmarks(v, f, None, size=lift_size, item=item)
                if isinstance(got, str):
                    tried.append(f"shaded: {got}")
                    continue
                points, names, prov = got.points, got.names, got.provenance
            reg = register_landmarks(points, names, template, max_rmse_mm=max_rmse_mm,
                                     trim_fraction=trim_fraction, item=item)
            return Pose(reg, method, np.asarray(points, np.float64), tuple(names), prov, tuple(tried))
        except InputError as exc:
            tried.append(f"{method}: {exc.reason}")
    raise InputError(item, "no registration method could pose the scan (tried "
                           + "; ".join(tried) + ")")
