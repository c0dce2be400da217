"""Shared convolutional building blocks of the training stage's models.

Every model in ``train.models`` builds on these, so their names, signatures and
``state_dict`` key layouts are kept stable:

* conv-BN(-ReLU) helpers and two initialisers;
* ``IResNet`` / :func:`ir18`: the InsightFace-style "improved residual" ResNet-18
  (IR-18) that AMDFN (seed amdfn, III-F "ResNet18-variant [55]") uses: a 3x3
  stride-1 stem, BN-conv-BN-PReLU-conv-BN units with the stride on the second conv,
  four stages 64/128/256/512 wide; at 112 x 112 input the stages give 56, 28, 14 and
  7 pixels, so the trunk ends in 512 x 7 x 7.  Module names follow the layout of the
  public face-recognition checkpoints (``input_layer``, ``body.<i>.res_layer``,
  ``body.<i>.shortcut_layer``, ``output_layer``) so that a face-pretrained IR-18
  state dict loads through :func:`train.models.load_pretrained`;
* :func:`resnet50_trunk`: the bottleneck ResNet-50 (3, 4, 6, 3 units; stride on the
  3x3 conv) ending in 2048 channels at 1/32 of the input size (HACN's spatial
  feature extractor).  Names follow the common ImageNet ResNet layout (``conv1``,
  ``bn1``, ``layer1``.. ``layer4``, ``downsample``) for the same reason;
* VGG16-BN pieces: :data:`VGG16_BN_CFG` and :func:`vgg16_bn_features`, an
  ``nn.Sequential`` whose indices match the usual ``features.<i>`` layout of
  VGG16-BN checkpoints (FFNet-M's texture branch starts from a pretrained one).

Written by hand because the project has no torchvision (and no weights are
downloaded): these are the standard architectures, written in plain ``torch.nn``.
Nothing here knows about stores or datasets; all tensors are (B, C, H, W) float32.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "VGG16_BN_CFG", "Bottleneck", "IRBlock", "IRFeatures", "IResNet", "ResNet50Trunk",
    "conv_bn", "conv_bn_relu", "conv_indices", "init_kaiming_", "init_normal_", "ir18",
    "resnet50_trunk", "vgg16_bn_features",
]


# --------------------------------------------------------------------------- helpers

def _same_padding(kernel_size: int) -> int:
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
    return kernel_size // 2


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
            padding: int | None = None) -> nn.Sequential:
    """Conv2d (no bias: BN follows) + BatchNorm2d.

    ``padding=None`` means "same" padding for odd kernels (``kernel_size // 2``), so at
    stride 1 the output keeps the input's H x W; at stride s it is ceil(H / s).
    Input (B, in_channels, H, W) -> output (B, out_channels, H', W').
    """
    pad = _same_padding(kernel_size) if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None) -> nn.Sequential:
    """Conv2d + BatchNorm2d + ReLU (see :func:`conv_bn` for padding and shapes)."""
    block = conv_bn(in_channels, out_channels, kernel_size, stride, padding)
    block.append(nn.ReLU(inplace=True))
    return block


def init_kaiming_(module: nn.Module) -> nn.Module:
    """He-normal init (fan_out, ReLU gain) for conv weights; BN weight 1, bias 0;
    linear weights N(0, 0.01^2), bias 0.  Works in place on every submodule; returns it."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """FFNet-M's init (seed ffnet_m, 3.2): conv weights N(0, std^2), bias 0; BN weights
    N(1, std^2), bias 0.  Linear layers are left as torch initialised them (the paper:
    "random initialization" for the FC layers).  In place; returns the module."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


# --------------------------------------------------------------------------- IR-18

class IRBlock(nn.Module):
    """One IR unit: ``res = BN-conv3x3-BN-PReLU-conv3x3(stride)-BN``, ``out = res + short``.

    The shortcut is a strided identity when the width does not change (a 1x1 max-pool
    with that stride, which has no parameters) and a 1x1 conv + BN otherwise.
    Input (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride)).
    No activation after the sum (the IR design: the next unit starts with BN).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = conv_bn(in_channels, out_channels, 1, stride, 0)
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRFeatures(NamedTuple):
    """What :meth:`IResNet.forward_stages` returns.

    shallow : (B, 64, H, W) the stem output (AMDFN's shallow feature F0, eq. 8).
    stages : tuple of the four stage outputs, (B, 64, H/2, W/2), (B, 128, H/4, W/4),
        (B, 256, H/8, W/8), (B, 512, H/16, W/16); at H = W = 112: 56, 28, 14, 7.
    """

    shallow: torch.Tensor
    stages: tuple[torch.Tensor, ...]


class IResNet(nn.Module):
    """InsightFace-style IR ResNet trunk (+ optional face-embedding output layer).

    Parameters
    ----------
    in_channels : input channels (3 for RGB; AMDFN uses 8).
    units : IR units per stage; (2, 2, 2, 2) is IR-18.
    widths : channels per stage.
    embedding_dim : if not None, ``output_layer`` = BN2d, Dropout, Flatten,
        Linear(widths[-1] * S * S, embedding_dim), BN1d, the face-recognition head,
        where S = ``input_size`` / 16.  None: no output layer.
    dropout : dropout probability inside ``output_layer``.
    input_size : the square input side the output layer is sized for (112).

    ``forward(x)``: x (B, in_channels, H, W) float32 -> (B, widths[-1], H/16, W/16);
    at 112 x 112 input: (B, 512, 7, 7).  ``embed(feat)`` applies ``output_layer``.
    """

    def __init__(self, in_channels: int = 3, units: tuple[int, ...] = (2, 2, 2, 2),
                 widths: tuple[int, ...] = (64, 128, 256, 512), embedding_dim: int | None = 512,
                 dropout: float = 0.5, input_size: int = 112):
        super().__init__()
        if len(units) != len(widths) or not units:
            raise ValueError(f"units {units} and widths {widths} must be non-empty and of equal length")
        self.in_channels = in_channels
        self.widths = tuple(widths)
        self.input_layer = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
        blocks, ends = [], []
        prev = widths[0]
        for n, width in zip(units, widths):
            for k in range(n):
                blocks.append(IRBlock(prev, width, 2 if k == 0 else 1))
                prev = width
            ends.append(len(blocks) - 1)
        # One flat Sequential (not one per stage) keeps the checkpoint key layout body.<i>.
        self.body = nn.Sequential(*blocks)
        self.stage_ends = tuple(ends)
        self.output_layer: nn.Sequential | None = None
        if embedding_dim is not None:
            side = input_size // 2 ** len(units)
            self.output_layer = nn.Sequential(
                nn.BatchNorm2d(prev),
                nn.Dropout(dropout),
                nn.Flatten(),
                nn.Linear(prev * side * side, embedding_dim),
                nn.BatchNorm1d(embedding_dim),
            )
        init_kaiming_(self)

    def forward_stages(self, x: torch.Tensor) -> IRFeatures:
        """Stem output and every stage's output (see :class:`IRFeatures`)."""
        shallow = self.input_layer(x)
        out, stages = shallow, []
        ends = set(self.stage_ends)
        for i, block in enumerate(self.body):
            out = block(out)
            if i in ends:
                stages.append(out)
        return IRFeatures(shallow, tuple(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))

    def embed(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, 512, 7, 7) trunk output -> (B, embedding_dim) through ``output_layer``."""
        if self.output_layer is None:
            raise RuntimeError("this IResNet was built with embedding_dim=None: it has no output layer")
        return self.output_layer(feat)


def ir18(in_channels: int = 3, embedding_dim: int | None = 512, dropout: float = 0.5,
         input_size: int = 112) -> IResNet:
    """IR-18: :class:`IResNet` with units (2, 2, 2, 2) and widths 64/128/256/512.

    x (B, in_channels, 112, 112) float32 -> trunk (B, 512, 7, 7).
    """
    return IResNet(in_channels, (2, 2, 2, 2), (64, 128, 256, 512), embedding_dim, dropout, input_size)


# --------------------------------------------------------------------------- ResNet-50

class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 (width) - 3x3 (width, stride) - 1x1 (4 * width), BN after
    each, ReLU after the first two and after the sum; projection shortcut (1x1 conv +
    BN, ``downsample``) when the stride or the width changes.

    Input (B, in_channels, H, W) -> (B, 4 * width, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = conv_bn(in_channels, out_channels, 1, stride, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + short)


class ResNet50Trunk(nn.Module):
    """ResNet-50 without pooling and classifier.

    ``forward(x)``: x (B, in_channels, H, W) float32 -> (B, 2048, H/32, W/32) feature
    map (7 x 7 at 224 input); ``out_channels`` = 2048.  ``forward_stages(x)`` returns
    the four stage outputs (256, 512, 1024, 2048 channels at H/4, H/8, H/16, H/32).
    """

    out_channels = 2048

    def __init__(self, in_channels: int = 3, units: tuple[int, int, int, int] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        prev = 64
        for i, (n, width) in enumerate(zip(units, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = []
            for k in range(n):
                blocks.append(Bottleneck(prev, width, stride if k == 0 else 1))
                prev = width * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        init_kaiming_(self)

    def forward_stages(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            stages.append(out)
        return tuple(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]


def resnet50_trunk(in_channels: int = 3) -> ResNet50Trunk:
    """ResNet-50 trunk: x (B, in_channels, H, W) -> (B, 2048, H/32, W/32) float32."""
    return ResNet50Trunk(in_channels)


# --------------------------------------------------------------------------- VGG16-BN

#: VGG16 configuration "D": conv widths, "M" = 2x2 max-pool stride 2 (13 convs, 5 pools).
VGG16_BN_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_bn_features(in_channels: int = 3, cfg: tuple[int | str, ...] = VGG16_BN_CFG) -> nn.Sequential:
    """VGG16-BN convolutional part: per conv entry Conv3x3(pad 1, bias) + BN + ReLU, per
    "M" a 2x2 max-pool.  Indices match the usual ``features.<i>`` checkpoint layout.

    x (B, in_channels, H, W) -> (B, 512, floor(H / 32), floor(W / 32)); 3 x 3 at 112.
    """
    layers: list[nn.Module] = []
    prev = in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(prev, int(item), 3, 1, 1), nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
            prev = int(item)
    return init_kaiming_(nn.Sequential(*layers))


def conv_indices(seq: nn.Sequential) -> list[int]:
    """Indices of the ``nn.Conv2d`` layers of a Sequential, in order (0-based list;
    element k is the (k+1)-th conv)."""
    return [i for i, m in enumerate(seq) if isinstance(m, nn.Conv2d)]
