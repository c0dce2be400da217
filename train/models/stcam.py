"""STCAM: 3D-Inception-ResNet with spatial-temporal and channel attention (seed stcam, sec. 3).

Input ``(B, 3, 7, 224, 224)`` float32 (RGB clip of 7 frames, time before height and width);
output ``(B, num_classes)`` logits.  The network is

    stem (3x7x7 conv, stride (1, 2)) -> Inception-ResNet-A -> Reduction-A
    -> Inception-ResNet-B -> Reduction-B -> Inception-ResNet-C
    -> global average pool (1072-d) -> FC -> ReLU -> FC (logits)

with an STCAM (3D-CAM then STAM, in sequence: the paper's best order, Tables 2-4) in every
Inception-ResNet block (on the residual branch, before the shortcut is added: Fig. 6a) and
in every reduction (after the concatenated branches: Fig. 6b).

* 3D-CAM (eq. 1-3): average- and max-pool over (T, H, W), a shared two-layer MLP
  ``C -> C/r -> C`` (r = 16, no biases, as eq. 2 writes it), sum, sigmoid, scale channels.
* STAM (eq. 4-6): average- and max-pool over channels, one 3-D convolution 2 -> 1
  (kernel 3x7x7 in Inception-ResNet-A, 3x5x5 elsewhere: sec. 4.2), sigmoid, scale positions.

Where this departs from the paper, and why:

* The paper gives the layer types, the stem's first kernel and stride, the block order and
  the 1072-d feature size, but no branch widths (Fig. 2 is not in the text we have).  The
  widths below are ours, chosen so the last stage has 1072 channels and one forward pass
  costs about 7 GMAC per clip (CPU-testable).  Reduction-B halves time as well as space
  (7 -> 4 frames) so the last stage sees a 4x7x7 volume.
* The "linear" 1x1x1 convolution that closes each Inception-ResNet branch is followed by
  batch norm (no ReLU) before the attention, so the attention sees normalised features.
* The classifier returns logits (the softmax of the paper is in the loss); its two fully
  connected layers (1072 -> 512 -> n, dropout 0.5 before each) are Xavier-initialised as
  sec. 4.2 says; the rest gets the shared He init (``backbones.init_kaiming_``, which
  starts the 3D-CAM MLPs near zero, i.e. near-uniform channel weights).  Kinetics
  pretraining is not done here (no weights offline); user weights load with
  :func:`train.models.load_pretrained`.
* ``attention=False`` builds the paper's "Baseline" (Table 2) with the same widths.

Why by hand: no maintained library ships 3-D Inception-ResNet or STCAM; torchvision is not a
dependency and has neither.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from train.models import register
from train.models.backbones import init_kaiming_

#: Feature size before the classifier (sec. 3.1).
FEATURE_DIM = 1072
#: 3D-CAM reduction ratio r (sec. 4.2).
CAM_REDUCTION = 16
#: STAM kernels (time, height, width) (sec. 4.2).
STAM_KERNEL_A = (3, 7, 7)
STAM_KERNEL_OTHER = (3, 5, 5)


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else (int(v[0]), int(v[1]), int(v[2]))


class ConvBNReLU3d(nn.Sequential):
    """Conv3d (no bias, 'same' padding for odd kernels) -> BatchNorm3d -> ReLU (optional)."""

    def __init__(self, cin: int, cout: int, kernel: int | Sequence[int],
                 stride: int | Sequence[int] = 1, relu: bool = True):
        k = _triple(kernel)
        layers: list[nn.Module] = [
            nn.Conv3d(cin, cout, k, stride=_triple(stride), padding=tuple(x // 2 for x in k),
                      bias=False),
            nn.BatchNorm3d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ChannelAttention3d(nn.Module):
    """3D-CAM (eq. 1-3): ``x * sigmoid(MLP(avg_thw x) + MLP(max_thw x))`` per channel.

    ``x : (B, C, T, H, W)`` -> same shape; ``weights(x) : (B, C)`` in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = CAM_REDUCTION):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=False))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3, 4))
        mx = x.amax(dim=(2, 3, 4))
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None, None]


class SpatialTemporalAttention(nn.Module):
    """STAM (eq. 4-6): ``x * sigmoid(conv3d([mean_c x, max_c x]))`` per (t, h, w) position.

    ``x : (B, C, T, H, W)`` -> same shape; ``weights(x) : (B, 1, T, H, W)`` in (0, 1).
    """

    def __init__(self, kernel: Sequence[int] = STAM_KERNEL_OTHER):
        super().__init__()
        k = _triple(kernel)
        self.conv = nn.Conv3d(2, 1, k, padding=tuple(x // 2 for x in k), bias=False)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class STCAMBlock(nn.Sequential):
    """3D-CAM then STAM (Fig. 5): ``(B, C, T, H, W)`` -> same shape."""

    def __init__(self, channels: int, stam_kernel: Sequence[int] = STAM_KERNEL_OTHER,
                 reduction: int = CAM_REDUCTION):
        super().__init__(ChannelAttention3d(channels, reduction),
                         SpatialTemporalAttention(stam_kernel))


def _attention(enabled: bool, channels: int, kernel: Sequence[int]) -> nn.Module:
    return STCAMBlock(channels, kernel) if enabled else nn.Identity()


class _InceptionResNet(nn.Module):
    """Parallel branches -> concat -> linear 1x1x1 conv + BN -> STCAM -> + shortcut -> ReLU."""

    def __init__(self, channels: int, branches: Sequence[nn.Module], cat_channels: int,
                 attention: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.project = ConvBNReLU3d(cat_channels, channels, 1, relu=False)
        self.attention = attention
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(torch.cat([b(x) for b in self.branches], dim=1))
        return self.relu(x + self.attention(y))


class _Reduction(nn.Module):
    """Max-pool branch + strided conv branches -> concat -> STCAM (inserted in the path)."""

    def __init__(self, pool: nn.Module, branches: Sequence[nn.Module], attention: nn.Module):
        super().__init__()
        self.pool = pool
        self.branches = nn.ModuleList(branches)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(torch.cat([self.pool(x), *(b(x) for b in self.branches)], dim=1))


class STCAMNet(nn.Module):
    """3D-Inception-ResNet + STCAM.

    Parameters
    ----------
    num_classes : int
        Number of expression classes (7 for CK+, 6 for Oulu-CASIA / MMI).
    attention : bool
        False builds the paper's attention-free baseline with the same widths.
    dropout : float
        Dropout before each classifier layer.

    ``forward(x)``: ``x : (B, 3, T, H, W)`` float32 (the paper: T = 7, H = W = 224) ->
    ``(B, num_classes)`` float32 logits.  ``features(x)`` -> ``(B, 1072)``.  Any T >= 1 and
    H, W >= 16 run (the tests compare attention on/off on 48x48 clips).
    """

    def __init__(self, num_classes: int = 7, attention: bool = True, dropout: float = 0.5):
        super().__init__()
        U, S = ConvBNReLU3d, nn.Sequential
        s12 = (1, 2, 2)  # stride (temporal 1, spatial 2)
        self.stem = S(
            U(3, 32, (3, 7, 7), stride=s12),                       # 32 x T x 112 x 112
            nn.MaxPool3d((1, 3, 3), s12, (0, 1, 1)),               # 32 x T x 56 x 56
            U(32, 64, 1),
            U(64, 128, 3, stride=s12),                             # 128 x T x 28 x 28
        )
        self.block_a = _InceptionResNet(128, [
            U(128, 32, 1),
            S(U(128, 32, 1), U(32, 32, 3)),
            S(U(128, 32, 1), U(32, 48, 3), U(48, 64, 3)),
        ], 128, _attention(attention, 128, STAM_KERNEL_A))
        self.reduction_a = _Reduction(nn.MaxPool3d((1, 3, 3), s12, (0, 1, 1)), [
            U(128, 160, 3, stride=s12),
            S(U(128, 64, 1), U(64, 64, 3), U(64, 160, 3, stride=s12)),
        ], _attention(attention, 448, STAM_KERNEL_OTHER))             # 448 x T x 14 x 14
        self.block_b = _InceptionResNet(448, [
            U(448, 96, 1),
            S(U(448, 64, 1), U(64, 80, (1, 1, 7)), U(80, 96, (1, 7, 1)), U(96, 96, (3, 1, 1))),
        ], 192, _attention(attention, 448, STAM_KERNEL_OTHER))
        self.reduction_b = _Reduction(nn.MaxPool3d(3, 2, 1), [
            S(U(448, 128, 1), U(128, 320, 3, stride=2)),
            S(U(448, 128, 1), U(128, 160, 3), U(160, 304, 3, stride=2)),
        ], _attention(attention, FEATURE_DIM, STAM_KERNEL_OTHER))     # 1072 x ceil(T/2) x 7 x 7
        self.block_c = _InceptionResNet(FEATURE_DIM, [
            U(FEATURE_DIM, 192, 1),
            S(U(FEATURE_DIM, 192, 1), U(192, 224, (1, 1, 3)), U(224, 256, (1, 3, 1)),
              U(256, 256, (3, 1, 1))),
        ], 448, _attention(attention, FEATURE_DIM, STAM_KERNEL_OTHER))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(FEATURE_DIM, 512), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(512, num_classes))
        init_kaiming_(self)  # He init for the convolutions, as the shared backbones
        for m in self.classifier:
            if isinstance(m, nn.Linear):  # sec. 4.2: FC layers Xavier-initialised
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, 1072)`` pooled spatial-temporal features."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"STCAM expects (B, 3, T, H, W), got {tuple(x.shape)}")
        x = self.stem(x)
        x = self.block_a(x)
        x = self.reduction_a(x)
        x = self.block_b(x)
        x = self.reduction_b(x)
        x = self.block_c(x)
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("stcam")
def stcam(num_classes: int = 7, attention: bool = True, dropout: float = 0.5) -> STCAMNet:
    """Registry entry: ``create_model("stcam", num_classes=7)``."""
    return STCAMNet(num_classes=num_classes, attention=attention, dropout=dropout)
