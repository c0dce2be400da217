"""``fermaps template``: a dataset's own registration template from its landmark files,
and the template ``register.template`` picks.

The stage reads the 3-D landmarks of the raw_mesh store's items (per dataset: its
neutral scans when it labels any as neutral, else all of its scans), puts them in the
iBUG-68 vocabulary, and builds the template with
:func:`preprocess.template.build_template` (rigid GPA, frame of the shipped default,
symmetric, nose tip at the origin).  It writes ``template.json`` with a ``build`` record
(items used, selection, per-point spread, iterations) and ``failures.jsonl`` (sets that
could not be used) beside it.  With fewer than :data:`MIN_SETS` usable sets it writes
the shipped default instead, saying so in ``build``, so that ``register`` always has a
template file to depend on.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import ConfigError, InputError
from data_schema.labels import label_map
from data_schema.params import RegisterParams
from data_schema.store import ItemMeta, Store, write_failures
from pipeline.runner import Failure
from pipeline.summary import StageResult, finish_stage
from preprocess.template import (TEMPLATE_FILE, Template, build_template, ibug_array, load_template,
                                 write_template)

STAGE = "template"
#: Where the stage writes the dataset template (``register.template: dataset``),
#: relative to the repository root (the DVC stage's output).
DATASET_TEMPLATE = "data/template/template.json"
#: Fewer usable landmark sets than this: the shipped default is written instead (with
#: 2 sets GPA is only a pairwise fit; 3 is the least that averages anything).
MIN_SETS = 3
#: A set with fewer iBUG points than this cannot be posed (a rigid fit needs 3).
MIN_POINTS = 3


@dataclass(frozen=True)
class LandmarkSets:
    """The landmark sets a template is built from.

    keys : item keys of the usable sets, sorted.
    shapes : (N, 68, 3) float64, mm, each scan's own frame, iBUG order, NaN = absent.
    selection : dataset -> "neutral" (only its neutral scans) or "all".
    n_selected : items selected (usable or not).
    failures : the selected items whose set cannot be used, and why.
    """

    keys: tuple[str, ...]
    shapes: np.ndarray
    selection: dict[str, str]
    n_selected: int
    failures: tuple[Failure, ...]


def is_neutral(meta: ItemMeta) -> bool:
    """The item's label is its dataset's "neutral" class (data_schema.labels)."""
    return label_map(meta.dataset).class_name(meta.label) == "neutral"


def select_items(metas: Iterable[ItemMeta]) -> tuple[list[str], dict[str, str]]:
    """Keys to build the template from and, per dataset, "neutral" or "all".

    Per dataset, because a store may mix datasets: one that labels some scans neutral
    contributes those only (expressions would blur the mean), one that labels none
    (generic scans, an expression-only subset) contributes every scan.
    """
    by_dataset: dict[str, list[ItemMeta]] = defaultdict(list)
    for m in metas:
        by_dataset[m.dataset].append(m)
    keys, selection = [], {}
    for ds in sorted(by_dataset):
        neutral = [m.key for m in by_dataset[ds] if is_neutral(m)]
        selection[ds] = "neutral" if neutral else "all"
        keys += neutral or [m.key for m in by_dataset[ds]]
    return sorted(keys), selection


def _collect(keys, shape_of) -> tuple[tuple[str, ...], np.ndarray, tuple[Failure, ...]]:
    """(keys used, (S, 68, 3) shapes with NaN rows for missing points, failures) of
    ``shape_of(key)`` over ``keys``; an InputError leaves the key out as a failure."""
    used, shapes, failures = [], [], []
    for key in keys:
        try:
            shapes.append(shape_of(key))
        except InputError as exc:
            failures.append(Failure(key, STAGE, type(exc).__name__, str(exc)))
            continue
        used.append(key)
    return tuple(used), (np.stack(shapes) if shapes else np.zeros((0, 68, 3))), tuple(failures)


def read_landmark_sets(store: Store) -> LandmarkSets:
    """The selected items' 3-D landmarks of a raw_mesh store, in iBUG order."""
    keys, selection = select_items(store.metas())

    def shape_of(key: str) -> np.ndarray:
        _, a = store.read(key)
        if len(a["landmarks"]) == 0:
            raise InputError(key, "no 3-D landmarks (no landmark file beside the scan)")
        shape = ibug_array(a["landmarks"], a["landmark_names"], item=key)
        n = int((~np.isnan(shape[:, 0])).sum())
        if n < MIN_POINTS:
            raise InputError(key, f"{n} landmark(s) in the iBUG-68 vocabulary (of {len(a['landmarks'])}); "
                                  f"a set needs {MIN_POINTS}")
        return shape

    used, arr, failures = _collect(keys, shape_of)
    return LandmarkSets(used, arr, selection, len(keys), failures)


def scan_landmark_sets(paths: Iterable[str]) -> LandmarkSets:
    """Landmark sets read off scan files (this is how the shipped default is made): the
    68 iBUG points dlib finds on each scan's texture render, or on its shaded render when
    it has no colour (preprocess.pose.register.detected_landmarks), lifted to 3-D, with
    the points of the scan's landmark file put in place of the detected ones where the
    file has them (hand-placed points are the better estimate).  No selection by
    expression: the caller chooses the scans."""
    from pipeline.chain import _texture_args
    from pipeline.records import item_meta, scan_record
    from preprocess.io import format_of, read_scan
    from preprocess.pose.register import detected_landmarks

    def shape_of(path: str) -> np.ndarray:
        scan = read_scan(path)
        rec = scan_record(scan, item_meta(scan.ids, Path(path), Path(path).parent,
                                          format_of(path).name)).arrays
        colour = {k: v for k, v in _texture_args(rec).items() if v is not None}
        lm = detected_landmarks(scan.vertices, scan.faces, colour or None, inner_only=False, item=path)
        if isinstance(lm, str):
            raise InputError(path, f"no face found on its render: {lm}")
        shape = ibug_array(lm.points, lm.names, item=path)
        if scan.landmarks is not None and len(scan.landmarks.names):
            own = ibug_array(scan.landmarks.points, scan.landmarks.names, item=path)
            shape[~np.isnan(own[:, 0])] = own[~np.isnan(own[:, 0])]
        return shape

    paths = sorted(paths)
    used, arr, failures = _collect(paths, shape_of)
    return LandmarkSets(used, arr, {"scans": "all"}, len(paths), failures)


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) for k, v in d.items()}


def template_from_sets(sets: LandmarkSets, source: str) -> tuple[Template, dict, list[Failure]]:
    """Template, its ``build`` record and the extra failures (sets GPA could not pose)
    from landmark sets; the shipped default when fewer than MIN_SETS are usable."""
    default = load_template()
    common = {"store": source, "selection": sets.selection, "n_selected": sets.n_selected,
              "n_failed": len(sets.failures)}
    failures: list[Failure] = []
    reason = f"{len(sets.keys)} usable landmark set(s) in the iBUG-68 vocabulary (need {MIN_SETS})"
    if len(sets.keys) >= MIN_SETS:
        try:
            built = build_template(sets.shapes, default)
        except InputError as exc:
            reason = f"GPA failed: {exc.reason}"
        else:
            res = built.gpa
            failures = [Failure(sets.keys[i], STAGE, "InputError", f"{sets.keys[i]}: cannot be posed onto "
                                                                   f"the GPA mean: {why}")
                        for i, why in sorted(res.excluded.items())]
            keys = [k for k, u in zip(sets.keys, res.used) if u]
            if len(keys) >= MIN_SETS:
                sel = "/".join(sorted(set(sets.selection.values())))
                prov = (f"dataset template: rigid generalised Procrustes analysis (rotation + "
                        f"translation, no scale) of {len(keys)} 3-D landmark sets ({sel} scans) of "
                        f"{source}, aligned to the shipped default's frame, symmetrised about x = 0, "
                        f"ibug_30 at the origin ({built.origin}); see 'build'")
                # keys in reading order (not sorted): summary first, per-point lists last
                build = {"method": "rigid GPA (preprocess.gpa), frame fit to the shipped default "
                                   "(preprocess.template.build_template)",
                         "fallback": None, **common, "n_failed": len(sets.failures) + len(failures),
                         "n_items": len(keys), "iterations": res.iterations, "converged": res.converged,
                         "final_change_mm": float(f"{res.change_mm:.3g}"),
                         "frame_fit_rmse_mm": round(built.frame_fit.rmse, 4), "origin": built.origin,
                         "mirrored": list(built.mirrored), "dropped": list(built.dropped),
                         "spread_mm": _rounded(built.spread_mm), "count": dict(built.count), "items": keys}
                if built.origin != "ibug_30":
                    build["frame"] = ("as the shipped default's, but no set has ibug_30: the origin is where "
                                      "the default's nose tip falls after the frame fit")
                return Template(built.template.points, built.template.names, prov), build, failures
            reason = f"{len(keys)} landmark set(s) could be posed by GPA (need {MIN_SETS})"
    prov = f"the shipped default template ({reason}): {default.provenance}"
    build = {"method": f"shipped default (preprocess/data/{TEMPLATE_FILE})", "fallback": reason, **common,
             "n_failed": len(sets.failures) + len(failures), "n_items": 0, "items": []}
    return Template(default.points, default.names, prov), build, failures


def run_template(in_root: str | os.PathLike, out_path: str | os.PathLike,
                 scans: list[str] | None = None) -> StageResult:
    """``fermaps template --in STORE --out FILE`` (or ``--scans FILE...``): FILE
    (template JSON with a ``build`` record) and failures.jsonl beside it."""
    if scans:
        sets = scan_landmark_sets(scans)
        tpl, build, extra = template_from_sets(sets, "scan files " + ", ".join(
            f"{Path(k).name} (sha256 {hashlib.sha256(Path(k).read_bytes()).hexdigest()[:12]})" for k in sets.keys))
        if build["fallback"] is None:
            tpl = Template(tpl.points, tpl.names, tpl.provenance.replace(
                "dataset template:", "template from real scans (the iBUG-68 points dlib finds on each scan's "
                "texture or shaded render, lifted onto the mesh; the scan's landmark-file points where it has them):", 1))
    else:
        sets = read_landmark_sets(Store(in_root, "raw_mesh"))
        tpl, build, extra = template_from_sets(sets, str(in_root))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_template(out, tpl, {"build": build})
    failures = list(sets.failures) + extra
    write_failures(out.parent, [f.as_dict() for f in failures])
    # a failed set never fails the stage: the template falls back to the default
    return finish_stage(STAGE, sets.n_selected, failures, 1.0, {"template": build["n_items"]})


def template_path(p: RegisterParams, root: str | os.PathLike = ".") -> Path | None:
    """The template file ``register.template`` names: None for "default" (the shipped
    one), ``root/data/template/template.json`` for "dataset", else the path itself
    (relative paths from ``root``)."""
    if p.template == "default":
        return None
    return Path(root) / (DATASET_TEMPLATE if p.template == "dataset" else p.template)


def template_for(p: RegisterParams, root: str | os.PathLike = ".") -> Template:
    """The registration template ``register.template`` picks (see RegisterParams).
    Raises ConfigError when the file is missing or not a template JSON."""
    path = template_path(p, root)
    if path is not None and p.template == "dataset" and not path.exists():
        raise ConfigError(f"register.template is 'dataset' but {path} does not exist: run "
                          f"`fermaps template` (or `dvc repro template`) first, or set register.template: default")
    return load_template(path)


def template_digest(p: RegisterParams, root: str | os.PathLike = ".") -> str:
    """sha256 of the template file ``register.template`` picks (the shipped file for
    "default"), for the register stage's item cache: a rebuilt template must recompute
    the registrations even though the params did not change."""
    path = template_path(p, root)
    if path is None:
        from importlib import resources

        return hashlib.sha256(resources.files("preprocess").joinpath("data", TEMPLATE_FILE).read_bytes()).hexdigest()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"template {path}: cannot read it ({exc.strerror or exc})") from None
