"""HACN: hybrid attention cascade network (seed hacn, section 3).

Input ``(B, k, 3, 224, 224)`` float32: k = 5 face frames per video, one drawn from each of
k equal parts (sec. 3.1); output ``(B, num_classes)`` logits.  The cascade is

    ResNet-50 per frame -> self-attention over the k frames -> spatial attention
    -> GRU (1 layer, 128 units) -> FC (logits)

* Spatial features (sec. 3.3): :func:`train.models.backbones.resnet50_trunk` on every frame
  gives a ``(2048, 7, 7)`` map ``M^i``; its spatial mean is the 2048-d feature ``T^i``.
* Self-attention (Fig. 2a, eq. 2-3): ``w^i = sigmoid(FC(T^i))`` (one scalar per frame);
  frame i is weighted by ``w^i / sum_j w^j`` (times k, so that equal weights leave the
  features unchanged): ``f^i = k w^i M^i / sum_j w^j``.
* Concatenation (eq. 4): the k weighted maps are concatenated along channels (the paper's
  ``torch.cat(dim=1)``): ``F_att1 : (k * 2048, 7, 7)``.
* Spatial attention (Fig. 2b, eq. 5-6): average pooling across the concatenated channels
  (one ``7x7`` map for the whole clip, which is how the frames are associated), a 3x3
  convolution (padding 1) and a sigmoid give ``W2 : (1, 7, 7)``; eq. 6's weighted,
  normalised sum ``F_att2 = sum_p W2(p) F_att1(p) / sum_p W2(p)`` over the 49 positions p
  gives one 2048-d vector per frame.
* Temporal features (sec. 3.3): a one-layer GRU with 128 units over the k vectors; its last
  hidden state -> dropout -> FC -> logits (the softmax is in the loss, eq. 7).

Readings and departures (the paper's text is ambiguous in places):

* Eq. 2-6 are written for vectors, but the spatial attention's 3x3 convolution with padding 1
  needs a 2-D map and Fig. 5 shows the hybrid attention as a map over the face.  We keep the
  7x7 map of the last ResNet stage through both attentions and pool it with the spatial
  weights (eq. 6) only at the end; the self-attention weight is computed from the pooled
  vector ``T^i`` exactly as eq. 2 says.
* Eq. 3's sum over i in the numerator would give the same vector for every frame and leave
  nothing for the GRU; we read it as the frame weight normalised over the k frames.
* The paper's "1x1 average pooling ... to extract the global image features" is read as
  the channel-wise average (a 1x1 window over space, all channels): the only reading in
  which it is not an identity.
* ``attention=False`` replaces both attentions by plain averaging (equal frame weights,
  spatial mean), i.e. ResNet-50 + GRU; useful as the ablation baseline.
* Pretrained ImageNet weights (not available offline) can be loaded into ``self.trunk``
  with :func:`train.models.load_pretrained`.

Why by hand: no library has this cascade; it is a few lines over the shared ResNet-50.
"""
from __future__ import annotations

import torch
from torch import nn

from train.models import register
from train.models.backbones import resnet50_trunk

#: Frames per clip (sec. 3.1) and GRU width (sec. 3.3).
NUM_FRAMES = 5
GRU_UNITS = 128


class FrameSelfAttention(nn.Module):
    """Eq. 2-3: one sigmoid weight per frame from its pooled feature, normalised over frames.

    ``weights(t)``: ``t : (B, k, C)`` -> ``(B, k)`` with ``sum_i = k`` (frame i's factor).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, 1)

    def weights(self, t: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc(t)).squeeze(-1)  # (B, k), each in (0, 1): sum > 0
        return w * (w.shape[1] / w.sum(dim=1, keepdim=True))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps : (B, k, C, h, w)`` -> same shape, frame i scaled by its weight."""
        return maps * self.weights(maps.mean(dim=(3, 4)))[:, :, None, None, None]


class SpatialAttentionPool(nn.Module):
    """Eq. 5-6: channel-average -> 3x3 conv -> sigmoid -> weighted, normalised spatial sum.

    ``weights(x)``: ``x : (B, C, h, w)`` -> ``(B, 1, h, w)`` in (0, 1).
    ``forward(x)`` -> ``(B, C)``: ``sum_p W(p) x(:, p) / sum_p W(p)``.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x.mean(dim=1, keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights(x)
        return (w * x).sum(dim=(2, 3)) / w.sum(dim=(2, 3))


class HACN(nn.Module):
    """ResNet-50 + hybrid attention + GRU for k-frame clips.

    Parameters
    ----------
    num_classes : int
        Expression classes (7 for AFEW / CK+, 6 for Oulu-CASIA).
    num_frames : int
        k, frames per clip (paper: 5).  Clips with fewer frames (the paper's N < 5 case)
        must be padded by the data loader (e.g. repeating the last frame).
    attention : bool
        False: equal frame weights and a plain spatial mean (ablation baseline).
    dropout : float
        Dropout before the classifier.

    ``forward(x)``: ``x : (B, k, 3, H, W)`` float32 (paper: 224x224) ->
    ``(B, num_classes)`` logits.  ``sequence(x)`` -> ``(B, k, 2048)`` the GRU's input.
    """

    def __init__(self, num_classes: int = 7, num_frames: int = NUM_FRAMES, attention: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.num_frames = num_frames
        self.trunk = resnet50_trunk(3)
        c = self.trunk.out_channels
        self.self_attention = FrameSelfAttention(c) if attention else None
        self.spatial_attention = SpatialAttentionPool() if attention else None
        self.gru = nn.GRU(c, GRU_UNITS, num_layers=1, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(GRU_UNITS, num_classes))

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, k, 3, H, W)`` -> ``(B, k, 2048)`` hybrid-attention features per frame."""
        if x.ndim != 5 or x.shape[1] != self.num_frames or x.shape[2] != 3:
            raise ValueError(f"HACN expects (B, {self.num_frames}, 3, H, W), got {tuple(x.shape)}")
        b, k = x.shape[:2]
        maps = self.trunk(x.flatten(0, 1))                   # (B*k, C, h, w)
        maps = maps.view(b, k, *maps.shape[1:])              # (B, k, C, h, w)
        if self.self_attention is None:
            return maps.mean(dim=(3, 4))
        maps = self.self_attention(maps)
        cat = maps.flatten(1, 2)                             # F_att1: (B, k*C, h, w)
        return self.spatial_attention(cat).view(b, k, -1)    # F_att2: (B, k, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.sequence(x))                    # h: (1, B, 128), last step
        return self.classifier(h[-1])


@register("hacn")
def hacn(num_classes: int = 7, num_frames: int = NUM_FRAMES, attention: bool = True,
         dropout: float = 0.5) -> HACN:
    """Registry entry: ``create_model("hacn", num_classes=7)``."""
    return HACN(num_classes=num_classes, num_frames=num_frames, attention=attention,
                dropout=dropout)
