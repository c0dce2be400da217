"""Bad inputs of the training stages (``splits``, ``train``, ``evaluate`` and the datasets
they read), registered into the corpus of :mod:`tests.corpus.generate`.

Each case is a folder ``<root>/train/<case>/`` laid out as the stages expect it:
``stores/<store>/`` (written with the project's writer from the corpus's good chain
records, copied under a few subjects: :mod:`tests.train_stores`), and where the case
needs them ``splits/<model>.json`` (made by ``run_splits`` on the good stores),
``models/fold0/last.pt`` or ``metrics/<model>.json``; then one of them is damaged.
:func:`run_train_case` pushes the folder through the case's target:

* ``splits``: ``run_splits`` -> the manifest written;
* ``train_data``: the datasets ``run_train`` builds for the first listed fold, every
  sample of train, val and test read -> the list of samples;
* ``train``: ``run_train`` (every case here fails before the first training step);
* ``evaluate``: ``run_evaluate`` -> the summary.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch

from data_schema.errors import ConfigError, InputError, SchemaError
from data_schema.params import Params, TrainStageParams
from data_schema.schemas import get_schema
from data_schema.store import ItemMeta
from tests.corpus.generate import Case, Expected, _case, _fallback
from tests.train_stores import copies, write_store

#: store label(s) of each subject: Bosphorus ANGER / HAPPY, CK+ codes 1 / 5
MAPS_LABELS = {f"bs90{i}": (0, 3) for i in range(3)}
SEQ_LABELS = {f"S9{i}1": (1, 5) for i in range(3)}
#: the maps_clean schema version this fermaps writes (the messages name it)
_V = get_schema("maps_clean").version
_META = ItemMeta(key="", dataset="", subject="", session="0", expression="corpus", label=0,
                 source="corpus", source_sha256="", format="corpus")


def _params(model: str, **changes) -> Params:
    """Stage parameters: ``model`` alone, 3 folds (the stores have 3 subjects), fold 0."""
    train = TrainStageParams(**{"models": (model,), "k": 3, "folds": (0,), **changes})
    return dataclasses.replace(Params(), train=train)


def _folder(c, name: str) -> Path:
    folder = c.root / "train" / name
    (folder / "stores").mkdir(parents=True)
    return folder


def _case_of(folder: Path, expect: Expected, model: str = "amdfn", **changes) -> Case:
    return Case("", folder, "train", "", expect, params=_params(model, **changes))


def _maps_store(folder: Path, c, labels=MAPS_LABELS, arrays: dict | None = None, name="maps_clean") -> Path:
    return write_store(folder / "stores" / name, "maps_clean",
                       copies(_META, c.maps_clean if arrays is None else arrays, labels, "bosphorus"))


def _seq_store(folder: Path, c, labels=SEQ_LABELS, arrays: dict | None = None, name="aligned_frames") -> Path:
    return write_store(folder / "stores" / name, "aligned_frames",
                       copies(_META, c.aligned if arrays is None else arrays, labels, "ckplus"))


def _splits(folder: Path, model: str = "amdfn") -> Path:
    from pipeline.stages.train_stage import run_splits
    assert run_splits(str(folder / "stores"), str(folder / "splits"), _params(model).train) == 0
    return folder / "splits" / f"{model}.json"


def _first_shard(store: Path) -> Path:
    return min(store.glob("*.h5"))


def _reindex(store: Path) -> None:
    """Make the index's sha256 agree with the (damaged) shards again, as a foreign
    writer's index would."""
    idx = json.loads((store / "index.json").read_text())
    for sh in idx["shards"]:
        sh["sha256"] = hashlib.sha256((store / sh["file"]).read_bytes()).hexdigest()
    (store / "index.json").write_text(json.dumps(idx))


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _frames(rec: dict, n: int) -> dict:
    """An aligned_frames record cut to its first ``n`` frames."""
    ragged = {d.name for d in get_schema("aligned_frames").datasets if d.ragged}
    return {k: (v[:n] if k in ragged else v) for k, v in rec.items()}


# ===================================================================== stores -> splits

@_case("splits")
def train_store_missing(c):
    return _case_of(_folder(c, "train_store_missing"),
                    Expected(SchemaError, r"not a store \(no such directory\)", "maps_clean"))


@_case("splits")
def train_store_empty_folder(c):
    folder = _folder(c, "train_store_empty_folder")
    (folder / "stores" / "maps_clean").mkdir()
    return _case_of(folder, Expected(SchemaError, r"not a store \(no index.json\)", "maps_clean"))


@_case("splits")
def train_store_index_missing(c):
    folder = _folder(c, "train_store_index_missing")
    (_maps_store(folder, c) / "index.json").unlink()
    return _case_of(folder, Expected(SchemaError, r"not a store \(no index.json\)", "maps_clean"))


@_case("splits")
def train_store_index_garbage(c):
    folder = _folder(c, "train_store_index_garbage")
    (_maps_store(folder, c) / "index.json").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)))
    return _case_of(folder, Expected(SchemaError, r"unreadable index", "maps_clean/index.json"))


@_case("splits")
def train_store_index_not_an_object(c):
    folder = _folder(c, "train_store_index_not_an_object")
    (_maps_store(folder, c) / "index.json").write_text("[1, 2, 3]\n")
    return _case_of(folder, Expected(SchemaError, r"not a store index", "maps_clean/index.json"))


@_case("splits")
def train_store_schema_version_from_the_future(c):
    folder = _folder(c, "train_store_schema_version_from_the_future")
    _edit_json(_maps_store(folder, c) / "index.json", lambda d: d.update(schema_version=99))
    return _case_of(folder, Expected(SchemaError, rf"version 99, this fermaps reads version {_V}; regenerate",
                                   "maps_clean"))


@_case("splits")
def train_store_of_another_schema(c):
    folder = _folder(c, "train_store_of_another_schema")
    _seq_store(folder, c, name="maps_clean")
    return _case_of(folder, Expected(SchemaError, r"store has schema 'aligned_frames', expected 'maps_clean'",
                                   "maps_clean"))


@_case("splits")
def train_shard_truncated(c):
    folder = _folder(c, "train_shard_truncated")
    shard = _first_shard(_maps_store(folder, c))
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    return _case_of(folder, Expected(SchemaError, r"shard content differs from the index \(sha256\)", shard.name))


@_case("splits")
def train_shard_garbage_listed_by_a_foreign_index(c):
    folder = _folder(c, "train_shard_garbage_listed_by_a_foreign_index")
    store = _maps_store(folder, c)
    shard = _first_shard(store)
    shard.write_bytes(bytes(range(256)) * 64)
    _reindex(store)
    return _case_of(folder, Expected(SchemaError, r"not a readable HDF5 shard", shard.name))


@_case("splits")
def train_shard_of_another_schema(c):
    folder = _folder(c, "train_shard_of_another_schema")
    store = _maps_store(folder, c)
    shard = _first_shard(store)
    with h5py.File(shard, "r+") as h5:
        h5.attrs["schema"] = "masks"
    _reindex(store)
    return _case_of(folder, Expected(SchemaError, rf"shard schema masks v{_V} differs from the index "
                                                  rf"\(maps_clean v{_V}\)", shard.name))


@_case("splits")
def train_store_items_without_labels(c):
    folder = _folder(c, "train_store_items_without_labels")
    _seq_store(folder, c, labels={s: (-1,) for s in SEQ_LABELS})
    return _case_of(folder, Expected(ConfigError, r"no usable item of dataset 'ckplus' .*'unlabelled': 3",
                                   "aligned_frames"), model="stcam")


@_case("splits")
def train_store_label_outside_the_label_map(c):
    folder = _folder(c, "train_store_label_outside_the_label_map")
    _maps_store(folder, c, labels={**MAPS_LABELS, "bs902": (0, 42)})
    return _case_of(folder, Expected(SchemaError, r"'bosphorus/bs902/42' has label 42, outside the bosphorus "
                                                r"label map \(0\.\.6\)", "maps_clean"))


@_case("splits")
def train_fewer_subjects_than_folds(c):
    folder = _folder(c, "train_fewer_subjects_than_folds")
    _maps_store(folder, c)
    return _case_of(folder, Expected(ConfigError, r"cannot make 4 subject-independent folds of 3 subjects",
                                   "maps_clean"), k=4)


# ===================================================================== samples read back

@_case("train_data")
def train_sample_nan_in_a_foreign_store(c):
    folder = _folder(c, "train_sample_nan_in_a_foreign_store")
    store = _maps_store(folder, c)
    shard = _first_shard(store)
    with h5py.File(shard, "r+") as h5:   # what no fermaps writer does: NaN on the face
        maps = h5["maps"][0]
        maps[3, 56, 56] = np.nan
        h5["maps"][0] = maps
    _reindex(store)
    _splits(folder)
    return _case_of(folder, Expected(SchemaError, r"maps of 'bosphorus/bs900/0' holds NaN or inf", shard.name))


@_case("train_data")
def train_shard_truncated_after_the_splits(c):
    folder = _folder(c, "train_shard_truncated_after_the_splits")
    shard = _first_shard(_maps_store(folder, c))
    _splits(folder)
    shard.write_bytes(shard.read_bytes()[:4096])
    return _case_of(folder, Expected(SchemaError, r"not a readable HDF5 shard \(.*truncated", shard.name))


@_case("train_data")
def train_label_outside_the_manifest_label_map(c):
    folder = _folder(c, "train_label_outside_the_manifest_label_map")
    _maps_store(folder, c)
    _edit_json(_splits(folder), lambda d: d["label_map"].pop("3"))
    return _case_of(folder, Expected(InputError, r"store label 3 is not in the label map \[0\]", "bosphorus/bs90"))


@_case("train_data")
def train_sequence_without_frames(c):
    folder = _folder(c, "train_sequence_without_frames")
    _seq_store(folder, c, arrays=_frames(c.aligned, 0))
    _splits(folder, "stcam")
    return _case_of(folder, Expected(InputError, r"sequence has no aligned frame", "ckplus/S9"), model="stcam")


def _one_frame_check(c, model: str, time_axis: int):
    frame = c.aligned["frames"][0]

    def check(samples):
        assert len(samples) == 2 * len(SEQ_LABELS)
        for s in samples:
            x = s["x"]
            frames = x.unbind(time_axis)
            assert len(frames) == (7 if model == "stcam" else 5)
            for f in frames[1:]:
                assert torch.equal(f, frames[0])           # the one frame, repeated
            # the stored frame resized (area / linear): its mean brightness is kept
            assert abs(float(frames[0].mean()) - frame.mean() / 255.0) < 0.02
    return check


@_case("train_data")
def train_stcam_one_frame_sequences(c):
    folder = _folder(c, "train_stcam_one_frame_sequences")
    _seq_store(folder, c, arrays=_frames(c.aligned, 1))
    _splits(folder, "stcam")
    return _case_of(folder, _fallback(
        "STCAM's 7 frames of a one-frame sequence are that frame 7 times (clip (3, 7, S, S))",
        _one_frame_check(c, "stcam", 1)), model="stcam")


@_case("train_data")
def train_hacn_one_frame_sequences(c):
    folder = _folder(c, "train_hacn_one_frame_sequences")
    _seq_store(folder, c, arrays=_frames(c.aligned, 1))
    _splits(folder, "hacn")
    return _case_of(folder, _fallback(
        "HACN's 5 segment frames of a one-frame sequence are that frame 5 times ((5, 3, S, S))",
        _one_frame_check(c, "hacn", 0)), model="hacn")


# ===================================================================== train

def _trained_setup(c, name: str) -> tuple[Path, Path]:
    folder = _folder(c, name)
    _maps_store(folder, c)
    return folder, _splits(folder)


@_case("train")
def train_manifest_not_json(c):
    folder, man = _trained_setup(c, "train_manifest_not_json")
    man.write_bytes(man.read_bytes()[:100])
    return _case_of(folder, Expected(InputError, r"not a JSON manifest", "amdfn.json"))


@_case("train")
def train_manifest_of_an_older_store(c):
    folder, _ = _trained_setup(c, "train_manifest_of_an_older_store")
    shutil.rmtree(folder / "stores" / "maps_clean")
    _maps_store(folder, c, labels={**MAPS_LABELS, "bs903": (0, 3)})
    return _case_of(folder, Expected(InputError, r"made from another version of .*maps_clean/index.json "
                                               r"\(sha256 differs\); rerun `fermaps splits`", "amdfn.json"))


@_case("train")
def train_manifest_lists_items_not_in_the_store(c):
    folder, man = _trained_setup(c, "train_manifest_lists_items_not_in_the_store")
    _edit_json(man, lambda d: d["folds"][0]["test"].append("bosphorus/bs999/0"))
    return _case_of(folder, Expected(InputError, r"1 item\(s\) not in the store, e.g. \['bosphorus/bs999/0'\]",
                                   "amdfn.json"))


@_case("train")
def train_fold_out_of_range(c):
    folder, _ = _trained_setup(c, "train_fold_out_of_range")
    return _case_of(folder, Expected(InputError, r"no fold 5 \(folds: \[0, 1, 2\]\)", "amdfn.json"), folds=(5,))


@_case("train")
def train_fold_with_an_empty_test_part(c):
    folder, man = _trained_setup(c, "train_fold_with_an_empty_test_part")
    _edit_json(man, lambda d: d["folds"][0].update(test=[], test_subjects=[]))
    return _case_of(folder, Expected(InputError, r"fold 0 has no test item", "amdfn.json"))


@_case("train")
def train_fold_smaller_than_one_batch(c):
    folder = _folder(c, "train_fold_smaller_than_one_batch")
    _seq_store(folder, c)
    _splits(folder, "ws_lgan")      # 3 subjects: 1 trains (2 items), 1 validates, 1 tests
    return _case_of(folder, Expected(InputError, r"fold 0 has 2 training items, fewer than one batch of 4 "
                                                 r"\(ws_lgan drops incomplete batches\)", "ws_lgan.json"),
                    model="ws_lgan")


def _checkpoint(folder: Path, obj) -> Path:
    path = folder / "models" / "fold0" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save(obj, path)
    return path


@_case("train")
def train_checkpoint_truncated(c):
    folder, _ = _trained_setup(c, "train_checkpoint_truncated")
    last = _checkpoint(folder, {"format": "fermaps-train-checkpoint", "version": 1,
                                "model": {"w": torch.arange(4096.0)}})
    last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])
    return _case_of(folder, Expected(InputError, r"not a readable tensors-only checkpoint .*delete it to "
                                               r"start afresh", "last.pt"))


#: File that ``train_checkpoint_pickle_with_code``'s checkpoint creates if unpickled.
PLANTED_MARK = "planted-code-ran"


class PlantedCode:
    """Unpickling this calls ``os.mkdir(mark)``: code run by merely loading a file."""

    def __init__(self, mark: Path):
        self.mark = str(mark)

    def __reduce__(self):
        return (os.mkdir, (self.mark,))


@_case("train")
def train_checkpoint_pickle_with_code(c):
    folder, _ = _trained_setup(c, "train_checkpoint_pickle_with_code")
    last = folder / "models" / "fold0" / "last.pt"
    _checkpoint(folder, {"format": "fermaps-train-checkpoint", "version": 1,
                         "config": PlantedCode(last.with_name(PLANTED_MARK))})
    assert b"mkdir" in last.read_bytes()                 # the planted call is in the file
    return _case_of(folder, Expected(InputError, r"not a readable tensors-only checkpoint \(UnpicklingError",
                                   "last.pt"))


@_case("train")
def train_checkpoint_config_with_unknown_keys(c):
    from pipeline.stages.train_stage import config_for
    folder, _ = _trained_setup(c, "train_checkpoint_config_with_unknown_keys")
    resolved = config_for("amdfn", _params("amdfn").train).replace(device="cpu", amp=False).to_dict()
    _checkpoint(folder, {"format": "fermaps-train-checkpoint", "version": 1,
                         "config": {**resolved, "warmup_epochs": 5}})
    return _case_of(folder, Expected(ConfigError, r"cannot resume, the config changed \(warmup_epochs: 5 -> None\)",
                                   "last.pt"))


# ===================================================================== evaluate

@_case("evaluate")
def train_metrics_missing(c):
    return _case_of(_folder(c, "train_metrics_missing"),
                    Expected(InputError, r"no metrics of amdfn; run `fermaps train amdfn` first", "amdfn.json"))


@_case("evaluate")
def train_metrics_garbage(c):
    folder = _folder(c, "train_metrics_garbage")
    (folder / "metrics").mkdir()
    (folder / "metrics" / "amdfn.json").write_text('{"fold0": {"accuracy": 0.5,')
    return _case_of(folder, Expected(InputError, r"unreadable metrics", "amdfn.json"))


# ----------------------------------------------------------------------- run

def run_train_case(case: Case):
    """Push a training case's folder through its target (see the module docstring)."""
    from pipeline.stages.train_stage import (
        config_for,
        fold_datasets,
        run_evaluate,
        run_splits,
        run_train,
    )
    from train.splits import fold_items, manifest_label_map, read_manifest

    folder, p = Path(case.input), case.params.train
    model = p.models[0]
    stores, splits = folder / "stores", folder / "splits"
    if case.target == "splits":
        run_splits(str(stores), str(splits), p)
        return read_manifest(splits / f"{model}.json")
    if case.target == "train_data":
        man = read_manifest(splits / f"{model}.json")
        data = fold_datasets(model, stores, fold_items(man, p.folds[0]), manifest_label_map(man),
                             config_for(model, p))
        return [ds[i] for ds in data for i in range(len(ds))]
    if case.target == "train":
        return run_train(model, str(stores), str(splits), str(folder / "models"),
                         str(folder / "metrics" / f"{model}.json"), str(folder / "plots"), p)
    assert case.target == "evaluate", case.target
    run_evaluate(str(folder / "metrics"), str(folder / "evaluation.json"), p)
    return json.loads((folder / "evaluation.json").read_text())
