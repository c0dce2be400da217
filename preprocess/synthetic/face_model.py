"""A parametric 3-D face built on the astronaut's 68 landmarks.

Frames and units
----------------
*Model frame*: mm, x right (= the subject's left), y up, z toward the viewer (+Z); the
nose tip of the reference face is at x = y = 0.  The image landmarks are mapped to it by
a similarity: 1.5 mm per pixel (outer eye corners ~90 mm apart), y flipped, and a small
rotation that levels the eyes (the astronaut's head is rolled ~3.5 degrees).

*Material coordinates* ``m`` (N, 2), mm: where a bit of skin sits on the neutral face of
one subject (the reference layout scaled by the subject's width and height).  Every
vertex of every mesh is a material point; its texture coordinate is that point mapped
back into the astronaut image, so the texture moves with the skin.

The surface of a subject is
``p(m) = (m_x, m_y, h(m)) + D_id(m) + intensity * D_expr(m)``:
``h`` a smooth height field (dome, nose ridge and rounded tip, alae, eye sockets, brow
ridge, cheekbones, lips, chin) whose maximum is the nose tip (landmark 30), ``D_id`` a
per-subject identity warp (nose length) and ``D_expr`` the expression field of
:mod:`preprocess.synthetic.expressions`.  The face ends at an ellipse (the *border*).

Meshes share one topology: a structured quad lattice over the border ellipse (a square
grid mapped onto the disc), so every subject and expression of a style has the same
vertex order, as FaceScape's topologically uniform models do.

Written by hand rather than taken from a morphable-model library: the sample must be
generated offline, deterministically, from a few lines of geometry whose truths (nose
tip, landmark positions, displacements) are known exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from preprocess.synthetic.astronaut import astronaut_landmarks
from preprocess.synthetic.expressions import (
    EXPRESSIONS, N_CONTROLS, SmoothField, control_points, ellipse_radius,
)

MM_PER_PX = 1.5
# Face border of the reference face in the model frame: (cx, cy, a, b), mm.  It holds
# every control point (the jaw-line ends 0 and 16 come within 4-5 mm of it) and leaves
# 18 mm below the chin for a jaw drop.
REFERENCE_BORDER = (0.0, 2.5, 78.0, 97.5)


@lru_cache(maxsize=1)
def _reference_similarity() -> tuple[np.ndarray, np.ndarray]:
    """(R2 (2, 2), tip (2,)): model = MM_PER_PX * R2 @ flipY(px - tip)."""
    L = astronaut_landmarks()
    right_eye, left_eye = L[36:42].mean(axis=0), L[42:48].mean(axis=0)
    d = left_eye - right_eye
    ang = np.arctan2(-d[1], d[0])            # eye-line angle with y up
    c, s = np.cos(-ang), np.sin(-ang)         # rotate by -ang: eyes level
    return np.array([[c, -s], [s, c]]), L[30].copy()


def image_to_reference(px: np.ndarray) -> np.ndarray:
    """Astronaut pixels (N, 2) (x right, y down) -> reference model plane (N, 2), mm."""
    R2, tip = _reference_similarity()
    q = np.asarray(px, dtype=np.float64).reshape(-1, 2) - tip
    q = q * np.array([1.0, -1.0])
    return MM_PER_PX * q @ R2.T


def reference_to_image(mm: np.ndarray) -> np.ndarray:
    """Inverse of :func:`image_to_reference`: (N, 2) mm -> (N, 2) astronaut pixels."""
    R2, tip = _reference_similarity()
    q = (np.asarray(mm, dtype=np.float64).reshape(-1, 2) / MM_PER_PX) @ R2
    return q * np.array([1.0, -1.0]) + tip


def reference_vector_to_image(d_mm: np.ndarray) -> np.ndarray:
    """An in-plane displacement (N, 2+) mm in the model frame -> (N, 2) pixels (the z
    part is dropped: orthographic view along -Z)."""
    R2, _ = _reference_similarity()
    q = (np.asarray(d_mm, dtype=np.float64)[:, :2] / MM_PER_PX) @ R2
    return q * np.array([1.0, -1.0])


def reference_landmarks() -> np.ndarray:
    """The 68 landmarks of the reference face in the model plane, (68, 2) float64, mm."""
    return image_to_reference(astronaut_landmarks())


@dataclass(frozen=True)
class FaceParams:
    """Shape and skin of one synthetic subject.

    width, height : scale of the face layout along x and y (1 = the astronaut at 1.5 mm/px).
    nose_length : mm the nose tip (and nostrils) sit lower than the astronaut's.
    nose_protrusion : mm the nose tip stands above the dome.
    dome_depth : mm from the border to the top of the dome (forehead/cheek prominence).
    eye_depth, brow_height, cheek_height, lip_height, chin_height : feature depths, mm.
    skin_gain : (3,) RGB gains of the texture; skin_offset : grey-level offset.
    """

    width: float = 1.0
    height: float = 1.0
    nose_length: float = 0.0
    nose_protrusion: float = 22.0
    dome_depth: float = 35.0
    eye_depth: float = 10.0
    brow_height: float = 4.0
    cheek_height: float = 4.0
    lip_height: float = 3.5
    chin_height: float = 6.0
    skin_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    skin_offset: float = 0.0


def random_face_params(rng: np.random.Generator) -> FaceParams:
    """A random subject: every field drawn from a plausible adult range."""
    u = rng.uniform
    return FaceParams(
        width=float(u(0.94, 1.05)), height=float(u(0.94, 1.05)),
        nose_length=float(u(-3.0, 3.0)), nose_protrusion=float(u(20.0, 25.0)),
        dome_depth=float(u(31.0, 38.0)), eye_depth=float(u(8.0, 12.0)),
        brow_height=float(u(3.0, 5.0)), cheek_height=float(u(3.0, 5.0)),
        lip_height=float(u(2.8, 4.2)), chin_height=float(u(4.5, 7.5)),
        skin_gain=tuple(float(g) for g in u(0.9, 1.1, size=3)),
        skin_offset=float(u(-12.0, 12.0)),
    )


def _gauss(m: np.ndarray, center, sx: float, sy: float | None = None) -> np.ndarray:
    sy = sx if sy is None else sy
    dx = (m[:, 0] - center[0]) / sx
    dy = (m[:, 1] - center[1]) / sy
    return np.exp(-0.5 * (dx * dx + dy * dy))


def _polyline_distance(m: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance of points (N, 2) to a polyline (K, 2)."""
    best = np.full(len(m), np.inf)
    for a, b in zip(poly[:-1], poly[1:]):
        ab = b - a
        t = np.clip(((m - a) @ ab) / (ab @ ab), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(m - (a + t[:, None] * ab), axis=1))
    return best


class FaceModel:
    """The face of one subject.

    params : FaceParams.  All positions are in the model frame (see module docstring).
    """

    def __init__(self, params: FaceParams = FaceParams()):
        self.params = params
        self.scale = np.array([params.width, params.height])
        cx, cy, a, b = REFERENCE_BORDER
        self.border = (cx * params.width, cy * params.height, a * params.width, b * params.height)
        self.landmarks_m = reference_landmarks() * self.scale          # (68, 2) material
        self.controls_m = control_points(self.landmarks_m)               # (N_CONTROLS, 2)
        self._fields: dict[str, SmoothField] = {}

    # ---------------------------------------------------------------- mappings
    def material_to_image(self, m: np.ndarray) -> np.ndarray:
        """Material points (N, 2) mm -> astronaut pixels (N, 2) (x right, y down)."""
        return reference_to_image(np.asarray(m, dtype=np.float64).reshape(-1, 2) / self.scale)

    def image_to_material(self, px: np.ndarray) -> np.ndarray:
        """Astronaut pixels (N, 2) -> material points (N, 2) mm."""
        return image_to_reference(px) * self.scale

    # ---------------------------------------------------------------- shape
    @cached_property
    def _identity(self) -> SmoothField:
        d = np.zeros((N_CONTROLS, 3))
        d[29, 1] = -0.5 * self.params.nose_length
        d[30:36, 1] = -self.params.nose_length
        return SmoothField(self.controls_m, d, self.border)

    def field(self, expression: str) -> SmoothField:
        """The expression's displacement field over material points (cached)."""
        if expression not in self._fields:
            self._fields[expression] = SmoothField(
                self.controls_m, EXPRESSIONS[expression].displacement, self.border)
        return self._fields[expression]

    def height(self, m: np.ndarray) -> np.ndarray:
        """Height field h(m), (N,) float64 mm above the border plane, at material points
        (N, 2); 0 on and outside the border."""
        p, L = self.params, self.landmarks_m
        m = np.asarray(m, dtype=np.float64).reshape(-1, 2)
        rho2 = ellipse_radius(m, self.border) ** 2
        z = p.dome_depth * np.sqrt(np.clip(1.0 - rho2, 0.0, None))

        # nose: a ridge from the nasion (27) to the tip (30), flat-topped at the tip and
        # falling fast below it, plus a round cap on the tip; the tip is the apex.
        nasion, tip = L[27], L[30]
        axis = tip - nasion
        length = np.linalg.norm(axis)
        axis = axis / length
        rel = m - tip
        along = rel @ axis                        # mm, 0 at the tip, < 0 toward the nasion
        across = rel @ np.array([-axis[1], axis[0]])
        cap_h = 6.0
        ridge_top = p.nose_protrusion - cap_h
        n0 = 3.0
        s = np.clip(-along / length, 0.0, None)  # 0 at the tip, 1 at the nasion
        # 2s^2 - s^4 rises from 0 to 1 with zero slope at both ends: flat on the tip,
        # a smooth saddle at the nasion (C1 everywhere)
        above = np.where(s <= 1.0, ridge_top - (ridge_top - n0) * (2.0 * s ** 2 - s ** 4),
                         n0 * np.exp(-((s - 1.0) * length / 8.0) ** 2))
        ridge = np.where(along <= 0.0, above, ridge_top * np.exp(-0.5 * (along / 4.5) ** 2))
        width = 4.0 + 5.0 * np.clip(1.0 - s, 0.0, 1.0)
        z += ridge * np.exp(-0.5 * (across / width) ** 2)
        z += cap_h * _gauss(m, tip, 6.0)
        for k, side in ((31, -1.0), (35, 1.0)):          # alae (nose wings)
            z += 0.3 * p.nose_protrusion * _gauss(m, L[k] + (2.5 * side, 2.0), 4.5)

        # eyes: a socket under the brow with the eyeball in it
        for eye in (L[36:42].mean(axis=0), L[42:48].mean(axis=0)):
            z -= p.eye_depth * _gauss(m, eye + (0.0, 3.0), 12.0, 9.0)
            z += 0.3 * p.eye_depth * _gauss(m, eye, 6.0)
            outward = np.sign(eye[0])
            z += p.cheek_height * _gauss(m, eye + (8.0 * outward, -24.0), 12.0)   # cheekbone
        for brow in (L[17:22], L[22:27]):
            z += p.brow_height * np.exp(-0.5 * (_polyline_distance(m, brow - (0.0, 2.0)) / 5.0) ** 2)

        # mouth: the muzzle, upper and lower lip, the lip line, chin and the groove above it
        mouth = L[48:68].mean(axis=0)
        z += 6.0 * _gauss(m, mouth, 22.0, 16.0)
        z += p.lip_height * _gauss(m, L[50:53].mean(axis=0), 14.0, 4.0)
        z += 1.1 * p.lip_height * _gauss(m, L[56:59].mean(axis=0), 13.0, 4.0)
        z -= 1.5 * _gauss(m, L[60:68].mean(axis=0), 18.0, 2.0)
        chin = L[8] + (0.0, 13.0)
        z += p.chin_height * _gauss(m, chin, 11.0)
        z -= 2.5 * _gauss(m, 0.5 * (L[57] + chin), 14.0, 4.0)
        return np.where(rho2 < 1.0, z, 0.0)

    def surface(self, m: np.ndarray, expression: str = "neutral", intensity: float = 1.0) -> np.ndarray:
        """3-D positions (N, 3) float64, mm, model frame, of material points (N, 2) for an
        expression at an intensity (0 = neutral)."""
        m = np.asarray(m, dtype=np.float64).reshape(-1, 2)
        p = np.column_stack([m, self.height(m)]) + self._identity(m)
        if expression != "neutral" and intensity != 0.0:
            p = p + float(intensity) * self.field(expression)(m)
        return p

    def landmarks3d(self, expression: str = "neutral", intensity: float = 1.0) -> np.ndarray:
        """The 68 landmarks in 3-D, (68, 3) float64 mm, model frame: the neutral surface at
        the landmarks plus exactly ``intensity`` times the expression table."""
        p = self.surface(self.landmarks_m)
        return p + float(intensity) * EXPRESSIONS[expression].landmark_displacement

    def nose_tip(self, expression: str = "neutral", intensity: float = 1.0) -> np.ndarray:
        """The nose tip (landmark 30), (3,) float64 mm, model frame."""
        return self.landmarks3d(expression, intensity)[30]


# -------------------------------------------------------------------- topology
@dataclass(frozen=True)
class Lattice:
    """A structured quad mesh over the reference border ellipse.

    points : (N, 2) float64 reference plane, mm (scale by a subject's (width, height) to
        get its material points).
    quads : (Q, 4) int64 vertex indices, counter-clockwise seen from +Z.
    shape : (rows, cols) of the node grid; node (i, j) has index i * cols + j.
    """

    points: np.ndarray
    quads: np.ndarray
    shape: tuple[int, int]

    @property
    def border(self) -> np.ndarray:
        """(N,) bool: the outer ring of nodes, which lies on the border ellipse."""
        rows, cols = self.shape
        i, j = np.divmod(np.arange(rows * cols), cols)
        return (i == 0) | (i == rows - 1) | (j == 0) | (j == cols - 1)

    def triangles(self) -> np.ndarray:
        """(2Q, 3) int64 triangles, counter-clockwise: each quad cut along the diagonal
        that gives the better (larger) smaller triangle, so the squeezed cells at the
        corners of the mapped square never give a degenerate triangle."""
        q = self.quads
        return split_quads(self.points, q, np.ones(len(q), dtype=bool))[0]


def triangle_areas(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Signed areas (F,) of triangles t (F, 3) over 2-D points p (N, 2); positive when
    counter-clockwise (x right, y up)."""
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def split_quads(points: np.ndarray, quads: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut the quads selected by ``which`` (Q,) bool into two triangles each.

    Returns (triangles (2K, 3) int64, kept quads (Q - K, 4) int64).  Each cut quad uses
    the diagonal whose smaller triangle is larger.
    """
    q = quads[which]
    t02 = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], axis=1).reshape(-1, 2, 3)
    t13 = np.concatenate([q[:, [0, 1, 3]], q[:, [1, 2, 3]]], axis=1).reshape(-1, 2, 3)
    a02 = np.minimum(triangle_areas(points, t02[:, 0]), triangle_areas(points, t02[:, 1]))
    a13 = np.minimum(triangle_areas(points, t13[:, 0]), triangle_areas(points, t13[:, 1]))
    tris = np.where((a02 >= a13)[:, None, None], t02, t13).reshape(-1, 3)
    return tris.astype(np.int64), quads[~which]


def lattice(spacing_mm: float, centre_density: float = 1.0) -> Lattice:
    """The shared topology at a mean node spacing of about ``spacing_mm``.

    A square grid on [-1, 1]^2 is mapped onto the unit disc by
    ``x = s sqrt(1 - t^2 / 2)``, ``y = t sqrt(1 - s^2 / 2)`` and stretched onto
    ``REFERENCE_BORDER``, so the outer ring of nodes lies exactly on the border.
    ``centre_density`` = c < 1 first bends each axis by ``s -> s (c + (1 - c) s^2)``:
    spacing c times the mean in the middle (eyes, nose, mouth), 3 - 2c times at the
    border (the smooth sides of the face), for the same number of nodes.
    """
    cx, cy, a, b = REFERENCE_BORDER
    c = float(centre_density)
    if not 0.0 < c <= 1.0:
        raise ValueError("centre_density must be in (0, 1]")
    cols = max(int(round(2 * a / spacing_mm)) + 1, 3)
    rows = max(int(round(2 * b / spacing_mm)) + 1, 3)
    s = np.linspace(-1.0, 1.0, cols)
    t = np.linspace(1.0, -1.0, rows)          # row 0 at the top (y up)
    s, t = s * (c + (1.0 - c) * s * s), t * (c + (1.0 - c) * t * t)
    S, T = np.meshgrid(s, t)
    x = S * np.sqrt(1.0 - 0.5 * T * T)
    y = T * np.sqrt(1.0 - 0.5 * S * S)
    pts = np.column_stack([cx + a * x.ravel(), cy + b * y.ravel()])
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    n00 = (i * cols + j).ravel()
    # counter-clockwise seen from +Z (rows go down): lower-left, lower-right, upper-right, upper-left
    quads = np.column_stack([n00 + cols, n00 + cols + 1, n00 + 1, n00]).astype(np.int64)
    return Lattice(pts, quads, (rows, cols))


def snap_to(points: np.ndarray, targets: np.ndarray, movable: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Move one node onto each target, so that landmarks become vertices.

    points : (N, 2); targets : (K, 2); movable : (N,) bool, nodes allowed to move
    (e.g. not the border ring), default all.  Targets are served closest first, each
    taking its nearest free movable node.  Returns (moved points (N, 2), node indices
    (K,) int64).
    """
    from scipy.spatial import cKDTree

    cand = np.flatnonzero(np.ones(len(points), bool) if movable is None else movable)
    k = min(8, len(cand))
    dist, near = cKDTree(points[cand]).query(targets, k=k)
    near = cand[near]
    idx = np.full(len(targets), -1, dtype=np.int64)
    taken: set[int] = set()
    for t in np.argsort(dist[:, 0], kind="stable"):
        free = [int(n) for n in near[t] if int(n) not in taken]
        if not free:
            raise ValueError("lattice too coarse: no free node near a landmark")
        idx[t] = free[0]
        taken.add(free[0])
    out = points.copy()
    out[idx] = targets
    return out, idx
