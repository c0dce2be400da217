"""The registration target: mean 3-D positions of the 68 iBUG landmarks in the
canonical frame.

Canonical frame (DESIGN.md, AMDFN III-B-1): mm, right-handed, the face looks along +Z,
+Y up, +X toward the subject's left; the nose tip (``ibug_30``) is at the origin (so it
is on the Z axis and it is the template's most protruding point: every other landmark
has z < 0); the template is mirror-symmetric about the plane x = 0, so a registered
face's central axis lies in the Y-Z plane and its eye line is parallel to X.

Where the numbers come from: there is no real 3-D face database offline, so they are
derived from the embedded sample's face model (:mod:`preprocess.synthetic.face_model`,
the parametric face built on scikit-image's ``astronaut()`` landmarks): the mean of the
neutral 3-D landmarks of ``n_subjects`` random subjects, averaged with its own mirror
image (x -> -x, iBUG left/right swapped) and translated so that the nose tip is at the
origin.  :func:`derive_template` does that; the result is stored once in
``preprocess/data/template_landmarks.json`` with a provenance field and read by
:func:`load_template`.  Regenerate with ``python -m preprocess.template``.

Why by hand: the template is data of this project; nothing to take from a library.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from preprocess.landmark_names import IBUG_MIRROR, IBUG_NAMES

TEMPLATE_FILE = "template_landmarks.json"
DERIVE_SUBJECTS = 1000
DERIVE_SEED = 0


@dataclass(frozen=True)
class Template:
    """Named template landmarks.

    points : (M, 3) float64, mm, canonical frame (module docstring).
    names : M names (``"ibug_0"`` .. ``"ibug_67"`` for the stored template).
    provenance : where the numbers come from.
    """

    points: np.ndarray
    names: tuple[str, ...]
    provenance: str = ""

    def __post_init__(self):
        if self.points.shape != (len(self.names), 3):
            raise ValueError(f"template: {self.points.shape} points for {len(self.names)} names")

    def point(self, name: str) -> np.ndarray:
        """(3,) float64 mm position of one named landmark (KeyError if absent)."""
        return self.points[self.names.index(name)]


def symmetrize(points: np.ndarray) -> np.ndarray:
    """Average iBUG-68 points (68, 3) with their mirror image about x = 0 (left/right
    landmarks swapped).  Returns (68, 3) float64 with ``out[IBUG_MIRROR] * (-1, 1, 1)
    == out``."""
    p = np.asarray(points, dtype=np.float64)
    mirrored = p[list(IBUG_MIRROR)] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (p + mirrored)


def derive_template(n_subjects: int = DERIVE_SUBJECTS, seed: int = DERIVE_SEED) -> Template:
    """Compute the template from the sample's face model (see module docstring).

    n_subjects : random neutral subjects averaged; seed : numpy ``default_rng`` seed
    of ``random_face_params``.  Returns a Template (68 iBUG points, mm).
    """
    from preprocess.synthetic.face_model import FaceModel, random_face_params

    rng = np.random.default_rng(seed)
    total = np.zeros((68, 3))
    for _ in range(n_subjects):
        total += FaceModel(random_face_params(rng)).landmarks3d("neutral", 0.0)
    pts = symmetrize(total / n_subjects)
    pts = pts - pts[30]
    pts[np.abs(pts) < 5e-7] = 0.0            # exact zeros on the midline, no "-0.0"
    prov = (f"derived, not measured: mean neutral 3-D iBUG-68 landmarks of {n_subjects} "
            f"random subjects of preprocess.synthetic.face_model (FaceModel("
            f"random_face_params(numpy.random.default_rng({seed}))).landmarks3d('neutral', 0);"
            " the sample's parametric face built on skimage.data.astronaut() landmarks), "
            "averaged with its mirror image (x -> -x, iBUG left/right swapped) and "
            "translated so that ibug_30 (nose tip) is at the origin. No real 3-D face "
            "database is available offline.")
    return Template(np.round(pts, 6), IBUG_NAMES, prov)


def write_template(path: str | Path, template: Template) -> None:
    """Write a Template as the JSON :func:`load_template` reads."""
    head = {
        "provenance": template.provenance,
        "frame": "mm, right-handed; face looks along +Z, +Y up, +X = subject's left; "
                 "ibug_30 (nose tip) at the origin; symmetric about x = 0",
        "units": "mm",
    }
    # one landmark a line: the file stays readable and diffs stay small
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append(f' "names": {json.dumps(list(template.names))},')
    rows = [json.dumps([round(float(v), 6) for v in p]) for p in template.points]
    lines.append(' "points": [\n  ' + ",\n  ".join(rows) + "\n ]")
    Path(path).write_text("{\n" + "\n".join(lines) + "\n}\n", encoding="utf-8")


@lru_cache(maxsize=1)
def _load() -> Template:
    text = resources.files("preprocess").joinpath("data", TEMPLATE_FILE).read_text("utf-8")
    doc = json.loads(text)
    pts = np.asarray(doc["points"], dtype=np.float64)
    pts.setflags(write=False)                 # shared by every caller: keep it intact
    return Template(pts, tuple(doc["names"]), doc["provenance"])


def load_template() -> Template:
    """The stored registration template: Template(points (68, 3) float64 mm,
    names ``"ibug_0"``.. ``"ibug_67"``, provenance).  Read once, cached; the points are
    read-only."""
    return _load()


def main() -> None:
    """Regenerate ``preprocess/data/template_landmarks.json``."""
    path = Path(__file__).parent / "data" / TEMPLATE_FILE
    write_template(path, derive_template())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
