"""The registration target: mean 3-D positions of the 68 iBUG landmarks in the
canonical frame.

Canonical frame (DESIGN.md, AMDFN III-B-1): mm, right-handed, the face looks along +Z,
+Y up, +X toward the subject's left; the nose tip (``ibug_30``) is at the origin (so it
is on the Z axis and it is the template's most protruding point: every other landmark
has z < 0); the template is mirror-symmetric about the plane x = 0, so a registered
face's central axis lies in the Y-Z plane and its eye line is parallel to X.

Where the numbers of the shipped default come from (``preprocess/data/
template_landmarks.json``; its ``provenance`` and ``build`` fields give the details):
real public face scans, not the embedded sample's synthetic model.  The 68 iBUG points
were found by dlib on renders of three real scans of two subjects (LIZHANGYAN/fileread:
Bosphorus ``bs000_CAU_A22A25_0`` (texture render; its hand-placed ``.lm3`` points
replace the detected ones where it has them), ``bs000_CAU_A26A12lw_0`` (no texture:
shaded render), and the POL-DB / PolyWorks export ``001-001.wrl`` (vertex colours)),
lifted onto the meshes, and combined by :func:`build_template`.  Two subjects are few:
the template is a real face's proportions, not a population mean; build a dataset's own
with the ``template`` stage.  Regenerate the default with ``fermaps template --scans
FILES... --out preprocess/data/template_landmarks.json``.

A dataset's own template (the ``template`` stage, ``register.template: dataset``) is
built by :func:`build_template`: rigid GPA (:mod:`preprocess.gpa`) of the dataset's
landmark sets, put into this frame by a rigid fit to the shipped default template
(which fixes where +Z, +Y and +X point), symmetrised, nose tip at the origin.  It is
written with :func:`write_template` and read with ``load_template(path)``.

Why by hand: the template is data of this project; nothing to take from a library.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from data_schema.errors import ConfigError, InputError
from preprocess.gpa import GPAResult, gpa
from preprocess.landmark_names import IBUG_MIRROR, IBUG_NAMES, N_IBUG, ibug_index
from preprocess.registration import RigidFit, apply_rigid, fit_rigid

TEMPLATE_FILE = "template_landmarks.json"


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


_MIRROR_X = np.array([-1.0, 1.0, 1.0])


@dataclass(frozen=True)
class TemplateBuild:
    """Result of :func:`build_template`.

    template : the built Template (canonical frame; names: the iBUG points kept, in
        iBUG order; may be fewer than 68).
    gpa : the GPA of the input sets (its mean in GPA's own frame).
    frame_fit : the rigid fit of the GPA mean onto the reference template (mm).
    spread_mm : name -> RMS spread (mm) of the aligned sets about the mean at that point
        (for a point filled from its mirror: the mirror point's spread), iBUG order.
    count : name -> how many sets have that point (its mirror's, when filled from it).
    mirrored : names filled from their mirror point (no set has them, their mirror is there).
    dropped : iBUG names left out (neither they nor their mirror are in any set).
    origin : "ibug_30" (nose tip at the origin) or "reference" (no set has a nose tip:
        the origin is where the reference's nose tip falls after the frame fit).
    """

    template: Template
    gpa: GPAResult
    frame_fit: RigidFit
    spread_mm: Mapping[str, float]
    count: Mapping[str, int]
    mirrored: tuple[str, ...]
    dropped: tuple[str, ...]
    origin: str


def ibug_array(points: np.ndarray, names, item: str = "landmarks") -> np.ndarray:
    """Named landmarks -> (68, 3) float64 mm in iBUG order, NaN rows where absent.

    points : (N, 3) float, mm; names : N names in any vocabulary of
    :mod:`preprocess.landmark_names` (names with no iBUG counterpart are skipped).
    Raises InputError: shapes that disagree, non-finite mapped points, two names
    mapping to the same iBUG point.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3) if len(points) else np.zeros((0, 3))
    names = [str(n) for n in names]
    if len(pts) != len(names):
        raise InputError(item, f"{len(pts)} landmark points for {len(names)} names")
    out = np.full((N_IBUG, 3), np.nan)
    for pt, name in zip(pts, names):
        k = ibug_index(name)
        if k is None:
            continue
        if not np.isnan(out[k, 0]):
            raise InputError(item, f"two landmarks map to {IBUG_NAMES[k]} (second: {name!r})")
        if not np.isfinite(pt).all():
            raise InputError(item, f"non-finite coordinates for landmark {name!r}")
        out[k] = pt
    return out


def build_template(shapes: np.ndarray, reference: Template, *, tol_mm: float = 1e-6,
                   max_iter: int = 100, provenance: str = "") -> TemplateBuild:
    """A template from landmark sets: rigid GPA, frame of ``reference``, symmetric, nose
    tip at the origin.

    shapes : (N, 68, 3) float, mm, iBUG order, NaN rows = missing (see :func:`ibug_array`).
    reference : a Template in the canonical frame (module docstring), e.g. the shipped
        default; the GPA mean is fitted rigidly onto it on the points both have, which
        fixes the axes (+Z view, +Y up, +X subject's left) without changing the shape.
    tol_mm, max_iter : GPA convergence (:func:`preprocess.gpa.gpa`).
    provenance : the Template's provenance text.

    Symmetrising: a point that no set has is filled from its mirror point (x -> -x)
    before :func:`symmetrize`; a point missing on both sides (a midline point, or a
    pair) is left out of the template.  Raises InputError from GPA and from the frame
    fit (fewer than 3 shared points with the reference).
    """
    if np.ndim(shapes) != 3 or np.shape(shapes)[1:] != (N_IBUG, 3):
        raise InputError("template", f"shapes must be (N, {N_IBUG}, 3), got {np.shape(shapes)}")
    res = gpa(shapes, tol_mm=tol_mm, max_iter=max_iter)
    ref = np.full((N_IBUG, 3), np.nan)
    for name, pt in zip(reference.names, np.asarray(reference.points, dtype=np.float64)):
        ref[IBUG_NAMES.index(name)] = pt
    both = ~(np.isnan(res.mean[:, 0]) | np.isnan(ref[:, 0]))
    fit = fit_rigid(res.mean[both], ref[both], item="template frame (GPA mean -> reference)")
    pts = apply_rigid(res.mean, fit.R, fit.t)
    have = ~np.isnan(pts[:, 0])
    mirror = np.asarray(IBUG_MIRROR)
    spread, count = res.spread_mm.copy(), res.count.copy()
    fill = ~have & have[mirror]
    pts[fill] = pts[mirror[fill]] * _MIRROR_X
    spread[fill], count[fill] = spread[mirror[fill]], count[mirror[fill]]
    keep = have | fill
    # symmetrize needs all 68: the dropped rows are zero and stay out of the result
    pts = symmetrize(np.where(keep[:, None], pts, 0.0))
    origin = "ibug_30" if keep[30] else "reference"
    if keep[30]:
        pts = pts - pts[30]
    pts[np.abs(pts) < 5e-7] = 0.0            # exact zeros on the midline, no "-0.0"
    names = tuple(n for n, k in zip(IBUG_NAMES, keep) if k)
    tpl = Template(np.round(pts[keep], 6), names, provenance)
    return TemplateBuild(tpl, res, fit, {n: float(s) for n, s, k in zip(IBUG_NAMES, spread, keep) if k},
                         {n: int(c) for n, c, k in zip(IBUG_NAMES, count, keep) if k},
                         tuple(n for n, f in zip(IBUG_NAMES, fill) if f),
                         tuple(n for n, k in zip(IBUG_NAMES, keep) if not k), origin)


def write_template(path: str | Path, template: Template, extra: Mapping | None = None) -> None:
    """Write a Template as the JSON :func:`load_template` reads.

    extra : more top-level fields (JSON-serialisable), written after the header, e.g.
    the ``build`` record of the template stage; :func:`load_template` ignores them.
    """
    head = {
        "provenance": template.provenance,
        "frame": "mm, right-handed; face looks along +Z, +Y up, +X = subject's left; "
                 "ibug_30 (nose tip) at the origin; symmetric about x = 0",
        "units": "mm",
        **dict(extra or {}),
    }
    # one landmark a line: the file stays readable and diffs stay small
    # (a nested record, e.g. "build", one key a line too)
    lines = [f" {json.dumps(k)}: "
             + (json.dumps(v, indent=1).replace("\n", "\n ") if isinstance(v, dict) else json.dumps(v)) + ","
             for k, v in head.items()]
    lines.append(f' "names": {json.dumps(list(template.names))},')
    rows = [json.dumps([round(float(v), 6) for v in p]) for p in template.points]
    lines.append(' "points": [\n  ' + ",\n  ".join(rows) + "\n ]")
    Path(path).write_text("{\n" + "\n".join(lines) + "\n}\n", encoding="utf-8")


def parse_template(text: str, where: str = "template") -> Template:
    """The JSON of :func:`write_template` -> Template (read-only points).

    Raises ConfigError naming ``where`` when it is not JSON, lacks names / points /
    provenance, names a point outside iBUG-68 or twice, or has non-finite points or
    fewer than 3 of them.
    """
    try:
        doc = json.loads(text)
        names = tuple(str(n) for n in doc["names"])
        pts = np.asarray(doc["points"], dtype=np.float64)
        prov = str(doc["provenance"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: not a template JSON (names, points, provenance): {exc}") from None
    bad = [n for n in names if n not in IBUG_NAMES]
    if bad or len(set(names)) != len(names):
        raise ConfigError(f"{where}: names must be distinct iBUG-68 names, got {bad or 'duplicates'}")
    if pts.shape != (len(names), 3) or len(names) < 3 or not np.isfinite(pts).all():
        raise ConfigError(f"{where}: points must be ({len(names)}, 3) finite mm with at least 3 "
                          f"points, got {pts.shape}")
    pts.setflags(write=False)                 # shared by every caller: keep it intact
    return Template(pts, names, prov)


@lru_cache(maxsize=1)
def _load() -> Template:
    text = resources.files("preprocess").joinpath("data", TEMPLATE_FILE).read_text("utf-8")
    return parse_template(text, f"preprocess/data/{TEMPLATE_FILE}")


def load_template(path: str | Path | None = None) -> Template:
    """A registration template: Template(points (M, 3) float64 mm, read-only, names
    ``"ibug_<k>"``, provenance).

    path : None = the shipped default (``preprocess/data/template_landmarks.json``, 68
        points; read once, cached), or a template JSON of :func:`write_template` (e.g.
        the ``template`` stage's output; read on each call).  Raises ConfigError when
        the file is missing or not a template (:func:`parse_template`).
    """
    if path is None:
        return _load()
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"template {path}: cannot read it ({exc.strerror or exc})") from None
    return parse_template(text, str(path))
