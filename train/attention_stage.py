"""WS-LGAN stage 1: the attention map generator fitted to landmark targets, then frozen.

The paper (seed ws_lgan, sec. III-B and IV-C) trains each AMG branch on CelebA attributes
and fine-tunes the rest with the AMG fixed.  CelebA is not available offline, so here the
AMG learns to reproduce eye and mouth maps drawn from the 68 landmarks of each training
frame (``train.models.ws_lgan.landmark_attention_targets``, per-pixel binary cross-entropy
``amg_target_loss``), on the training subjects only, before :func:`train.loop.fit` trains
the feature extractor, the SFU and the classifier with the AMG frozen.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from data_schema.errors import ConfigError
from train.models.ws_lgan import WSLGAN, amg_target_loss, landmark_attention_targets

__all__ = ["fit_attention_generator"]


def fit_attention_generator(model: WSLGAN, loader: Iterable[Mapping[str, torch.Tensor]], *,
                            epochs: int, lr: float = 1e-3, seed: int = 0, device: torch.device | str = "cpu",
                            augment=None) -> list[float]:
    """Train ``model.amg`` for ``epochs`` epochs on landmark targets, then freeze it.

    loader : batches with ``"x"`` (B, 1, S, S) float32 in [0, 1] and ``"landmarks"``
        (B, 68, 2) float32 in the input's pixels (``train.data.SequenceDataset``, WS-LGAN).
    epochs : >= 0 (0: only freeze).  lr : Adam learning rate.  seed : seeds torch and the
        augmentation generator (the same seed gives the same weights on one machine).
    augment : the run's augmentation (rotations and flips move the landmarks with the image).
    Returns the mean target loss of each epoch.  Raises ``ConfigError`` (a ``ValueError``) on a batch without
    landmarks.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    amg = model.amg
    opt = torch.optim.Adam(amg.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        amg.train()
        total, n = 0.0, 0
        for batch in loader:
            if "landmarks" not in batch:
                raise ConfigError("WS-LGAN attention pre-training needs 'landmarks' in every batch")
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            if augment is not None:
                batch = augment(batch, gen, train=True)
            x = batch["x"]
            if x.shape[0] < 2:      # batch norm cannot train on one sample
                continue
            cam = amg(x).cam
            target = landmark_attention_targets(batch["landmarks"], tuple(cam.shape[2:]),
                                                image_size=tuple(x.shape[2:]))
            loss = amg_target_loss(cam, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x.shape[0]
            n += x.shape[0]
        history.append(total / max(n, 1))
    model.freeze_attention_generator()
    return history
