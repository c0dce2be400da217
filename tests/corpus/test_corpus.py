"""The bad-input corpus through every reader and stage (tests/corpus/generate.py).

One parametrised test per case asserts its specific outcome: the error class, a
message naming the file or item and the reason, and (for file reads) that reading
allocated little; or the documented fallback, checked concretely.  Then the whole
corpus goes through ``ingest`` next to a good sample: ``failures.jsonl`` must list
exactly the bad files with their reasons, the stores must hold every good item, and
nothing stored may be NaN/inf; the 3-D file cases that read fine go on through
``fermaps maps`` (register -> crop -> render -> clean) with the same bookkeeping.  The
training stages' cases (tests/corpus/train_inputs.py) run through ``splits``, the
training datasets, ``train`` and ``evaluate``.
"""
from __future__ import annotations

import os
import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from data_schema.errors import InputError
from data_schema.params import ChainParams, IngestParams, Params
from data_schema.store import Store, read_failures
from tests.corpus.generate import (
    CASE_NAMES,
    CHAIN_3D,
    KNOWN_BUGS,
    READ_TARGETS,
    TARGETS,
    TRAIN_TARGETS,
    build_corpus,
    run_case,
)

# Reading any corpus file may allocate (Python/numpy, traced) at most this much: a
# header that promises gigabytes must fail before it allocates them.
MAX_READ_PEAK_BYTES = 64 * 1024 * 1024
WHOLE_READ = ("read_scan", "read_sequence", "ingest")


@pytest.fixture(scope="session")
def corpus(small_sample, tmp_path_factory):
    """(raw folder = the small sample + every file case, {name: Case})."""
    raw = tmp_path_factory.mktemp("corpus") / "raw"
    shutil.copytree(small_sample, raw, symlinks=True)
    return raw, {c.name: c for c in build_corpus(raw)}


def _case_params():
    for name in CASE_NAMES:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])] if name in KNOWN_BUGS else []
        yield pytest.param(name, marks=marks, id=name)


def _rel(raw: Path, case) -> str:
    return os.path.relpath(case.input, raw)


def test_the_corpus_covers_every_reader_and_stage(corpus):
    raw, cases = corpus
    assert list(cases) == list(CASE_NAMES) and len(cases) >= 40
    assert {c.target for c in cases.values()} == set(TARGETS)
    assert set(KNOWN_BUGS) <= set(cases)
    suffixes = {Path(c.input).name.split(".", 1)[-1] for c in cases.values()
                if c.kind == "file" and Path(c.input).suffix}
    assert {"bnt", "wrl", "obj", "abs", "abs.gz", "ply", "mp4", "avi"} <= suffixes
    assert any(c.kind == "file" and Path(c.input).is_dir() and "cohn-kanade-images" in str(c.input)
               for c in cases.values())
    assert {c.target for c in cases.values() if c.kind == "train"} == set(TRAIN_TARGETS)
    for c in cases.values():
        assert c.kind in ("file", "record", "train") and c.expect.names
        assert (c.expect.error is None) == (c.expect.check is not None), c.name
        assert c.expect.error is None or c.expect.match, c.name
        if c.kind == "file":
            assert Path(c.input).is_relative_to(raw) and os.path.lexists(c.input), c.name
        elif c.kind == "train":
            assert Path(c.input).is_relative_to(raw) and Path(c.input).is_dir(), c.name
            assert (c.target in TRAIN_TARGETS) and c.params.train.models, c.name
        else:
            assert c.item == f"corpus/{c.name}"


@pytest.mark.parametrize("name", list(_case_params()))
def test_case(corpus, name):
    case = corpus[1][name]
    e = case.expect
    if e.error is None:
        e.check(run_case(case))
        return
    traced = case.kind == "file" and case.target in READ_TARGETS
    if traced:
        tracemalloc.start()
    try:
        with pytest.raises(e.error, match=e.match) as info:
            run_case(case)
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
    assert e.names in str(info.value), f"the message names {e.names!r}: {info.value}"
    if isinstance(info.value, InputError):
        assert e.names in info.value.path, info.value.path
    assert peak < MAX_READ_PEAK_BYTES, f"reading allocated {peak / 2**20:.0f} MiB"


def test_a_checkpoint_is_never_unpickled_with_code(corpus):
    """The planted pickle is refused (test_case) and the code in it never ran."""
    from tests.corpus.train_inputs import PLANTED_MARK

    case = corpus[1]["train_checkpoint_pickle_with_code"]
    with pytest.raises(InputError):
        run_case(case)
    assert not (Path(case.input) / "models" / "fold0" / PLANTED_MARK).exists()


def _store_items_finite(root: Path, schema: str) -> list:
    store = Store(root, schema)
    metas = []
    for meta, arrays in store.iter_items():
        for key, a in arrays.items():
            a = np.asarray(a)
            if a.dtype.kind in "fc":
                assert np.isfinite(a).all(), f"{schema} {meta.key} {key} holds NaN/inf"
        metas.append(meta)
    return metas


def _assert_failures(fails: dict, expected: dict, raw: Path) -> None:
    """``fails`` (item -> failure record) are exactly ``expected`` (item -> Case), each
    with its case's error class, reason and file name."""
    assert set(fails) == set(expected), (sorted(set(fails) ^ set(expected)))
    for item, c in expected.items():
        f = fails[item]
        assert f["error"] == c.expect.error.__name__, f
        assert c.expect.names in f["message"], f
        if not c.known_bug:                 # a known bug's message is the bug
            assert re.search(c.expect.match, f["message"]), (c.expect.match, f)


def test_ingest_lists_exactly_the_bad_files_and_keeps_every_good_item(corpus, tmp_path):
    from pipeline.stages.ingest import run_ingest
    from preprocess.io import list_items

    raw, cases = corpus
    files = [c for c in cases.values() if c.kind == "file"]
    items = {os.path.relpath(it.path, raw) for it in list_items(raw)}
    for c in files:
        assert (_rel(raw, c) in items) == c.listed, c.name
    bad = {_rel(raw, c): c for c in files
           if c.listed and c.target in WHOLE_READ and c.expect.error is not None}

    res = run_ingest(raw, tmp_path / "raw_mesh", tmp_path / "raw_frames",
                     IngestParams(workers=1, max_failed_fraction=1.0))
    fails = {f["item"]: f for store in ("raw_mesh", "raw_frames")
             for f in read_failures(tmp_path / store)}
    _assert_failures(fails, bad, raw)
    assert res.n_items == len(items) and res.n_failed == len(bad)

    # nothing lost: every good item is in a store, and nothing stored is NaN/inf
    stored = [m.source for m in _store_items_finite(tmp_path / "raw_mesh", "raw_mesh")]
    stored += [m.source for m in _store_items_finite(tmp_path / "raw_frames", "raw_frames")]
    assert sorted(stored) == sorted(items - set(bad))


def test_readable_3d_cases_through_the_whole_chain(corpus, tmp_path):
    """Every 3-D file case that reads fine, plus two good scans, through `fermaps maps`:
    the cases that must fail at a stage are the failures (with their reasons), the
    others are in both map stores, finite."""
    import dataclasses

    from pipeline.stages.scan_chain import run_maps

    raw, cases = corpus
    chain = [c for c in cases.values() if c.kind == "file" and c.target in CHAIN_3D]
    good = sorted((raw / "bu3dfe").rglob("F0001_*.wrl"))[:2]
    from tests.conftest import SAMPLE_PARAMS
    params = dataclasses.replace(SAMPLE_PARAMS, run=ChainParams(workers=1, max_failed_fraction=1.0))
    # (masks is not part of `fermaps maps`: a case failing there passes the chain)
    key = {c.name: str(Path(c.input).resolve()) for c in chain}
    fail_here = {key[c.name]: c for c in chain
                 if c.expect.error is not None and c.target != "masks" and not c.known_bug}
    unsure = {key[c.name] for c in chain if c.known_bug}    # fails now, must not once fixed
    run_maps([str(c.input) for c in chain] + [str(p) for p in good], tmp_path / "out", params)
    fails = {f["item"]: f for f in read_failures(tmp_path / "out" / "maps")}
    _assert_failures({k: f for k, f in fails.items() if k not in unsure}, fail_here, raw)
    n_ok = len(chain) + len(good) - len(fails)
    assert n_ok >= len(chain) + len(good) - len(fail_here) - len(unsure)
    for name in ("maps", "maps_clean"):
        metas = _store_items_finite(tmp_path / "out" / name, name)
        assert len(metas) == n_ok


def test_small_text_read_allocates_little(corpus):
    from preprocess.io import read_scan

    raw, _ = corpus
    wrl = min((raw / "bu3dfe").rglob("F0001_*.wrl"))   # ~100 kB of text
    tracemalloc.start()
    try:
        read_scan(wrl)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB to read {wrl.stat().st_size} bytes"
