"""MediaPipe face mesh (468 vertices, 478 with the iris refinement) -> iBUG-68.

:data:`MEDIAPIPE_TO_IBUG68` gives, for each iBUG-68 point (0-based), the face-mesh
vertex at the same anatomical place, or a pair of vertices whose midpoint is.  It was
written from the canonical face-mesh topology (the contour chains MediaPipe publishes
as ``FACEMESH_FACE_OVAL``, ``FACEMESH_*_EYE``, ``FACEMESH_*_EYEBROW``, ``FACEMESH_LIPS``
and ``FACEMESH_NOSE``) and the anatomy of those chains:

* jaw 0..16: the face-oval chain from the subject's right temple (127) down to the
  chin (152) and up to the left temple (356).  That stretch has 12 vertices a side for
  9 iBUG points, so iBUG points that fall between two oval vertices take their midpoint;
  the two sides use mirror-image vertices (127/356, 234+93/454+323, ...).
* brows 17..26: each MediaPipe brow is two chains (upper and lower edge, 5 vertices
  each, outer to inner); iBUG's 5 points run along the brow's middle, so each is the
  midpoint of an upper/lower pair.
* nose: bridge 27..30 = the midline chain 168 (between the eyes), 197, 5, 4 (the
  pronasale: the most protruding vertex, smallest mesh z); base 31..35 = the lower
  nose outline 98 (alar base), 97, 2 (subnasale), 326, 327.
* eyes 36..47: corners 33/133 and 362/263; iBUG's upper and lower lid points sit at
  1/3 and 2/3 of each 8-edge lid chain (160, 158 / 153, 144 and 385, 387 / 373, 380).
* mouth 48..67: corners 61/291 and 78/308; outer-lip points 0/17 (midline), 37/267
  (the peaks of the cupid's bow), 40/270, 314/84, 321/91; the inner-lip points are
  the inner-ring vertices straight below/above those (82, 13, 312 / 317, 14, 87).

"Right"/"left" are the subject's: iBUG 36 (subject's right outer eye corner) is on the
image's left in a frontal photo.  Checked on scikit-image's ``astronaut()`` against
dlib's 68 points: mean distance 1.8 px, NME 0.029 of the outer-eye-corner distance
(tests/preprocess/test_landmarks.py checks the anatomy point by point).

Why by hand: MediaPipe ships no iBUG-68 correspondence; this is a lookup table.
This module imports numpy only, so it works under either interpreter.
"""
from __future__ import annotations

import numpy as np

#: For each iBUG-68 point (index = iBUG number), the face-mesh vertex, or a pair of
#: vertices whose midpoint stands for it.
MEDIAPIPE_TO_IBUG68: tuple[int | tuple[int, int], ...] = (
    # jaw 0..8 (subject's right temple -> chin), 9..16 (chin -> left temple)
    127, (234, 93), 132, 58, 172, (136, 150), 149, (176, 148), 152,
    (400, 377), 378, (365, 379), 397, 288, 361, (454, 323), 356,
    # right brow 17..21 (outer -> inner): (upper edge, lower edge) pairs
    (70, 46), (63, 53), (105, 52), (66, 65), (107, 55),
    # left brow 22..26 (inner -> outer)
    (336, 285), (296, 295), (334, 282), (293, 283), (300, 276),
    # nose bridge 27..30 (30 = tip), nose base 31..35 (image left -> right)
    168, 197, 5, 4,
    98, 97, 2, 326, 327,
    # right eye 36..41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye 42..47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lips 48..59: right corner, upper lip to left corner, lower lip back
    61, 40, 37, 0, 267, 270, 291,
    321, 314, 17, 84, 91,
    # inner lips 60..67: right corner, upper inner, left corner, lower inner
    78, 82, 13, 312, 308,
    317, 14, 87,
)

N_MESH = 468  # vertices of the face mesh without the 10 iris points


def _table_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(68,) first and (68,) second vertex of each entry (equal for single vertices)."""
    a = np.array([v[0] if isinstance(v, tuple) else v for v in MEDIAPIPE_TO_IBUG68])
    b = np.array([v[1] if isinstance(v, tuple) else v for v in MEDIAPIPE_TO_IBUG68])
    return a, b


_FIRST, _SECOND = _table_arrays()


def map_468_to_68(mesh_points: np.ndarray) -> np.ndarray:
    """iBUG-68 points from MediaPipe face-mesh vertices.

    mesh_points : (468, D) or (478, D) float, D = 2 or 3, in any units (pixels for
        the landmark backend); the 10 iris vertices of a 478-vertex mesh are ignored.
    Returns (68, D) float64 in the same units: the vertex of each table entry, or the
    midpoint of its pair.  Raises ValueError for any other shape.
    """
    p = np.asarray(mesh_points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] not in (N_MESH, N_MESH + 10) or p.shape[1] not in (2, 3):
        raise ValueError(f"expected (468|478, 2|3) face-mesh points, got {p.shape}")
    return 0.5 * (p[_FIRST] + p[_SECOND])


def mesh_vertices_of(ibug_index: int) -> tuple[int, ...]:
    """The face-mesh vertex (or the two vertices) behind iBUG point ``ibug_index``."""
    v = MEDIAPIPE_TO_IBUG68[ibug_index]
    return v if isinstance(v, tuple) else (v,)
