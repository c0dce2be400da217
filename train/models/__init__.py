"""Model registry of the training stage: ``create_model(name, **cfg) -> nn.Module``.

A model module registers a factory (a class or a function returning an ``nn.Module``)
under a name with the :func:`register` decorator::

    from train.models import register

    @register("amdfn")
    def amdfn(num_classes: int = 16, ...) -> AMDFN: ...

and the training code builds it from a config with ``create_model("amdfn",
num_classes=6)``.  Every module of this package (except ``backbones`` and private
``_*`` modules) is imported when the package is imported, so its models are in
:data:`MODELS` without anyone editing this file.  Unknown names and unknown config keys
fail with a ``ValueError`` that lists what is accepted.

:func:`load_pretrained` loads weights a user supplies (nothing is ever downloaded):
a state dict saved with ``torch.save(model.state_dict(), path)``, read with
``torch.load(..., weights_only=True)`` so that no arbitrary object is unpickled.  A file
that does not fit the model raises :class:`~data_schema.errors.InputError` listing the
missing, unexpected and shape-mismatched keys.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from data_schema.errors import InputError

__all__ = ["MODELS", "LoadReport", "count_parameters", "create_model", "load_pretrained", "register"]

#: name -> factory (class or function) returning an ``nn.Module``.
MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: put a model factory into :data:`MODELS` under ``name``.

    ``name`` must be a lower-case identifier; registering a different factory under a
    name already taken raises ``ValueError`` (re-registering the same one is a no-op, so
    a module can be re-imported).  Returns the factory unchanged.
    """
    if not (isinstance(name, str) and name.isidentifier() and name == name.lower()):
        raise ValueError(f"model name must be a lower-case identifier, got {name!r}")

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        old = MODELS.get(name)
        if old is not None and _qualname(old) != _qualname(factory):
            raise ValueError(f"model name {name!r} is already registered to {_qualname(old)}")
        MODELS[name] = factory
        return factory

    return deco


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def create_model(name: str, **cfg) -> nn.Module:
    """Build the model registered as ``name`` with keyword config ``cfg``.

    Raises ``ValueError`` naming the registered models when ``name`` is unknown, and
    naming the accepted parameters when ``cfg`` has a key the factory does not take (or
    lacks a required one).
    """
    factory = MODELS.get(name)
    if factory is None:
        known = ", ".join(sorted(MODELS)) or "(none)"
        raise ValueError(f"unknown model {name!r}; registered models: {known}")
    sig = inspect.signature(factory)
    try:
        sig.bind(**cfg)
    except TypeError as err:
        accepted = ", ".join(p for p in sig.parameters if p != "self") or "(no parameters)"
        raise ValueError(f"model {name!r}: bad config ({err}); it accepts: {accepted}") from None
    return factory(**cfg)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once); with
    ``trainable_only`` only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` did.

    loaded : keys copied into the model.
    missing : model keys the file does not have (left as initialised).
    unexpected : file keys the model does not have (ignored).
    mismatched : ``"key: file (a, b) vs model (c, d)"`` for keys present in both with
        different shapes (not loaded).
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


# BatchNorm's step counter carries no learned information and older checkpoints lack it.
_OPTIONAL_SUFFIX = "num_batches_tracked"
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


def _list(title: str, keys: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{title} ({len(keys)}): {shown}{more}"


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise InputError(path, "no such weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many undocumented types
        raise InputError(path, f"not a loadable tensors-only state dict ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})") from None
    # Training checkpoints often wrap the state dict ({"state_dict": ..., "epoch": ...}).
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InputError(path, f"expected a non-empty dict of tensors, found {type(obj).__name__}"
                               + (" (empty)" if isinstance(obj, dict) else ""))
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise InputError(path, "not a state dict: " + _list("entries that are not name -> tensor",
                                                           tuple(map(str, bad))))
    # nn.DataParallel saves every key with a "module." prefix.
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> LoadReport:
    """Copy weights from a user-supplied state-dict file into ``model`` (in place).

    Parameters
    ----------
    model : the module to fill, e.g. a whole model or one branch of it
        (``load_pretrained(ffnet.texture, "vgg16_bn.pth", strict=False)`` loads the
        ``features.*`` of a VGG16-BN checkpoint and reports its classifier as unexpected).
    path : a file written by ``torch.save(state_dict)`` (also accepted: a dict wrapping
        it under "state_dict" / "model" / "model_state_dict", and "module."-prefixed keys).
    strict : if True, any missing, unexpected or shape-mismatched key raises
        ``InputError(path, ...)`` listing them, and nothing is loaded.  If False, the
        keys that match in name and shape are loaded and the rest is reported.

    Returns a :class:`LoadReport`.  Never unpickles arbitrary objects (``weights_only``).
    """
    path = os.fspath(path)
    state = _read_state_dict(path)
    own = model.state_dict()
    missing = tuple(k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIX))
    unexpected = tuple(k for k in state if k not in own)
    mismatched = tuple(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                       for k in own if k in state and state[k].shape != own[k].shape)
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    report = LoadReport(tuple(loadable), missing, unexpected, mismatched)
    if strict and not report.complete:
        parts = [_list(t, keys) for t, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                                ("shape mismatches", mismatched)) if keys]
        raise InputError(path, f"state dict does not fit {type(model).__name__}: " + "; ".join(parts))
    if not loadable:
        raise InputError(path, f"no key of the file fits {type(model).__name__} "
                               f"(file has e.g. {next(iter(state))!r})")
    model.load_state_dict(loadable, strict=False)
    return report


def _import_model_modules() -> None:
    """Import every model module of this package so that its ``@register`` runs."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "backbones":
            continue
        importlib.import_module(f"{__name__}.{info.name}")


_import_model_modules()
