"""The training loop: ``fit`` with checkpoint/resume and mixed precision, and ``evaluate``.

``fit(model, train_loader, val_loader, cfg, out_dir)`` trains for ``cfg.epochs`` epochs and
writes, in ``out_dir``:

* ``last.pt`` after every epoch: model, optimizer, scheduler and GradScaler states, the
  epoch, the history, the best-so-far record and every random state (python, numpy,
  torch CPU and CUDA, and the train loader's shuffling generator).  It holds tensors,
  numbers, strings, lists, tuples and dicts only and is read back with
  ``torch.load(..., weights_only=True)``, so loading a checkpoint never runs code.
* ``best.pt``: the model weights of the epoch with the highest VALIDATION accuracy (ties:
  lower validation loss, then the earlier epoch).  ``fit`` is never given the test fold,
  so it cannot select on it.  ``train.models.load_pretrained(model, "best.pt")`` loads it.
* ``config.json``: the resolved :class:`~train.config.TrainConfig` (``device`` as used,
  ``amp`` as used: False on CPU).

With ``resume=True`` (default) and a ``last.pt`` present, the run continues after the
saved epoch, with every state restored, so on CPU "2 epochs, then resume to 4" gives the
same weights bit for bit as "4 epochs straight" (tested, also across a SIGKILL), given
the same torch thread count (OMP_NUM_THREADS): float sums depend on it.  Resuming with a different
config (other than ``epochs``, ``workers``, ``device``, ``amp``) raises ``ConfigError``
(a ``ValueError``).

Devices: ``cfg.device="auto"`` takes CUDA when available.  On CUDA with ``cfg.amp`` the
forward pass runs under ``torch.autocast(float16)`` and the loss is scaled by a
``torch.amp.GradScaler``; on CPU everything is float32.

Batches are dicts of tensors (``train.data``): the model's inputs named as its
``input_spec`` (models without one take ``"x"``), ``"label"`` (B,) int64, and possibly
extra keys (``"valid"``, ``"landmarks"``) that only augmentations and loss hooks read.
A model whose output is not a logits tensor is handled by a loss hook
(:data:`LOSS_FNS`): WS-LGAN returns a ``WSLGANOutput`` and trains on eq. 10's pairs.

Why by hand: the loop is the project's contract (which checkpoint is "best", what
resumes exactly, which files DVC tracks); a trainer framework (Lightning, Ignite) would
add a dependency and hide exactly these decisions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_schema.errors import ConfigError, InputError
from data_schema.store import atomic_write
from train.batchnorm import recompute_bn_statistics
from train.config import TrainConfig
from train.data import in_stored_order
from train.metrics import (
    accuracy,
    confusion_matrix,
    per_class_recall,
    write_json_atomic,
)
from train.models import create_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOSS_FNS",
    "Augment",
    "EvalResult",
    "FitResult",
    "LossFn",
    "build_model",
    "cross_entropy_loss",
    "evaluate",
    "fit",
    "load_checkpoint",
    "loss_fn_for",
    "model_inputs",
    "resolve_device",
    "seed_everything",
    "ws_lgan_loss",
]

CHECKPOINT_FORMAT = "fermaps-train-checkpoint"
CHECKPOINT_VERSION = 1
LAST, BEST, CONFIG = "last.pt", "best.pt", "config.json"
#: Config fields that may change between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "workers", "device", "amp")

#: ``augment(batch, gen, train) -> batch`` (``train.augment.Augmentation``): random steps
#: draw from the torch.Generator ``gen`` only; ``train=False`` gives the evaluation steps.
Augment = Callable[[dict, torch.Generator, bool], dict]
#: ``loss_fn(output, labels, batch, training) -> (loss scalar, logits (B, n))``.
LossFn = Callable[[Any, torch.Tensor, Mapping[str, torch.Tensor], bool], tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------- loss hooks

def _logits_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(f"model output {type(output).__name__} is neither a logits tensor nor has "
                    f".logits; give fit a loss_fn for it")


def cross_entropy_loss(output, labels: torch.Tensor, batch: Mapping[str, torch.Tensor],
                       training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Default hook: softmax cross-entropy of the logits (B, n) (or ``output.logits``)."""
    logits = _logits_of(output)
    return F.cross_entropy(logits.float(), labels), logits


def ws_lgan_loss(output, labels: torch.Tensor, batch: Mapping[str, torch.Tensor], training: bool, *,
                 weights=(1.0, 1.0, 1.0, 1.0, 1.0), margin_local: float | None = None,
                 margin_global: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """WS-LGAN hook: eq. 10 in training, the softmax loss alone in evaluation.

    The paper's two weight-sharing streams are one network on a batch whose sample i and
    sample N + i form pair i (``train.models.ws_lgan.ws_lgan_losses``); a shuffled loader
    therefore gives random pairs each epoch.  An odd batch leaves its last sample out of
    the pairs (it still counts in the accuracy); a batch of one trains on cross-entropy.
    At test time the paper feeds one image through one stream: cross-entropy of the logits.
    """
    from train.models.ws_lgan import CONTRASTIVE_MARGIN, ws_lgan_losses

    logits = _logits_of(output)
    n2 = labels.shape[0] - labels.shape[0] % 2
    if not training or n2 == 0:
        return F.cross_entropy(logits.float(), labels), logits
    # the first n2 samples, in float32 (the contrastive distances overflow float16)
    pairs = type(output)(**{f.name: getattr(output, f.name)[:n2].float() for f in dataclasses.fields(output)})
    losses = ws_lgan_losses(
        pairs, labels[:n2],
        margin_local=CONTRASTIVE_MARGIN if margin_local is None else margin_local,
        margin_global=CONTRASTIVE_MARGIN if margin_global is None else margin_global,
        weights=tuple(weights))
    return losses.total, logits


#: model name -> loss hook (others: :func:`cross_entropy_loss`); ``cfg.loss_cfg`` holds
#: the hook's keyword arguments.
LOSS_FNS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {"ws_lgan": ws_lgan_loss}


def loss_fn_for(cfg: TrainConfig) -> LossFn:
    """The loss hook of ``cfg.model`` bound to ``cfg.loss_cfg`` (unknown keys: ValueError)."""
    hook = LOSS_FNS.get(cfg.model, cross_entropy_loss)
    kwargs = cfg.to_dict()["loss_cfg"]
    accepted = [p.name for p in inspect.signature(hook).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"loss_cfg keys {unknown} not accepted by {hook.__name__} "
                          f"(accepted: {accepted or 'none'})")
    return partial(hook, **kwargs) if kwargs else hook


# ---------------------------------------------------------------------- small helpers

def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; ``"cuda"`` without a GPU -> ValueError."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(requested)


def build_model(cfg: TrainConfig) -> nn.Module:
    """``create_model(cfg.model, **cfg.model_cfg)`` with torch seeded from ``cfg.seed`` first,
    so that the initial weights are the same on every run of the config."""
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, **cfg.to_dict()["model_cfg"])


def model_inputs(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[tuple, dict]:
    """(args, kwargs) for ``model(*args, **kwargs)`` from a batch dict.

    The input names are the model's ``input_spec`` keys present in the batch (in spec
    order), or ``"x"`` for models without ``input_spec``.  They are passed by keyword when
    ``forward`` has parameters of those names (FFNet-M: depth, normals, ...), else a single
    input is passed positionally (AMDFN's ``"maps"`` -> ``forward(x)``).
    """
    spec = getattr(model, "input_spec", None)
    names = [k for k in spec if k in batch] if spec else (["x"] if "x" in batch else [])
    if not names:
        want = list(spec) if spec else ["x"]
        raise KeyError(f"batch has none of the inputs {want} of {type(model).__name__}; "
                       f"it has {sorted(batch)}")
    params = inspect.signature(model.forward).parameters
    if all(n in params for n in names):
        return (), {n: batch[n] for n in names}
    if len(names) == 1:
        return (batch[names[0]],), {}
    raise TypeError(f"{type(model).__name__}.forward takes {list(params)}, batch inputs are {names}")


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    nb = device.type == "cuda"
    return {k: (v.to(device, non_blocking=nb) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------- evaluate

@dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not results
class EvalResult:
    """Model quality on one loader.

    accuracy : float in [0, 1].
    per_class_recall : (n_classes,) float64 in [0, 1] (0.0 for a class with no sample).
    confusion : (n_classes, n_classes) int64, rows actual, columns predicted.
    loss : float, mean loss per sample (the model's loss hook in evaluation mode).
    n : int, samples seen.
    samples_per_second : float, n / wall-clock seconds of the whole pass (loading included).
    actual, predicted : (n,) int64 labels in loader order (for the confusion plot).
    """

    accuracy: float
    per_class_recall: np.ndarray
    confusion: np.ndarray
    loss: float
    n: int
    samples_per_second: float
    actual: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], n_classes: int, *,
             loss_fn: LossFn | None = None, device: torch.device | str | None = None,
             amp: bool = False, augment: Augment | None = None) -> EvalResult:
    """Run ``model`` in eval mode over ``loader`` and measure it.

    loader : iterable of batch dicts with ``"label"`` (B,) int64 in [0, n_classes).
    loss_fn : loss hook (default cross-entropy of the logits).
    device : where to run (default: the device of the model's parameters).
    amp : autocast float16 on CUDA (ignored on CPU).
    augment : the run's augmentation; its evaluation steps run on every batch
        (``augment(batch, gen, train=False)``, e.g. STCAM's centre crop).
    The model's train/eval mode is restored afterwards.  Raises ``ValueError`` on an empty
    loader or a label outside [0, n_classes).
    """
    loss_fn = loss_fn or cross_entropy_loss
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    actual, predicted, loss_sum, n = [], [], 0.0, 0
    gen = torch.Generator().manual_seed(0)  # evaluation steps are deterministic; a fixed one
    t0 = time.perf_counter()
    try:
        for batch in loader:
            batch = _to_device(batch, device)
            if augment is not None:
                batch = augment(batch, gen, train=False)
            labels = batch["label"]
            args, kwargs = model_inputs(model, batch)
            with _autocast(device, amp):
                output = model(*args, **kwargs)
                loss, logits = loss_fn(output, labels, batch, False)
            loss_sum += float(loss) * labels.shape[0]
            n += labels.shape[0]
            actual.append(labels.cpu())
            predicted.append(logits.argmax(dim=1).cpu())
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - t0
    if n == 0:
        raise ConfigError("evaluate: the loader gave no sample")
    a = torch.cat(actual).numpy().astype(np.int64)
    p = torch.cat(predicted).numpy().astype(np.int64)
    cm = confusion_matrix(a, p, n_classes)
    return EvalResult(accuracy=accuracy(cm), per_class_recall=per_class_recall(cm), confusion=cm,
                      loss=loss_sum / n, n=n, samples_per_second=n / max(seconds, 1e-9),
                      actual=a, predicted=p)


# ---------------------------------------------------------------------- checkpoints

def _save(obj: dict, path: Path) -> None:
    """torch.save through a temporary file + fsync + rename: never a half checkpoint."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a ``last.pt`` / ``best.pt`` of :func:`fit` (tensors-only, ``weights_only=True``).

    Raises ``InputError`` naming the file when it is not such a checkpoint (truncated,
    garbage, a pickle of arbitrary objects - refused, never run - another format or
    version).  :func:`fit` writes checkpoints atomically, so a killed run never leaves a
    half one: a damaged ``last.pt`` was damaged by something else, and resuming stops
    rather than silently discarding the run (delete the file to start the fold afresh).
    """
    path = os.fspath(path)
    fresh = "; delete it to start afresh"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many undocumented types
        first = str(err).splitlines()[0] if str(err) else ""
        raise InputError(path, f"not a readable tensors-only checkpoint ({type(err).__name__}: {first}){fresh}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, f"not a fermaps training checkpoint{fresh}")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise InputError(path, f"checkpoint version {ckpt.get('version')}, this code reads {CHECKPOINT_VERSION}{fresh}")
    return ckpt


def _loader_generators(loader) -> list[torch.Generator]:
    """The torch.Generators that decide a DataLoader's order and worker seeds
    (deduplicated), the shuffling one first: ``make_loader`` gives persistent workers a
    seed generator of their own, so its loaders have one or two."""
    found, seen = [], set()
    candidates = [getattr(getattr(loader, "sampler", None), "generator", None)]
    # DataLoader's own batch sampler, or make_loader's batch-reading one (its sampler)
    for bs in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        candidates.append(getattr(getattr(bs, "sampler", None), "generator", None))
    candidates.append(getattr(loader, "generator", None))
    for g in candidates:
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            found.append(g)
    return found


def _rng_state(train_loader, aug_gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        # numpy's state as tensors and numbers: weights_only cannot read numpy arrays
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": [g.get_state() for g in _loader_generators(train_loader)],
        "augment": aug_gen.get_state(),
    }


def _set_rng_state(state: dict, train_loader, aug_gen: torch.Generator) -> None:
    random.setstate(_as_tuple(state["python"]))
    s = state["numpy"]
    np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"],
                         s["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    # the shuffling generator comes first on both sides; a worker-seed generator only
    # where both have one (workers switched between re-created and persistent: the
    # batches still follow, train.data._EpochDraw; only the workers' seeds differ)
    for g, st in zip(_loader_generators(train_loader), state["loaders"]):
        g.set_state(st)
    aug_gen.set_state(state["augment"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------- fit

@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did.

    history : one dict per epoch (1-based ``epoch``, ``train_loss``, ``train_acc``,
        ``val_loss``, ``val_acc``, ``lr`` used in the epoch, ``seconds`` wall-clock for
        the epoch, ``train_samples_per_second``), resumed epochs included.
    best_epoch : epoch of ``best.pt`` (highest validation accuracy).
    best_val_acc : its validation accuracy.
    last_path, best_path, config_path : the files written.
    device : where it ran ("cpu", "cuda"); amp : whether float16 autocast was used.
    resumed_from : epochs already done in the ``last.pt`` it resumed from (0: fresh run).
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_val_acc: float
    last_path: Path
    best_path: Path
    config_path: Path
    device: str
    amp: bool
    resumed_from: int


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameter")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _precise_bn(model: nn.Module, train_loader, max_batches: int, device: torch.device, amp: bool,
                augment: Augment | None) -> int:
    """Batch-norm statistics from the training samples as evaluation sees them
    (``train.batchnorm``); returns the batches used."""
    gen = torch.Generator().manual_seed(0)  # evaluation steps draw nothing; a fixed one

    def batches():
        for batch in in_stored_order(train_loader):
            batch = _to_device(batch, device)
            yield augment(batch, gen, train=False) if augment is not None else batch

    def forward(m: nn.Module, batch) -> None:
        args, kwargs = model_inputs(m, batch)
        with _autocast(device, amp):
            m(*args, **kwargs)

    return recompute_bn_statistics(model, batches(), forward, max_batches)


def _config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(saved) | set(current)) - set(RESUMABLE_CHANGES))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def _better(acc: float, loss: float, best_acc: float, best_loss: float) -> bool:
    return acc > best_acc or (acc == best_acc and loss < best_loss)


def _n_classes(model: nn.Module, cfg: TrainConfig) -> int:
    n = cfg.model_cfg.get("num_classes")
    if isinstance(n, int):
        return n
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("cannot tell the number of classes: set model_cfg['num_classes']")
    return linears[-1].out_features


def fit(model: nn.Module, train_loader: Iterable[Mapping[str, torch.Tensor]],
        val_loader: Iterable[Mapping[str, torch.Tensor]], cfg: TrainConfig,
        out_dir: str | os.PathLike, *, augment: Augment | None = None,
        resume: bool = True, loss_fn: LossFn | None = None) -> FitResult:
    """Train ``model`` on ``train_loader``, select on ``val_loader``, checkpoint to ``out_dir``.

    Parameters
    ----------
    model : an ``nn.Module`` (e.g. :func:`build_model(cfg) <build_model>`); trained in place
        and moved to the run's device.  After the call it holds the LAST epoch's weights
        (``best.pt`` has the best).
    train_loader : iterable of batch dicts (re-iterated each epoch), e.g. a
        ``train.data.make_loader(..., shuffle=True)``.  If its dataset has ``set_epoch``,
        it is called with the 0-based epoch before each epoch.  Its shuffling generator's
        state is checkpointed, so a resumed run sees the same batches.
    val_loader : validation batches (subjects held out of the training fold, never the
        test fold); decides ``best.pt``.
    cfg : :class:`TrainConfig` (optimizer, schedule, epochs, seed, amp, device).
    out_dir : directory for ``last.pt``, ``best.pt``, ``config.json`` (created).
    augment : e.g. ``train.augment.augment_for(cfg.model)``: called as
        ``augment(batch, gen, train=True)`` on every training batch after it is moved to
        the device, with a CPU torch.Generator seeded from ``cfg.seed`` whose state is
        checkpointed; validation batches get ``augment(batch, gen, train=False)``.
    resume : continue from ``out_dir/last.pt`` when it exists (else start fresh and
        overwrite).
    loss_fn : loss hook (default :func:`loss_fn_for(cfg) <loss_fn_for>`).

    Returns :class:`FitResult`.  Raises ``ValueError`` when resuming with a different
    config, ``FloatingPointError`` when a float32 training loss becomes NaN/inf.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path, config_path = out / LAST, out / BEST, out / CONFIG
    device = resolve_device(cfg.device)
    use_amp = bool(cfg.amp and device.type == "cuda")
    resolved = cfg.replace(device=device.type, amp=use_amp)
    loss_fn = loss_fn or loss_fn_for(cfg)
    n_classes = _n_classes(model, cfg)

    seed_everything(cfg.seed)
    model.to(device)
    optimizer = _make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.milestones), cfg.gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    aug_gen = torch.Generator().manual_seed(cfg.seed)

    history: list[dict[str, float]] = []
    best = {"epoch": 0, "val_acc": -math.inf, "val_loss": math.inf}
    start = 0
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        diff = _config_differences(ckpt["config"], resolved.to_dict())
        if diff:
            raise ConfigError(f"{last_path}: cannot resume, the config changed ({'; '.join(diff)}); "
                              f"use another out_dir or resume=False")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if use_amp and ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        history = [dict(h) for h in ckpt["history"]]
        best = dict(ckpt["best"])
        start = int(ckpt["epoch"])
        _set_rng_state(ckpt["rng"], train_loader, aug_gen)
    resumed_from = start
    write_json_atomic(config_path, resolved.to_dict())

    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        dataset = getattr(train_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch - 1)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum, correct, n = 0.0, 0, 0
        for step, batch in enumerate(train_loader):
            batch = _to_device(batch, device)
            if augment is not None:
                batch = augment(batch, aug_gen, train=True)
            labels = batch["label"]
            args, kwargs = model_inputs(model, batch)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, use_amp):
                output = model(*args, **kwargs)
                loss, logits = loss_fn(output, labels, batch, True)
            if not torch.isfinite(loss):
                if not use_amp:
                    raise FloatingPointError(f"training loss is {float(loss.detach())} at epoch {epoch}, "
                                             f"batch {step}; lower the learning rate")
            else:
                loss_sum += float(loss.detach()) * labels.shape[0]
            scaler.scale(loss).backward()  # a no-op scale when AMP is off
            scaler.step(optimizer)  # skips the step on inf/NaN gradients under AMP
            scaler.update()
            correct += int((logits.detach().argmax(dim=1) == labels).sum())
            n += labels.shape[0]
        if n == 0:
            raise ConfigError("the training loader gave no sample")
        train_seconds = time.perf_counter() - t0
        scheduler.step()
        if cfg.precise_bn_batches:
            _precise_bn(model, train_loader, cfg.precise_bn_batches, device, use_amp, augment)
        val = evaluate(model, val_loader, n_classes, loss_fn=loss_fn, device=device, amp=use_amp,
                       augment=augment)
        record = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
                  "val_loss": val.loss, "val_acc": val.accuracy, "lr": lr,
                  "seconds": time.perf_counter() - t0,
                  "train_samples_per_second": n / max(train_seconds, 1e-9)}
        history.append(record)
        if _better(val.accuracy, val.loss, best["val_acc"], best["val_loss"]):
            best = {"epoch": epoch, "val_acc": val.accuracy, "val_loss": val.loss}
            _save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                   "model": model.state_dict(), "val_acc": val.accuracy, "val_loss": val.loss,
                   "config": resolved.to_dict()}, best_path)
        _save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
               "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
               "history": history, "best": best, "rng": _rng_state(train_loader, aug_gen),
               "config": resolved.to_dict()}, last_path)

    if best["epoch"] == 0:
        raise ConfigError(f"{out}: no epoch was trained (epochs={cfg.epochs}) and no checkpoint "
                          f"records one")
    return FitResult(history=history, best_epoch=int(best["epoch"]), best_val_acc=float(best["val_acc"]),
                     last_path=last_path, best_path=best_path, config_path=config_path,
                     device=device.type, amp=use_amp, resumed_from=resumed_from)
