"""Subject-independent splits of the five seed papers, and the split manifest.

Every function here works on subject ids (strings) and is deterministic: the same
subjects (in any order, duplicates allowed: one entry per item is fine) and the same
seed give the same folds on every machine, because the subjects are sorted first and
the only randomness is ``numpy.random.default_rng`` seeded from ``(seed, repeat)``.
No subject is ever in two folds of one split, so no face seen in training is tested.

Protocols (``protocol_folds(name, ...)``; REFERENCE.md "Protocols" and the seeds):

=============  ==========================================================================
bosphorus10    AMDFN IV-D: Bosphorus, 6 basic expressions, "ten-fold cross validation"
               (random subject folds; ``repeats=100`` gives FFNet-M's Bosphorus protocol).
bu3dfe10xR     FFNet-M 3.1: BU-3DFE, 6 classes, the two highest intensities (03, 04),
               "100 times of 10-fold cross-validation ... randomly divided into ten folds
               every time" (a new permutation per repeat; ``repeats`` default 100).
facescape200   AMDFN IV-A: FaceScape, 16 expressions, 200 random training subjects, the
               remaining (51) for testing: one fold.
ckplus10       STCAM 4.1: "we sampled the subjects in an ID ascending order with a step
               size of 10": subject ids sorted ascending, fold = position mod 10.
oulu10         STCAM 4.1: "the same 10-fold cross-validation protocol as CK+".
mmi10          STCAM 4.1: "a subject-independent 10-fold cross-validation"; the order
               is not given, so random subject folds (seeded).
hacn5          HACN 4.2: five-fold cross-validation (random subject folds); the paper's
               "validation set" is the held-out fold, i.e. ``test`` here.
=============  ==========================================================================

WS-LGAN's CK+ / Oulu-CASIA protocol ("ten groups without subject overlapping") is
``ckplus10`` / ``oulu10``.  The published CK+ fold sizes (33, 39, 40, 35, 30, 37, 29, 29,
33, 22 labelled sequences) follow from the rule over the 118 subjects that have a labelled
sequence (tests/train/test_splits.py holds their counts); subjects with no emotion file
must not take a place in the order, which :func:`split_manifest` ensures by dropping
unlabelled items before folding.

Readings this module commits to:

* Random k-fold: the sorted unique subjects are permuted by
  ``default_rng([seed, repeat]).permutation`` and cut into k contiguous parts with
  ``numpy.array_split`` (sizes differ by at most one, the larger ones first).  Repeat r
  does not depend on how many repeats are asked for, and ``kfold_by_subject(s, k,
  seed)`` is repeat 0 of ``repeated_kfold(s, k, R, seed)``.
* "Ascending ID order" is natural order: digit runs compare as numbers ("S5" < "S10"),
  which for the zero-padded ids of CK+ (S005) and Oulu-CASIA (P012) is plain string
  order.
* Validation (model selection) is carved from the TRAINING subjects of a fold only:
  ``round_half_up(fraction * n)`` subjects, at least 1 and at most n - 1.  The test fold
  is never looked at.
* Items without a label (store label -1: CK+ sequences without an emotion file,
  Bosphorus action-unit scans) and items of classes outside the protocol (neutral for the
  6-class protocols, FaceScape's 4 left-out expressions) are left out of the manifest;
  the manifest maps the store label onto the protocol's class index (``label_map``).

Why by hand: scikit-learn's GroupKFold is not a dependency (and not seeded the papers'
way); the ordered CK+ rule and the manifest are specific to these protocols.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import ConfigError, InputError, SchemaError
from data_schema.labels import BASIC6, CKPLUS, FACESCAPE16_CLASSES, label_map
from data_schema.store import INDEX, Store, atomic_write_bytes

__all__ = [
    "Fold", "Protocol", "PROTOCOLS", "ValidationSplit", "check_manifest_stores", "ckplus_folds", "fixed_split",
    "fold_items", "kfold_by_subject", "manifest_label_map", "protocol_classes", "protocol_folds", "read_manifest",
    "repeated_kfold", "split_manifest", "validation_split", "write_manifest",
]

MANIFEST_FORMAT = "fermaps-split-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Fold:
    """One train/test split of subjects.

    index : position of the fold within its repeat (0 .. k-1).
    train, test : subject ids, sorted (natural order), disjoint.
    repeat : which repetition of a repeated k-fold (0 otherwise).
    """

    index: int
    train: tuple[str, ...]
    test: tuple[str, ...]
    repeat: int = 0


@dataclass(frozen=True)
class ValidationSplit:
    """Training subjects of a fold divided into the ones trained on and the ones used for
    model selection; both sorted, disjoint, union = the fold's training subjects."""

    train: tuple[str, ...]
    val: tuple[str, ...]


def _natural_key(s: str) -> tuple:
    # digit runs as numbers; the raw string breaks ties ("S5" vs "S005")
    parts = tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t)
    return parts, s


def _unique_sorted(subjects: Iterable[str], what: str = "subjects") -> tuple[str, ...]:
    if isinstance(subjects, str):
        raise TypeError(f"{what} must be a sequence of subject ids, not one string {subjects!r}")
    out = set()
    for s in subjects:
        if not isinstance(s, str) or not s:
            raise ConfigError(f"{what}: subject ids must be non-empty strings, got {s!r}")
        out.add(s)
    if not out:
        raise ConfigError(f"{what}: no subjects")
    return tuple(sorted(out, key=_natural_key))


def _sort(subjects: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(subjects, key=_natural_key))


def _int(value, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < least:
        raise ConfigError(f"{name} must be >= {least}, got {value}")
    return int(value)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    seed = _int(seed, "seed", 0)
    return np.random.default_rng([seed, *stream])


def _folds_from_parts(parts: Sequence[Sequence[str]], repeat: int) -> tuple[Fold, ...]:
    every = [s for p in parts for s in p]
    folds = []
    for i, part in enumerate(parts):
        test = set(part)
        folds.append(Fold(i, _sort(s for s in every if s not in test), _sort(test), repeat))
    return tuple(folds)


def _random_folds(unique: tuple[str, ...], k: int, seed: int, repeat: int) -> tuple[Fold, ...]:
    if k > len(unique):
        raise ConfigError(f"cannot make {k} subject-independent folds of {len(unique)} subjects")
    order = _rng(seed, repeat).permutation(len(unique))
    parts = np.array_split(np.asarray(unique, dtype=object)[order], k)
    return _folds_from_parts([list(p) for p in parts], repeat)


def kfold_by_subject(subjects: Iterable[str], k: int, seed: int) -> tuple[Fold, ...]:
    """Random subject-independent k-fold.

    subjects : subject ids (str); duplicates are merged, order does not matter.
    k : int, 2 <= k <= number of distinct subjects.
    seed : int >= 0.

    Returns k :class:`Fold` (index 0 .. k-1, repeat 0); every subject is in exactly one
    ``test``; test sizes differ by at most one.
    """
    k = _int(k, "k", 2)
    return _random_folds(_unique_sorted(subjects), k, seed, 0)


def repeated_kfold(subjects: Iterable[str], k: int, repeats: int, seed: int) -> tuple[Fold, ...]:
    """``repeats`` independent random k-folds (FFNet-M: BU-3DFE / Bosphorus 100 x 10-fold).

    Returns ``repeats * k`` folds ordered by (repeat, index); each repeat is a full
    k-fold of its own permutation, drawn from ``(seed, repeat)`` (repeat 0 equals
    :func:`kfold_by_subject` with the same seed).
    """
    k = _int(k, "k", 2)
    repeats = _int(repeats, "repeats", 1)
    unique = _unique_sorted(subjects)
    return tuple(f for r in range(repeats) for f in _random_folds(unique, k, seed, r))


def ckplus_folds(subjects: Iterable[str], k: int = 10) -> tuple[Fold, ...]:
    """CK+ (and Oulu-CASIA) folds: subject ids in ascending (natural) order, the subject
    at position p goes to fold ``p mod k`` (STCAM: "ID ascending order with a step size
    of 10").  No randomness.

    subjects : subject ids (str), duplicates merged.  k : 2 <= k <= distinct subjects.
    Returns k :class:`Fold`.
    """
    k = _int(k, "k", 2)
    unique = _unique_sorted(subjects)
    if k > len(unique):
        raise ConfigError(f"cannot make {k} subject-independent folds of {len(unique)} subjects")
    return _folds_from_parts([unique[i::k] for i in range(k)], 0)


def fixed_split(subjects: Iterable[str], n_train: int, seed: int) -> Fold:
    """One random split: ``n_train`` training subjects, the rest for testing (AMDFN's
    FaceScape protocol: 200 / 51).

    n_train : 1 <= n_train < number of distinct subjects.
    Returns one :class:`Fold` (index 0).
    """
    unique = _unique_sorted(subjects)
    n_train = _int(n_train, "n_train", 1)
    if n_train >= len(unique):
        raise ConfigError(f"n_train={n_train} leaves no test subject of {len(unique)}")
    order = _rng(seed, 0).permutation(len(unique))
    train = [unique[i] for i in order[:n_train]]
    test = [unique[i] for i in order[n_train:]]
    return Fold(0, _sort(train), _sort(test))


def validation_split(train_subjects: Iterable[str], fraction: float, seed: int) -> ValidationSplit:
    """Hold out ``round_half_up(fraction * n)`` (at least 1, at most n - 1) of a fold's
    TRAINING subjects for model selection; fraction 0 holds out none.

    train_subjects : the fold's training subject ids (never pass test subjects).
    fraction : float in [0, 1).  seed : int >= 0.
    """
    unique = _unique_sorted(train_subjects, "train_subjects")
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
        raise ConfigError(f"fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0:
        return ValidationSplit(unique, ())
    n = len(unique)
    if n < 2:
        raise ConfigError(f"cannot hold out validation subjects from {n} training subject")
    n_val = min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1)
    order = _rng(seed, 0).permutation(n)
    val = {unique[i] for i in order[:n_val]}
    return ValidationSplit(_sort(s for s in unique if s not in val), _sort(val))


# ----------------------------------------------------------------------- protocols

@dataclass(frozen=True)
class Protocol:
    """A paper's evaluation protocol.

    name : registry key.
    dataset : store dataset key whose items it uses (None: the caller names it).
    scheme : ``"kfold"`` (random subject folds), ``"ordered"`` (CK+ rule) or ``"fixed"``.
    k : folds (1 for fixed).  repeats : default repetitions (kfold only).
    n_train : default training subjects (fixed only).
    classes : the protocol's class names, in label order (None: see
        :func:`protocol_classes`).
    sessions : keep only items of these sessions (BU-3DFE: intensities), None = all.
    source : where the protocol is stated.
    """

    name: str
    dataset: str | None
    scheme: str
    k: int
    repeats: int = 1
    n_train: int | None = None
    classes: tuple[str, ...] | None = None
    sessions: tuple[str, ...] | None = None
    source: str = ""


_CKPLUS7 = CKPLUS.classes[1:]  # the 327 labelled sequences carry codes 1..7, never neutral

PROTOCOLS: Mapping[str, Protocol] = {p.name: p for p in (
    Protocol("bosphorus10", "bosphorus", "kfold", 10, 1, None, BASIC6, None,
             "AMDFN IV-D (FFNet-M 3.1 with repeats=100)"),
    Protocol("bu3dfe10xR", "bu3dfe", "kfold", 10, 100, None, BASIC6, ("03", "04"), "FFNet-M 3.1"),
    Protocol("facescape200", "facescape", "fixed", 1, 1, 200, FACESCAPE16_CLASSES, None, "AMDFN IV-A"),
    Protocol("ckplus10", "ckplus", "ordered", 10, 1, None, _CKPLUS7, None, "STCAM 4.1, WS-LGAN IV-B"),
    Protocol("oulu10", "oulu", "ordered", 10, 1, None, BASIC6, None, "STCAM 4.1, WS-LGAN IV-B"),
    Protocol("mmi10", "mmi", "kfold", 10, 1, None, BASIC6, None, "STCAM 4.1"),
    Protocol("hacn5", None, "kfold", 5, 1, None, None, None, "HACN 4.2"),
)}


def _protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None


def protocol_classes(name: str, dataset: str | None = None) -> tuple[str, ...]:
    """Class names of a protocol in label order.  Protocols without fixed classes
    (hacn5) use the dataset's label map, CK+ without neutral (its emotion files hold
    codes 1..7 only)."""
    p = _protocol(name)
    if p.classes is not None:
        return p.classes
    ds = dataset or p.dataset
    if ds is None:
        raise ConfigError(f"protocol {name!r} needs dataset=... (e.g. 'ckplus', 'oulu', 'afew')")
    classes = _CKPLUS7 if ds == "ckplus" else label_map(ds).classes
    if not classes:
        raise ConfigError(f"dataset {ds!r} has no label map")
    return classes


def protocol_folds(name: str, subjects: Iterable[str], seed: int, *, k: int | None = None,
                   repeats: int | None = None, n_train: int | None = None) -> tuple[Fold, ...]:
    """The folds of a named protocol (see the module docstring) over ``subjects``.

    name : one of :data:`PROTOCOLS`.  seed : int >= 0 (unused by the ordered protocols).
    k, repeats, n_train : override the protocol's defaults (e.g. fewer subjects than the
        paper in a test, or ``repeats=100`` for FFNet-M's Bosphorus protocol).

    Returns a flat tuple of :class:`Fold` ordered by (repeat, index).
    """
    p = _protocol(name)
    if p.scheme == "fixed":
        if k not in (None, 1) or repeats not in (None, 1):
            raise ConfigError(f"protocol {name!r} is one fixed split; k and repeats do not apply")
        return (fixed_split(subjects, p.n_train if n_train is None else n_train, seed),)
    k = p.k if k is None else k
    if n_train is not None:
        raise ConfigError(f"protocol {name!r} is a k-fold; n_train does not apply")
    if p.scheme == "ordered":
        if repeats not in (None, 1):
            raise ConfigError(f"protocol {name!r} is deterministic; repeats do not apply")
        return ckplus_folds(subjects, k)
    return repeated_kfold(subjects, k, p.repeats if repeats is None else repeats, seed)


# ------------------------------------------------------------------------ manifest

def _derived_seed(seed: int, *stream: int) -> int:
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def _index_sha256(root: Path) -> str:
    return hashlib.sha256((root / INDEX).read_bytes()).hexdigest()


def split_manifest(store_roots: str | os.PathLike | Sequence[str | os.PathLike], protocol: str,
                   seed: int, *, dataset: str | None = None, val_fraction: float = 0.1,
                   subjects: Iterable[str] | None = None, k: int | None = None,
                   repeats: int | None = None, n_train: int | None = None) -> dict:
    """The folds of ``protocol`` over the items of one or more stores, as JSON-able data.

    store_roots : a store directory or several (e.g. maps_clean and masks for FFNet-M);
        an item is used only when every store has it (same key, same subject and label).
        Each store is opened with full validation (schema, sha256 of every shard).
    protocol : a name of :data:`PROTOCOLS`.  seed : int >= 0.
    dataset : the store dataset to use, required by protocols without one (hacn5).
    val_fraction : share of each fold's training subjects held out for validation.
    subjects : optional allow-list (e.g. FFNet-M's fixed 60 of 63 Bosphorus subjects).
    k, repeats, n_train : as in :func:`protocol_folds`.

    Returns ``{"format", "version", "protocol", "seed", "dataset", "params", "classes",
    "label_map" (store label as str -> class index), "stores" ([{schema,
    index_sha256}]), "subjects", "excluded" (reason -> item count), "folds": [{"repeat",
    "index", "train", "val", "test" (item keys, sorted), "train_subjects",
    "val_subjects", "test_subjects"}]}``.  Raises SchemaError when the stores disagree
    on an item's subject or label, ConfigError (a ValueError) when no item is left.
    """
    p = _protocol(protocol)
    ds = p.dataset if dataset is None else dataset
    if p.dataset is not None and ds != p.dataset:
        raise ConfigError(f"protocol {protocol!r} is defined on {p.dataset!r}, not {ds!r}")
    classes = protocol_classes(protocol, ds)
    roots = [store_roots] if isinstance(store_roots, (str, os.PathLike)) else list(store_roots)
    if not roots:
        raise ConfigError("no store given")

    lm = label_map(ds)
    stores = [Store(r) for r in roots]
    first = {m.key: m for m in stores[0].metas()}
    keys = set(first)
    for st in stores[1:]:
        other = {m.key: m for m in st.metas()}
        for key in keys & set(other):
            a, b = first[key], other[key]
            if (a.subject, a.label, a.dataset) != (b.subject, b.label, b.dataset):
                raise SchemaError(f"{st.root}: item {key!r} has subject/label/dataset "
                                  f"{(b.subject, b.label, b.dataset)}, {stores[0].root} says "
                                  f"{(a.subject, a.label, a.dataset)}")
        keys &= set(other)
    allow = None if subjects is None else set(_unique_sorted(subjects, "subjects"))

    excluded: dict[str, int] = {}
    subject_of: dict[str, str] = {}
    label_of: dict[str, int] = {}
    for key in sorted(first):
        m = first[key]
        if key not in keys:
            reason = "missing from a store"
        elif m.dataset != ds:
            reason = "other dataset"
        elif m.label < 0:
            reason = "unlabelled"
        elif m.label >= lm.n_classes:
            raise SchemaError(f"{stores[0].root}: item {key!r} has label {m.label}, outside the "
                              f"{ds} label map (0..{lm.n_classes - 1}); the store is damaged")
        elif lm.class_name(m.label) not in classes:
            reason = "class not in the protocol"
        elif p.sessions is not None and m.session not in p.sessions:
            reason = "session not in the protocol"
        elif allow is not None and m.subject not in allow:
            reason = "subject not selected"
        else:
            subject_of[key] = m.subject
            label_of[str(m.label)] = classes.index(lm.class_name(m.label))
            continue
        excluded[reason] = excluded.get(reason, 0) + 1
    if not subject_of:
        raise ConfigError(f"protocol {protocol!r}: no usable item of dataset {ds!r} in "
                          f"{', '.join(map(str, roots))} (excluded: {excluded})")

    subj = _unique_sorted(subject_of.values())
    by_subject: dict[str, list[str]] = {s: [] for s in subj}
    for key, s in subject_of.items():
        by_subject[s].append(key)
    try:
        folds = protocol_folds(protocol, subj, seed, k=k, repeats=repeats, n_train=n_train)
    except ValueError as exc:  # e.g. fewer subjects than folds: say which stores
        raise ConfigError(f"{', '.join(map(str, roots))}: protocol {protocol!r}: {exc}") from None

    def items(ss: Sequence[str]) -> list[str]:
        return sorted(key for s in ss for key in by_subject[s])

    if p.scheme == "fixed":
        eff = {"n_train": p.n_train if n_train is None else n_train}
    else:
        eff = {"k": p.k if k is None else k,
               "repeats": 1 if p.scheme == "ordered" else (p.repeats if repeats is None else repeats)}
    out_folds = []
    for f in folds:
        v = validation_split(f.train, val_fraction, _derived_seed(seed, f.repeat, f.index))
        out_folds.append({
            "repeat": f.repeat, "index": f.index,
            "train": items(v.train), "val": items(v.val), "test": items(f.test),
            "train_subjects": list(v.train), "val_subjects": list(v.val),
            "test_subjects": list(f.test),
        })
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "protocol": protocol, "seed": int(seed), "dataset": ds,
        "params": {**eff, "val_fraction": val_fraction,
                   "subjects": None if allow is None else sorted(allow, key=_natural_key)},
        "classes": list(classes),
        "label_map": dict(sorted(label_of.items(), key=lambda kv: int(kv[0]))),
        "stores": [{"schema": st.schema.name, "index_sha256": _index_sha256(st.root)} for st in stores],
        "subjects": list(subj),
        "excluded": dict(sorted(excluded.items())),
        "folds": out_folds,
    }


def write_manifest(path: str | os.PathLike, manifest: Mapping) -> None:
    """Write a manifest as sorted, indented JSON, atomically (temporary name, fsync,
    rename); same manifest -> same bytes."""
    _check_manifest(Path(path), manifest)
    atomic_write_bytes(Path(path), (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a manifest written by :func:`write_manifest`.

    Raises InputError naming the file when it is missing, not JSON, of another format or
    version, lacks a field, or a fold shares a subject or an item between its train, val
    and test parts.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such manifest file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a JSON manifest: {exc}") from None
    _check_manifest(path, doc)
    return doc


_FOLD_FIELDS = ("repeat", "index", "train", "val", "test", "train_subjects", "val_subjects", "test_subjects")


def _check_manifest(path: Path, doc) -> None:
    if not isinstance(doc, Mapping):
        raise InputError(path, f"manifest must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != MANIFEST_FORMAT or doc.get("version") != MANIFEST_VERSION:
        raise InputError(path, f"not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} "
                               f"(format {doc.get('format')!r}, version {doc.get('version')!r})")
    for field in ("protocol", "seed", "dataset", "classes", "label_map", "subjects", "folds"):
        if field not in doc:
            raise InputError(path, f"missing field {field!r}")
    for f in doc["folds"]:
        missing = [x for x in _FOLD_FIELDS if x not in f]
        if missing:
            raise InputError(path, f"fold missing fields {missing}")
        where = f"fold {f['index']} of repeat {f['repeat']}"
        for kind in ("", "_subjects"):
            parts = {p: set(f[p + kind]) for p in ("train", "val", "test")}
            for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
                both = parts[a] & parts[b]
                if both:
                    noun = "subjects" if kind else "items"
                    raise InputError(path, f"{where}: {a} and {b} share {noun} {sorted(both)[:5]}")


def check_manifest_stores(path: str | os.PathLike, manifest: Mapping,
                          store_roots: Sequence[str | os.PathLike]) -> None:
    """Check that ``store_roots`` (in the order the manifest was made from) are the stores
    the manifest at ``path`` was made from: same ``index.json`` bytes (sha256).  Raises
    InputError naming the manifest when a store changed since (its folds may list items
    the store no longer holds, or miss new ones)."""
    made_from = manifest.get("stores", [])
    if len(made_from) != len(store_roots):
        raise InputError(path, f"made from {len(made_from)} store(s), given {len(store_roots)}")
    for root, rec in zip(store_roots, made_from):
        root = Path(root)
        now = _index_sha256(root) if (root / INDEX).is_file() else "missing"
        if now != rec.get("index_sha256"):
            raise InputError(path, f"made from another version of {root / INDEX} ("
                                   f"{'it is missing' if now == 'missing' else 'sha256 differs'}); "
                                   f"rerun `fermaps splits`")


def fold_items(manifest: Mapping, index: int, repeat: int = 0) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` item keys of one fold of a manifest (KeyError when
    the manifest has no such fold)."""
    for f in manifest["folds"]:
        if f["index"] == index and f["repeat"] == repeat:
            return {p: list(f[p]) for p in ("train", "val", "test")}
    raise KeyError(f"manifest has no fold {index} of repeat {repeat}")


def manifest_label_map(manifest: Mapping) -> dict[int, int]:
    """Store label -> protocol class index, for the datasets' ``label_map``."""
    return {int(k): int(v) for k, v in manifest["label_map"].items()}
