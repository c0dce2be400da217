"""Landmark vocabularies and how they map onto iBUG-68.

iBUG-68 (0-based, ``"ibug_<k>"``) is the common vocabulary of the 3-D chain: the
registration template (:mod:`preprocess.template`) names its points that way, dlib and
FaceScape give them directly, and the two other file vocabularies are mapped here onto
the iBUG point at the same anatomical place, where one exists:

* Bosphorus ``.lm3``/``.lm2`` labels (:data:`preprocess.io.bosphorus.BOSPHORUS_LANDMARKS`).
  "left"/"right" are the *image's* left/right as the scanner saw the face, i.e. the
  subject's right/left ("left" = iBUG's lower-numbered side, -x after registration;
  checked on the real ``bs000_CAU_A22A25_0.lm3``, see :data:`BOSPHORUS_TO_IBUG`).  The nose saddles, the nose peaks (alae), the chin middle and the ear
  lobes have no iBUG counterpart and are left out.
* BU-3DFE ``.bnd`` indices (``"bnd_<k>"``, 0-based).  The layout used is the one of
  REFERENCE.md (eyes 0-15, brows 16-35, nose 36-47, mouth 48-67, contour 68-82), with
  the order inside each group as the embedded sample writes it
  (:func:`preprocess.synthetic.scans.bu3dfe_landmark_material`): 0-7 around the right
  eye from its outer corner, 8-15 around the left eye from its inner corner, 16-20 along
  the right brow from its outer end (then 5 back along its lower edge), 26-30 along the
  left brow from its inner end, 38-41 = iBUG 31, 32, 34, 35, 44-47 = iBUG 27, 28, 29, 33,
  48-67 = iBUG 48-67, 68-82 the contour from iBUG 0 to iBUG 16.  Only the points with an
  anatomical identity are mapped: eye corners (0, 4, 8, 12), brow ends and middles, the
  nose points above, the 20 mouth points and the contour's ends and middle (chin).
  The within-group order of real BU-3DFE files has not been checked against a real file
  here (none is available offline): verify it on the first real scan.

Why by hand: these are lookup tables; no maintained package ships them.
"""
from __future__ import annotations

import re

N_IBUG = 68
#: ``"ibug_0"`` .. ``"ibug_67"``.
IBUG_NAMES: tuple[str, ...] = tuple(f"ibug_{k}" for k in range(N_IBUG))

#: iBUG index of each iBUG point's mirror image (subject's left <-> right); points on
#: the midline (nose bridge, 30, 33, 51, 57, 62, 66, chin 8) map to themselves.
IBUG_MIRROR: tuple[int, ...] = (
    *range(16, -1, -1),                       # jaw 0..16
    *range(26, 21, -1), *range(21, 16, -1),   # brows 17..21 <-> 26..22
    27, 28, 29, 30,                           # nose bridge
    35, 34, 33, 32, 31,                       # nose bottom
    45, 44, 43, 42, 47, 46,                   # right eye 36..41 <-> left eye
    39, 38, 37, 36, 41, 40,                   # left eye 42..47 <-> right eye
    54, 53, 52, 51, 50, 49, 48,               # outer upper lip 48..54
    59, 58, 57, 56, 55,                       # outer lower lip 55..59
    64, 63, 62, 61, 60,                       # inner upper lip 60..64
    67, 66, 65,                               # inner lower lip 65..67
)

#: Bosphorus label -> iBUG index.  Bosphorus "left" is the *image's* left = the
#: subject's right = iBUG's lower-numbered side (-x after registration); checked on the
#: real ``bs000_CAU_A22A25_0.lm3`` (LIZHANGYAN/fileread): "Outer left eyebrow" at
#: x = -90.3 mm, "Outer right eyebrow" at x = +33.3 mm, nose tip z = 48 facing +Z.
BOSPHORUS_TO_IBUG: dict[str, int] = {
    "Outer left eyebrow": 17,
    "Middle left eyebrow": 19,
    "Inner left eyebrow": 21,
    "Inner right eyebrow": 22,
    "Middle right eyebrow": 24,
    "Outer right eyebrow": 26,
    "Outer left eye corner": 36,
    "Inner left eye corner": 39,
    "Inner right eye corner": 42,
    "Outer right eye corner": 45,
    "Nose tip": 30,
    "Left mouth corner": 48,
    "Right mouth corner": 54,
    "Upper lip outer middle": 51,
    "Upper lip inner middle": 62,
    "Lower lip inner middle": 66,
    "Lower lip outer middle": 57,
}

#: BU-3DFE ``.bnd`` index -> iBUG index (layout in the module docstring).
BU3DFE_TO_IBUG: dict[int, int] = {
    # eyes: right from its outer corner, left from its inner corner
    0: 36, 4: 39, 8: 42, 12: 45,
    # brows: right outer -> inner, left inner -> outer
    16: 17, 18: 19, 20: 21, 26: 22, 28: 24, 30: 26,
    # nose bottom and bridge
    38: 31, 39: 32, 40: 34, 41: 35, 44: 27, 45: 28, 46: 29, 47: 33,
    # mouth: the same 20 points in the same order
    **{k: k for k in range(48, 68)},
    # contour: ends and chin
    68: 0, 75: 8, 82: 16,
}

#: BU-3DFE ``.bnd`` indices whose midpoint stands in for the nose tip (the nose wings
#: flanking it; REFERENCE.md: BU-3DFE has no nose-tip landmark).
BU3DFE_NOSE_TIP_PAIR: tuple[int, int] = (37, 42)

_IBUG = re.compile(r"^ibug_(\d+)$")
_BND = re.compile(r"^bnd_(\d+)$")
_BOSPHORUS = {" ".join(k.lower().split()): v for k, v in BOSPHORUS_TO_IBUG.items()}


def ibug_index(name: str) -> int | None:
    """The iBUG-68 index (0..67) a landmark name stands for, or None.

    name : ``"ibug_<k>"`` (0 <= k < 68), a Bosphorus label (case and inner spaces do not
    matter) or ``"bnd_<k>"`` (BU-3DFE).  Names without an iBUG counterpart (e.g.
    ``"Nose saddle left"``, ``"bnd_37"``) and unknown names give None.
    """
    m = _IBUG.match(name)
    if m:
        k = int(m.group(1))
        return k if k < N_IBUG else None
    m = _BND.match(name)
    if m:
        return BU3DFE_TO_IBUG.get(int(m.group(1)))
    return _BOSPHORUS.get(" ".join(name.lower().split()))


def to_ibug(name: str) -> str | None:
    """``"ibug_<k>"`` for a landmark name (see :func:`ibug_index`), or None."""
    k = ibug_index(name)
    return None if k is None else IBUG_NAMES[k]
