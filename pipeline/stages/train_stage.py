"""Stages ``splits``, ``train`` (one per model, DVC foreach) and ``evaluate``.

Thin wrappers: the split rules are ``train.splits``, the datasets ``train.data``, the
loop ``train.loop``.  Each model trains on the folds listed in params (``train.folds``),
selects its checkpoint on a validation split carved from the training subjects, and is
evaluated once on the held-out test subjects of the fold.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from data_schema.errors import InputError
from data_schema.params import TrainStageParams

# model -> (protocol, the stores it reads, sequence protocol or None)
MODEL_DATA = {
    "amdfn": ("bosphorus10", ("maps_clean",), None),
    "ffnet_m": ("bosphorus10", ("maps_clean", "masks"), None),
    "stcam": ("ckplus10", ("aligned_frames",), "stcam"),
    "hacn": ("ckplus10", ("aligned_frames",), "hacn"),
    "ws_lgan": ("ckplus10", ("aligned_frames",), "wslgan"),
}


def config_for(model: str, p: TrainStageParams):
    from train.config import SMALL_CPU_CONFIGS, paper_config

    cfg = SMALL_CPU_CONFIGS[model] if p.config == "small" else paper_config(model, None)
    changes = {}
    if p.epochs:
        changes["epochs"] = p.epochs
    if p.workers != -1:
        changes["workers"] = p.workers
    changes["seed"] = p.seed
    return cfg.replace(**changes)


def run_splits(stores: str, out: str, p: TrainStageParams) -> int:
    """One split manifest per model: ``OUT/<model>.json``."""
    from data_schema.store import read_index
    from train.splits import split_manifest, write_manifest

    Path(out).mkdir(parents=True, exist_ok=True)
    for model in p.models:
        protocol, needs, _ = MODEL_DATA[model]
        for name in needs:  # the store at STORES/<name> must hold that schema
            read_index(Path(stores) / name, (name,))
        cfg = config_for(model, p)
        man = split_manifest([str(Path(stores) / s) for s in needs], protocol, p.seed,
                             val_fraction=cfg.val_fraction, k=p.k or None)
        write_manifest(Path(out) / f"{model}.json", man)
    return 0


def fold_datasets(model: str, stores: Path, items: dict, label_map: dict, cfg):
    """(train, val, test) datasets of ``model`` over ``stores`` for one fold's item keys
    (``items``: ``train.splits.fold_items``), as the ``train`` stage reads them."""
    from train.data import MapsDataset, SequenceDataset

    _, needs, seq = MODEL_DATA[model]
    if seq is None:
        masks = str(stores / "masks") if "masks" in needs else None
        make = lambda keys, train: MapsDataset(str(stores / "maps_clean"), keys, model=model,  # noqa: E731
                                               label_map=label_map, masks_root=masks)
    else:
        size = cfg.data_cfg.get("frame_size")
        make = lambda keys, train: SequenceDataset(str(stores / "aligned_frames"), keys, seq, train,  # noqa: E731
                                                   cfg.seed, size, label_map=label_map)
    return make(items["train"], True), make(items["val"], False), make(items["test"], False)


def _fold_parts(man: dict, man_path: Path, roots: list[Path], folds) -> dict[int, dict]:
    """Each listed fold's train / val / test item keys, after checking that the manifest
    was made from these very stores and that every part is non-empty.  Raises
    InputError naming the manifest, before any training starts."""
    from train.splits import check_manifest_stores, fold_items

    check_manifest_stores(man_path, man, roots)
    parts = {}
    for fold in folds:
        try:
            parts[fold] = fold_items(man, fold)
        except KeyError:
            have = sorted({f["index"] for f in man["folds"]})
            raise InputError(man_path, f"no fold {fold} (folds: {have}); check params.yaml "
                                       f"train.folds and train.k") from None
        empty = [part for part, keys in parts[fold].items() if not keys]
        if empty:
            raise InputError(man_path, f"fold {fold} has no {' and no '.join(empty)} item")
    return parts


def _attention_stage(net, train_set, cfg, fold_dir: Path, aug) -> None:
    """WS-LGAN stage 1 (``train.attention_stage``) on the training subjects when
    ``cfg.pretrain_epochs`` > 0; skipped when resuming (``last.pt`` holds the fitted
    generator), which is frozen either way.  With 0 the generator trains end to end."""
    from train.attention_stage import fit_attention_generator
    from train.data import make_loader
    from train.loop import resolve_device

    if not cfg.pretrain_epochs:
        return
    if (fold_dir / "last.pt").exists():
        net.freeze_attention_generator()
        return
    loader = make_loader(train_set, cfg.batch_size, True, cfg.workers, cfg.seed, drop_last=True)
    fit_attention_generator(net, loader, epochs=cfg.pretrain_epochs, seed=cfg.seed,
                            device=resolve_device(cfg.device), augment=aug)


def run_train(model: str, stores: str, splits: str, out: str, metrics_out: str, plots_out: str,
              p: TrainStageParams) -> int:
    """Train ``model`` on each listed fold.  OUT/fold<k>/ holds last.pt, best.pt and
    config.json (the resolved configuration); METRICS_OUT the test metrics per fold;
    PLOTS_OUT/history/<model>.csv (the curves of the first listed fold) and
    PLOTS_OUT/confusion/<model>.json (test predictions of every listed fold together, as
    the papers report them) for ``dvc plots``.

    Before any training, InputError names the manifest when it was made from other
    stores, lacks a listed fold, or a fold part is empty; a damaged ``last.pt`` stops
    the fold with InputError naming it (:func:`train.loop.load_checkpoint`)."""
    import torch

    from train.augment import augment_for
    from train.loop import build_model, evaluate, fit, load_checkpoint
    from train.metrics import write_metrics
    from train.plots import write_confusion, write_history
    from train.splits import manifest_label_map, read_manifest

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = config_for(model, p)
    man_path = Path(splits) / f"{model}.json"
    man = read_manifest(man_path)
    parts = _fold_parts(man, man_path, [Path(stores) / s for s in MODEL_DATA[model][1]], p.folds)
    label_map = manifest_label_map(man)
    classes = man["classes"]
    summary = {}
    actual, predicted = [], []
    for fold in p.folds:
        t0 = time.perf_counter()
        fold_dir = Path(out) / f"fold{fold}"
        try:
            tr, va, te = fold_datasets(model, Path(stores), parts[fold], label_map, cfg)
        except KeyError as exc:  # an item the manifest lists is not in the store
            raise InputError(man_path, exc.args[0]) from None
        from train.data import make_loader
        crop = cfg.data_cfg.get("crop")
        aug = augment_for(model, crop=crop) if crop else augment_for(model)
        net = build_model(cfg)
        if model == "ws_lgan":
            _attention_stage(net, tr, cfg, fold_dir, aug)
        # drop a last batch of a few samples: batch norm on 1-2 samples can blow up
        drop = model == "ws_lgan" or len(tr) > cfg.batch_size
        if drop and len(tr) < cfg.batch_size:
            raise InputError(man_path, f"fold {fold} has {len(tr)} training items, fewer than one "
                                       f"batch of {cfg.batch_size} ({model} drops incomplete batches)")
        # map samples do not depend on the epoch: their workers may live across epochs
        # and keep their mapped shards (train.data.make_loader); sequence ones may not
        keep = hasattr(tr, "read_batch")
        res = fit(net, make_loader(tr, cfg.batch_size, True, cfg.workers, cfg.seed, drop_last=drop,
                                   persistent_workers=keep),
                  make_loader(va, cfg.batch_size, False, cfg.workers, cfg.seed, persistent_workers=keep),
                  cfg, fold_dir, augment=aug)
        if fold == p.folds[0]:
            write_history(Path(plots_out) / "history" / f"{model}.csv", res.history)
        net.load_state_dict(load_checkpoint(res.best_path)["model"])  # chosen on validation only
        ev = evaluate(net, make_loader(te, cfg.batch_size, False, 0, cfg.seed), len(classes), augment=aug)
        metrics = {"accuracy": ev.accuracy, "chance": 1.0 / len(classes), "n_test": ev.n,
                   "per_class_recall": dict(zip(classes, map(float, ev.per_class_recall))),
                   "confusion": ev.confusion.tolist(), "best_epoch": res.best_epoch,
                   "best_val_accuracy": res.best_val_acc, "test_samples_per_second": ev.samples_per_second,
                   "seconds": time.perf_counter() - t0, "device": res.device}
        actual += list(ev.actual)
        predicted += list(ev.predicted)
        summary[f"fold{fold}"] = metrics
    write_confusion(Path(plots_out) / "confusion" / f"{model}.json", actual, predicted, classes)
    write_metrics(metrics_out, {"model": model, "protocol": man["protocol"], **summary})
    return 0


def run_evaluate(metrics_dir: str, out: str, p: TrainStageParams) -> int:
    """Gather every model's fold metrics into one summary for ``dvc metrics show``."""
    table = {}
    for model in p.models:
        path = Path(metrics_dir) / f"{model}.json"
        try:
            m = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, f"no metrics of {model}; run `fermaps train {model}` first") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(path, f"unreadable metrics: {exc}") from None
        folds = [v for k, v in m.items() if k.startswith("fold")]
        acc = [f["accuracy"] for f in folds]
        table[model] = {"protocol": m["protocol"], "mean_accuracy": sum(acc) / len(acc),
                        "chance": folds[0]["chance"], "folds": len(folds),
                        "at_least_twice_chance": all(a >= 2 * f["chance"] for a, f in zip(acc, folds))}
    from train.metrics import write_metrics
    write_metrics(out, table)
    return 0
