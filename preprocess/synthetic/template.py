"""The landmark template of the embedded sample's anatomy.

The sample's parametric face (:mod:`preprocess.synthetic.face_model`) is not a real
face: its landmarks miss the shipped real-scan template (``preprocess/data``) by 5-9 mm
rmse (measured on the sample's Bosphorus and BU-3DFE scans), more than real subjects do
(3-5 mm).  A dataset whose anatomy or landmark conventions differ builds its own
template (``fermaps template``); this is that template for the sample, computed from the
model itself so that tests can use it without a store: the mean neutral 3-D iBUG-68
landmarks of random subjects, symmetrised, nose tip at the origin.
"""
from __future__ import annotations

import numpy as np

from preprocess.landmark_names import IBUG_NAMES
from preprocess.template import Template, symmetrize

SUBJECTS = 200
SEED = 0


def sample_template(n_subjects: int = SUBJECTS, seed: int = SEED) -> Template:
    """Template of the sample's face model: (68, 3) float64 mm, iBUG names, ibug_30 (nose
    tip) at the origin, symmetric about x = 0.  n_subjects : random neutral subjects
    averaged (``random_face_params(numpy.random.default_rng(seed))``)."""
    from preprocess.synthetic.face_model import FaceModel, random_face_params

    rng = np.random.default_rng(seed)
    total = np.zeros((68, 3))
    for _ in range(n_subjects):
        total += FaceModel(random_face_params(rng)).landmarks3d("neutral", 0.0)
    pts = symmetrize(total / n_subjects)
    pts = pts - pts[30]
    pts[np.abs(pts) < 5e-7] = 0.0            # exact zeros on the midline, no "-0.0"
    prov = (f"synthetic: mean neutral 3-D iBUG-68 landmarks of {n_subjects} random subjects "
            f"of preprocess.synthetic.face_model (seed {seed}), symmetrised, nose tip at the "
            f"origin: the embedded sample's anatomy, not a real face")
    return Template(np.round(pts, 6), IBUG_NAMES, prov)
