"""Facial expressions of the synthetic sample as displacement vectors on landmarks, and
the smooth interpolant that spreads them over the whole face.

An expression is a table of 3-D displacements (mm; x right = the subject's left, y up,
z toward the viewer) on the *control points*: the 68 iBUG landmarks (0-based order)
followed by ``EXTRA_CONTROLS`` (cheeks, lower cheeks, forehead), which carry the skin
motion that has no iBUG landmark (cheeks forward in a smile, forehead following the
brows).  Expressions are sums of a few hand-written primitives (brow raise, lip-corner
pull, jaw drop ...), each written once for the subject's right side and mirrored.

:class:`SmoothField` spreads a table over the face: a thin-plate-spline interpolant
(scipy ``RBFInterpolator``) through the control points with zero displacement anchored
on the face border (an ellipse), tapered smoothly to zero just outside the border so
that a 2-D warp of a whole image leaves the background still.  At the control points it
reproduces the table exactly (interpolation, no smoothing).

Label codes of each dataset style (Bosphorus, BU-3DFE, CK+, MMI, FaceScape) map onto
these names through the dictionaries at the end of the module.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

N_IBUG = 68
EXTRA_CONTROLS = ("cheek_right", "cheek_left", "lowcheek_right", "lowcheek_left",
                  "forehead_middle", "forehead_right", "forehead_left")
N_CONTROLS = N_IBUG + len(EXTRA_CONTROLS)
_X = {name: N_IBUG + i for i, name in enumerate(EXTRA_CONTROLS)}

# (subject's right, subject's left) mirror pairs of control points; right = image left =
# model -x.  Points not listed lie on the midline.
MIRROR_PAIRS = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
    (31, 35), (32, 34),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
    (48, 54), (49, 53), (50, 52), (59, 55), (58, 56),
    (60, 64), (61, 63), (67, 65),
    (_X["cheek_right"], _X["cheek_left"]), (_X["lowcheek_right"], _X["lowcheek_left"]),
    (_X["forehead_right"], _X["forehead_left"]),
)
_RIGHT = {r for r, _ in MIRROR_PAIRS}
_MIRROR = {**{r: l for r, l in MIRROR_PAIRS}, **{l: r for r, l in MIRROR_PAIRS}}


def control_points(landmarks: np.ndarray) -> np.ndarray:
    """The control points of a face: its 68 landmarks then ``EXTRA_CONTROLS``.

    landmarks : (68, 2) float64, mm, model plane (x right, y up).
    Returns (N_CONTROLS, 2) float64, mm.
    """
    L = np.asarray(landmarks, dtype=np.float64)
    up = np.array([0.0, 1.0])
    extra = [
        (L[41] + L[48] + L[1]) / 3.0,          # cheek under the right eye
        (L[46] + L[54] + L[15]) / 3.0,
        (L[48] + L[4]) / 2.0,                  # lower cheek beside the mouth corner
        (L[54] + L[12]) / 2.0,
        (L[21] + L[22]) / 2.0 + 22.0 * up,     # forehead above the brows
        L[19] + 20.0 * up,
        L[24] + 20.0 * up,
    ]
    return np.vstack([L, np.array(extra)])


def _table(entries: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """Displacements written for the subject's right side (dx = outward, i.e. away from
    the midline) and midline points (dx = toward +x), mirrored onto the left side."""
    d = np.zeros((N_CONTROLS, 3))
    for i, (dx_out, dy, dz) in entries.items():
        if i in _RIGHT:
            d[i] = (-dx_out, dy, dz)
            d[_MIRROR[i]] = (dx_out, dy, dz)
        elif i in _MIRROR:
            raise ValueError(f"primitive written on the left side (point {i})")
        else:
            d[i] = (dx_out, dy, dz)
    return d


def _one_side(entries: dict[int, tuple[float, float, float]], side: str) -> np.ndarray:
    """Like ``_table`` but only on one side ('left' or 'right' of the subject)."""
    d = np.zeros((N_CONTROLS, 3))
    for i, (dx_out, dy, dz) in entries.items():
        if side == "right":
            d[i] = (-dx_out, dy, dz)
        else:
            d[_MIRROR[i]] = (dx_out, dy, dz)
    return d


def _shift_x(points: tuple[int, ...], values: tuple[float, ...]) -> np.ndarray:
    """Sideways motion toward +x (the subject's left)."""
    d = np.zeros((N_CONTROLS, 3))
    for i, v in zip(points, values):
        d[i, 0] = v
    return d


_C, _LC = _X["cheek_right"], _X["lowcheek_right"]
_FM, _FR = _X["forehead_middle"], _X["forehead_right"]

# Primitives, mm (dx outward for right-side points).  Magnitudes follow the size of the
# motion on a real adult face (brows rise ~8 mm, the chin drops ~10 mm in a yawn).
PRIMITIVES: Mapping[str, np.ndarray] = MappingProxyType({
    "brow_raise": _table({17: (0, 6, 0.5), 18: (0, 8, 1), 19: (0, 9, 1), 20: (0, 8.5, 1),
                          21: (0, 7, 1), 37: (0, 1.5, 0), 38: (0, 1.5, 0),
                          _FR: (0, 4, 0), _FM: (0, 3.5, 0)}),
    "brow_inner_raise": _table({21: (-1, 7, 0.5), 20: (0, 5, 0.5), 19: (0, 2.5, 0),
                                _FM: (0, 3, 0)}),
    "brow_lower": _table({17: (0, -3, 0), 18: (0, -4, 0), 19: (0, -5, 0), 20: (0, -5.5, 0.5),
                          21: (0, -6, 0.5), 37: (0, -1, 0), 38: (0, -1, 0),
                          _FR: (0, -2, 0), _FM: (0, -2, 0)}),
    "brow_together": _table({21: (-4, 0, 0.5), 20: (-3, 0, 0), 19: (-1.5, 0, 0)}),
    "upper_lid_raise": _table({37: (0, 2.5, 0), 38: (0, 2.5, 0)}),
    "lid_tighten": _table({40: (0, 1.5, 0), 41: (0, 1.5, 0), 37: (0, -0.8, 0), 38: (0, -0.8, 0)}),
    "eye_close": _table({37: (0, -7, 0), 38: (0, -7, 0), 40: (0, 1.5, 0), 41: (0, 1.5, 0)}),
    "cheek_raise": _table({_C: (0, 3, 3), _LC: (0, 2, 2), 40: (0, 1, 0), 41: (0, 1, 0)}),
    "nose_wrinkle": _table({27: (0, -1, 0), 29: (0, 0.5, 0.5), 31: (1, 3, 1), 32: (0, 2.5, 0.5),
                            33: (0, 2, 0)}),
    "upper_lip_raise": _table({51: (0, 5, 1), 50: (0, 5, 1), 49: (0, 4, 0.5), 62: (0, 4, 0),
                               61: (0, 4, 0), 48: (0, 1.5, 0), 60: (0, 1.5, 0)}),
    "lower_lip_depress": _table({57: (0, -4, 1), 58: (0, -4, 1), 59: (0, -3, 0.5), 66: (0, -3, 0),
                                 67: (0, -3, 0)}),
    "lip_corner_pull": _table({48: (6, 6, -2), 60: (5, 5, -2), 49: (3, 3, 0), 59: (3, 2, 0),
                               61: (2.5, 2, 0), 67: (2.5, 2, 0), 50: (0, 1.5, 0),
                               _C: (0, 3, 3), _LC: (2, 3, 2)}),
    "lip_corner_depress": _table({48: (0.5, -4, 0), 60: (0, -3.5, 0), 59: (0, -2, 0),
                                  49: (0, -1, 0), _LC: (0, -1.5, 0)}),
    "lip_stretch": _table({48: (7, -1, -1), 60: (6, -1, -1), 49: (3.5, 0, 0), 59: (3.5, 0, 0),
                           61: (3, 0, 0), 67: (3, 0, 0), _LC: (2, 0, 0)}),
    "lip_press": _table({62: (0, -1.5, 0), 61: (0, -1.5, 0), 66: (0, 1.5, 0), 67: (0, 1.5, 0),
                         51: (0, -1, -0.5), 50: (0, -1, -0.5), 57: (0, 1.5, 0.5),
                         58: (0, 1.5, 0.5), 48: (-1, 0, 0), 60: (-1, 0, 0)}),
    "jaw_drop": _table({8: (0, -10, 0), 7: (0, -9.5, 0), 6: (0, -8, 0), 5: (0, -5.5, 0),
                        4: (0, -3, 0), 3: (0, -1, 0),
                        57: (0, -10, 0), 58: (0, -9.5, 0), 59: (0, -7, 0),
                        66: (0, -10.5, 0), 67: (0, -10, 0),
                        48: (-1, -3, 0), 60: (-1, -3.5, 0),
                        62: (0, 1, 0), 61: (0, 1, 0), 51: (0, 0.5, 0), 50: (0, 0.5, 0),
                        _LC: (0, -3, 0)}),
    "jaw_left": _shift_x((8, 7, 9, 6, 10, 5, 11, 4, 12, 55, 56, 57, 58, 59, 65, 66, 67,
                          48, 54, 60, 64),
                         (6, 6, 6, 5, 5, 4, 4, 2.5, 2.5, 5, 5, 5, 5, 5, 5, 5, 5,
                          2.5, 2.5, 2.5, 2.5)),
    "jaw_forward": _table({8: (0, 0, 6), 7: (0, 0, 5.5), 6: (0, 0, 4.5), 5: (0, 0, 3),
                           57: (0, 0, 4), 58: (0, 0, 4), 59: (0, 0, 3.5),
                           66: (0, 0, 4.5), 67: (0, 0, 4.5), 48: (0, 0, 1.5), 60: (0, 0, 1.5)}),
    "mouth_left": _shift_x(tuple(range(48, 68)), (6.0,) * 20),
    "dimpler": _table({48: (1.5, 0, -3), 60: (1, 0, -2.5), _LC: (0, 0, -1)}),
    "chin_raise": _table({8: (0, 3, 2), 7: (0, 3, 2), 57: (0, 3, 2), 58: (0, 3, 2), 59: (0, 2, 1),
                          66: (0, 2.5, 1), 67: (0, 2.5, 1), 48: (0, -1, 0)}),
    "lip_pucker": _table({48: (-8, 0, 3), 60: (-7, 0, 4), 49: (-4, 0, 5), 59: (-4, 0, 5),
                          50: (-2, 0, 6), 58: (-2, 0, 6), 51: (0, 0, 6.5), 57: (0, 0, 6.5),
                          61: (-3, 0, 5), 67: (-3, 0, 5), 62: (0, 0, 5.5), 66: (0, 0, 5.5)}),
    "mouth_open": _table({62: (0, 2, 0), 61: (0, 2, 0), 66: (0, -3, 0), 67: (0, -3, 0),
                          51: (0, 2, 0), 50: (0, 2, 0), 57: (0, -2.5, 0), 58: (0, -2.5, 0)}),
    "lip_roll": _table({51: (0, -2.5, -2), 50: (0, -2.5, -2), 57: (0, 2.5, -2), 58: (0, 2.5, -2),
                        49: (0, -1.5, -1.5), 59: (0, 1.5, -1.5), 62: (0, 0, -2), 61: (0, 0, -2),
                        66: (0, 0, -2), 67: (0, 0, -2)}),
    "cheek_blow": _table({_C: (5, 0, 7), _LC: (6, 0, 8), 48: (-1, 0, 2), 49: (0, 0, 2),
                          50: (0, 0, 2), 51: (0, 0, 2), 57: (0, 0, 2), 58: (0, 0, 2),
                          59: (0, 0, 2)}),
    "half_smile_left": _one_side({48: (4, 3.5, -2), 60: (3.5, 3, -2), 49: (2, 1.5, 0),
                                  59: (2, 1, 0), _LC: (1.5, 1.5, 1), _C: (0, 1.5, 1.5)}, "left"),
})


@dataclass(frozen=True)
class Expression:
    """One expression: its name and its displacement table.

    displacement : (N_CONTROLS, 3) float64, mm, at full intensity (1.0); rows 0-67 are
        the iBUG landmarks, then ``EXTRA_CONTROLS``.
    recipe : the primitives and weights it was made of (for the record).
    """

    name: str
    displacement: np.ndarray
    recipe: tuple[tuple[str, float], ...]

    @property
    def landmark_displacement(self) -> np.ndarray:
        """(68, 3) float64, mm: the table's rows for the 68 iBUG landmarks."""
        return self.displacement[:N_IBUG]


def _expression(name: str, **weights: float) -> Expression:
    d = np.zeros((N_CONTROLS, 3))
    for prim, w in weights.items():
        d = d + w * PRIMITIVES[prim]
    d.setflags(write=False)
    return Expression(name, d, tuple(weights.items()))


_LIST = (
    _expression("neutral"),
    # the six basic expressions and contempt
    _expression("anger", brow_lower=1.0, brow_together=1.0, lid_tighten=1.0, upper_lid_raise=0.4,
                lip_press=1.0, nose_wrinkle=0.3),
    _expression("contempt", half_smile_left=1.0, dimpler=0.3),
    _expression("disgust", nose_wrinkle=1.0, upper_lip_raise=1.0, cheek_raise=0.6, brow_lower=0.6,
                lower_lip_depress=0.5, lip_corner_depress=0.3),
    _expression("fear", brow_raise=0.6, brow_inner_raise=0.6, brow_together=1.0, upper_lid_raise=1.0,
                lip_stretch=1.0, jaw_drop=0.35),
    _expression("happy", lip_corner_pull=1.0, cheek_raise=1.0, lid_tighten=0.7, mouth_open=0.3),
    _expression("sadness", brow_inner_raise=1.0, brow_together=0.4, lip_corner_depress=1.0,
                chin_raise=0.7, eye_close=0.15),
    _expression("surprise", brow_raise=1.0, upper_lid_raise=1.0, jaw_drop=1.0),
    # FaceScape's other expressions
    _expression("mouth_stretch", jaw_drop=1.3, lip_stretch=0.3),
    _expression("jaw_left", jaw_left=1.0),
    _expression("jaw_right", jaw_left=-1.0),
    _expression("jaw_forward", jaw_forward=1.0),
    _expression("mouth_left", mouth_left=1.0),
    _expression("mouth_right", mouth_left=-1.0),
    _expression("dimpler", dimpler=1.0, lip_corner_pull=0.2),
    _expression("chin_raiser", chin_raise=1.0, lip_press=0.5),
    _expression("lip_puckerer", lip_pucker=1.0),
    _expression("lip_funneler", lip_pucker=0.6, mouth_open=1.0),
    _expression("lip_roll", lip_roll=1.0),
    _expression("grin", lip_corner_pull=1.2, mouth_open=1.0, cheek_raise=1.0),
    _expression("cheek_blowing", cheek_blow=1.0),
    _expression("eye_closed", eye_close=1.0, brow_lower=0.2),
    _expression("brow_raiser", brow_raise=1.0, upper_lid_raise=0.5),
    _expression("brow_lower", brow_lower=1.0, brow_together=0.7),
)

EXPRESSIONS: Mapping[str, Expression] = MappingProxyType({e.name: e for e in _LIST})
BASIC6 = ("anger", "disgust", "fear", "happy", "sadness", "surprise")

# Dataset codes of each expression name (what the file names / emotion files say).
BOSPHORUS_CODES = MappingProxyType({"anger": "ANGER", "disgust": "DISGUST", "fear": "FEAR",
                                    "happy": "HAPPY", "sadness": "SADNESS",
                                    "surprise": "SURPRISE"})
BU3DFE_CODES = MappingProxyType({"anger": "AN", "disgust": "DI", "fear": "FE", "happy": "HA",
                                 "sadness": "SA", "surprise": "SU", "neutral": "NE"})
CKPLUS_CODES = MappingProxyType({"neutral": 0, "anger": 1, "contempt": 2, "disgust": 3,
                                 "fear": 4, "happy": 5, "sadness": 6, "surprise": 7})
MMI_CODES = MappingProxyType({e: e for e in BASIC6})  # the sample videos name the class
# FaceScape expression name -> expression above (only "smile" is named differently).
FACESCAPE_TO_EXPRESSION = MappingProxyType({"smile": "happy"})


def facescape_expression(facescape_name: str) -> Expression:
    """The expression behind a FaceScape expression name (``"smile"`` -> happy)."""
    return EXPRESSIONS[FACESCAPE_TO_EXPRESSION.get(facescape_name, facescape_name)]


def expression_displacement(name: str, intensity: float = 1.0) -> np.ndarray:
    """The control-point displacements of an expression, (N_CONTROLS, 3) float64, mm,
    scaled by ``intensity`` (0 = neutral, 1 = the table)."""
    return EXPRESSIONS[name].displacement * float(intensity)


def ellipse_points(ellipse: tuple[float, float, float, float], n: int) -> np.ndarray:
    """n points evenly spread in angle on an ellipse (cx, cy, a, b), (n, 2) float64."""
    ang = 2.0 * np.pi * np.arange(n) / n
    cx, cy, a, b = ellipse
    return np.column_stack([cx + a * np.cos(ang), cy + b * np.sin(ang)])


def ellipse_radius(points: np.ndarray, ellipse: tuple[float, float, float, float]) -> np.ndarray:
    """Normalised elliptic radius of points (N, 2): 1 on the ellipse, < 1 inside."""
    cx, cy, a, b = ellipse
    p = np.asarray(points, dtype=np.float64)
    return np.hypot((p[:, 0] - cx) / a, (p[:, 1] - cy) / b)


class SmoothField:
    """A smooth displacement field through control points, zero on the face border.

    centers : (N, 2) float64 control points (mm, or any plane unit).
    values : (N, D) float64 displacement at each control point.
    border : ellipse (cx, cy, a, b) of the face border: ``n_anchors`` points on it are
        pinned to zero.  Outside it the field fades to zero by ``taper`` times the radius.

    Calling the field on (M, 2) points returns (M, D) float64.  Thin-plate spline with an
    affine part (scipy ``RBFInterpolator``): the smoothest interpolant through the points,
    so it reproduces ``values`` exactly at ``centers``.
    """

    def __init__(self, centers: np.ndarray, values: np.ndarray,
                 border: tuple[float, float, float, float], n_anchors: int = 48,
                 taper: float = 1.25):
        from scipy.interpolate import RBFInterpolator

        centers = np.asarray(centers, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if np.any(ellipse_radius(centers, border) >= 1.0):
            raise ValueError("a control point lies on or outside the face border")
        anchors = ellipse_points(border, n_anchors)
        self.border = tuple(float(v) for v in border)
        self.taper = float(taper)
        self.zero = not np.any(values)
        self.dim = values.shape[1]
        if not self.zero:
            self._rbf = RBFInterpolator(
                np.vstack([centers, anchors]),
                np.vstack([values, np.zeros((n_anchors, values.shape[1]))]),
                kernel="thin_plate_spline", degree=1)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.zero:
            return np.zeros((len(points), self.dim))
        out = self._rbf(points)
        rho = ellipse_radius(points, self.border)
        outside = rho > 1.0
        if np.any(outside):
            # smoothstep from 1 at the border to 0 at `taper`: still background far away
            s = np.clip((rho[outside] - 1.0) / (self.taper - 1.0), 0.0, 1.0)
            out[outside] *= (1.0 - s * s * (3.0 - 2.0 * s))[:, None]
        return out
