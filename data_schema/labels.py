"""Label maps, one per dataset: class names, their integer labels, and the dataset's
own expression codes (from file names, folder names or emotion files).

The integer label of a class is its position in ``classes``.  Unknown codes map to
``UNLABELLED`` (-1), e.g. Bosphorus action-unit or rotation scans.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

UNLABELLED = -1


@dataclass(frozen=True)
class LabelMap:
    """Classes of one dataset and the codes that name them.

    name : dataset key, e.g. ``"ckplus"``.
    classes : class names; label = index.
    codes : dataset code (as found in the raw data, case-sensitive) -> label.
    """

    name: str
    classes: tuple[str, ...]
    codes: Mapping[str, int] = field(default_factory=dict)

    def label_of(self, code: str) -> int:
        """Label of a dataset code, ``UNLABELLED`` (-1) when the code has no class."""
        return self.codes.get(code, UNLABELLED)

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else "unlabelled"

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _basic(*names: str) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


BASIC6 = ("anger", "disgust", "fear", "happy", "sadness", "surprise")

# Bosphorus file names: E_<EMOTION> for the six emotions, N_N for neutral.
BOSPHORUS = LabelMap(
    "bosphorus",
    BASIC6 + ("neutral",),
    MappingProxyType({**_basic("ANGER", "DISGUST", "FEAR", "HAPPY", "SADNESS", "SURPRISE"),
                      "NEUTRAL": 6, "N": 6}),
)

# BU-3DFE file names: AN/DI/FE/HA/SA/SU, NE for neutral.
BU3DFE = LabelMap(
    "bu3dfe",
    BASIC6 + ("neutral",),
    MappingProxyType({**_basic("AN", "DI", "FE", "HA", "SA", "SU"), "NE": 6}),
)

FACESCAPE20_CLASSES = (
    "neutral", "smile", "mouth_stretch", "anger", "jaw_left", "jaw_right", "jaw_forward",
    "mouth_left", "mouth_right", "dimpler", "chin_raiser", "lip_puckerer", "lip_funneler",
    "sadness", "lip_roll", "grin", "cheek_blowing", "eye_closed", "brow_raiser", "brow_lower",
)
# FaceScape TU file names are "<k>_<expression>" with k = 1..20 in the order above.
FACESCAPE20 = LabelMap("facescape20", FACESCAPE20_CLASSES,
                       MappingProxyType(_basic(*FACESCAPE20_CLASSES)))

# AMDFN (seed 000, Fig. 5) uses 16 of the 20: without chin_raiser, grin, cheek_blowing,
# brow_lower.
FACESCAPE16_CLASSES = tuple(c for c in FACESCAPE20_CLASSES
                            if c not in ("chin_raiser", "grin", "cheek_blowing", "brow_lower"))
FACESCAPE16 = LabelMap("facescape16", FACESCAPE16_CLASSES,
                       MappingProxyType(_basic(*FACESCAPE16_CLASSES)))

# CK+ emotion files hold a float code 0..7 (REFERENCE.md); the code string is the int.
CKPLUS = LabelMap(
    "ckplus",
    ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"),
    MappingProxyType({str(i): i for i in range(8)}),
)

# Oulu-CASIA folder names.
OULU = LabelMap(
    "oulu",
    BASIC6,
    MappingProxyType(_basic("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")),
)

# MMI emotion metatag 1..6 = anger, disgust, fear, happy, sadness, surprise; the sample
# videos carry the class name in the file name instead.
MMI = LabelMap(
    "mmi",
    BASIC6,
    MappingProxyType({**{str(i + 1): i for i in range(6)}, **_basic(*BASIC6)}),
)

# AFEW folder names.
AFEW = LabelMap(
    "afew",
    ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    MappingProxyType(_basic("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")),
)

# Scans or sequences of no known dataset (generic .ply/.obj, FRGC, plain videos).
UNKNOWN = LabelMap("unknown", (), MappingProxyType({}))

LABEL_MAPS: Mapping[str, LabelMap] = MappingProxyType({
    m.name: m for m in (BOSPHORUS, BU3DFE, FACESCAPE20, FACESCAPE16, CKPLUS, OULU, MMI, AFEW)
})


def label_map(dataset: str) -> LabelMap:
    """The label map of a dataset key; FaceScape maps to its 20-class map; unknown
    datasets map to an empty map (every label -1)."""
    if dataset == "facescape":
        return FACESCAPE20
    return LABEL_MAPS.get(dataset, UNKNOWN)
