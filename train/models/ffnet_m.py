"""FFNet-M: feature fusion network with masks for 2D+3D FER (seed ffnet_m, 2.3).

Inputs (one scan): depth (B, 1, 112, 112), normals (B, 3, 112, 112), texture
(B, 3, 112, 112), all float32, and the two landmark masks of ``preprocess.masks``:
mask56 (B, 56, 56) and mask28 (B, 28, 28), float32 weights in [0, 1] (a (B, 1, S, S)
shape is accepted too).  Output: (B, num_classes) logits.

* Masked residual (2.3, Fig. 3, after Hasani & Mahoor [18]): the masked convolution
  becomes a residual block whose skip input is the feature map multiplied by the mask,
  ``y = ReLU(BN(conv(x)) + x * mask)``; the convolution keeps width and size, so the
  skip needs no projection and the mask (one channel) is broadcast over channels.
* F3DNet-M (one for depth, one for normals; they differ only in input channels):
  six conv layers, the first two 5x5, the rest 3x3, BN after each, four max-pools;
  mask-1 enters at the 2nd conv (56 x 56 features), mask-2 at the 4th (28 x 28):

      conv1 5x5 (in->64) 112² ─ pool ─ conv2 5x5 (64->64) 56² [mask-1] ─ pool
      ─ conv3 3x3 (64->128) 28² ─ conv4 3x3 (128->128) 28² [mask-2] ─ pool
      ─ conv5 3x3 (128->256) 14² ─ pool ─ conv6 3x3 (256->512, stride 2) 7² -> 512 x 4 x 4

  Initialised as 3.2 says: conv N(0, 0.02²), BN weight N(1, 0.02²), biases 0.
* VGG16-BN-M (texture): VGG16-BN's 13 convolutions with mask-1 at the 4th conv
  (conv2_2, 128 x 56 x 56) and mask-2 at the 6th (conv3_2, 256 x 28 x 28), output
  512 x 3 x 3 at 112 input as the paper states.  Its ``features`` keep the usual
  VGG16-BN index layout, so an ImageNet VGG16-BN state dict the user supplies loads
  with ``load_pretrained(model.texture, path, strict=False)`` (3.2 initialises from it).
* Fusion: per branch global average pooling, FC1 512 -> 256, FC2 256 -> 128 (ReLU
  after each), concatenation to 384, one FC to the classes (softmax in the loss).

Departures from the paper, and why:

1. F3DNet-M widths and the place of the fifth downsampling are ours: the paper gives
   the layer counts, kernels, mask positions, the 512-channel output and its 4 x 4
   size but not Fig. 1's widths.  Four 2x2 pools take 112 to 7; 4 x 4 needs one more
   halving, which we put in the last conv (stride 2, pad 1: 7 -> 4) so that mask-1
   and mask-2 meet exactly 56 x 56 and 28 x 28 features.  Convs have no bias (BN follows).
2. The ReLU after FC1/FC2 and the absence of dropout: the paper names only GAP and the
   two FC layers.
3. No ImageNet initialisation here (no downloads): VGG16-BN-M starts from He init
   unless the user loads weights.
4. ``masked=False`` removes the residual mask blocks (plain conv-BN-ReLU), which is the
   paper's FFNet ablation (Tables 1-4); the masks are then ignored.

Why by hand: no library ships FFNet-M; torchvision (VGG16-BN) is not a dependency.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from train.models import register
from train.models.backbones import (
    conv_bn_relu,
    conv_indices,
    init_normal_,
    vgg16_bn_features,
)

MASK1_SIZE = 56
MASK2_SIZE = 28
INPUT_SIZE = 112
#: F3DNet-M conv widths (ours: the paper gives only the last, 512).
F3D_WIDTHS = (64, 64, 128, 128, 256, 512)
BRANCH_DIM = 128  # after FC2, per branch; 3 x 128 = 384 fused


def _mask4d(mask: torch.Tensor, size: int, name: str, batch: int) -> torch.Tensor:
    """(B, S, S) or (B, 1, S, S) -> (B, 1, S, S); checks the size."""
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or tuple(mask.shape) != (batch, 1, size, size):
        raise ValueError(f"{name} must have shape ({batch}, {size}, {size}) or "
                         f"({batch}, 1, {size}, {size}), got {tuple(mask.shape)}")
    return mask


def masked_residual(conv: nn.Module, bn: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``ReLU(bn(conv(x)) + x * mask)``; plain ``ReLU(bn(conv(x)))`` when mask is None.

    x (B, C, S, S), mask (B, 1, S, S); conv must keep C and S (checked by the add).
    """
    out = bn(conv(x))
    if mask is not None:
        out = out + x * mask
    return torch.relu(out)


class F3DNetM(nn.Module):
    """F3DNet-M: (B, in_channels, 112, 112) + masks -> (B, 512, 4, 4) features.

    ``masked=False`` builds the mask-free F3DNet (the masks are then ignored).
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...] = F3D_WIDTHS, masked: bool = True):
        super().__init__()
        if len(widths) != 6 or widths[1] != widths[0] or widths[3] != widths[2]:
            raise ValueError(f"F3DNet-M needs six widths with w2 == w1 and w4 == w3 (masked "
                             f"residuals keep the width), got {widths}")
        self.masked = masked
        w = widths
        # conv and BN kept apart where a masked skip sits between BN and ReLU.
        self.conv1 = conv_bn_relu(in_channels, w[0], 5)
        self.conv2, self.bn2 = nn.Conv2d(w[0], w[1], 5, 1, 2, bias=False), nn.BatchNorm2d(w[1])
        self.conv3 = conv_bn_relu(w[1], w[2], 3)
        self.conv4, self.bn4 = nn.Conv2d(w[2], w[3], 3, 1, 1, bias=False), nn.BatchNorm2d(w[3])
        self.conv5 = conv_bn_relu(w[3], w[4], 3)
        self.conv6 = conv_bn_relu(w[4], w[5], 3, stride=2)
        self.pool = nn.MaxPool2d(2, 2)
        self.out_channels = w[5]
        init_normal_(self, 0.02)

    def forward(self, x: torch.Tensor, mask56: torch.Tensor | None, mask28: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, 112, 112); masks (B, 1, 56, 56), (B, 1, 28, 28) -> (B, 512, 4, 4)."""
        m1, m2 = (mask56, mask28) if self.masked else (None, None)
        x = self.pool(self.conv1(x))                           # 56
        x = self.pool(masked_residual(self.conv2, self.bn2, x, m1))  # 28
        x = self.conv3(x)
        x = self.pool(masked_residual(self.conv4, self.bn4, x, m2))  # 14
        x = self.pool(self.conv5(x))                           # 7
        return self.conv6(x)                                   # 4


class VGG16BNM(nn.Module):
    """VGG16-BN-M: (B, 3, 112, 112) + masks -> (B, 512, 3, 3) features.

    ``features`` is the plain VGG16-BN Sequential (checkpoint-compatible indices); the
    forward pass turns its 4th and 6th conv into masked residual blocks.
    """

    #: 1-based positions of the masked convs among the 13 (seed: "fourth and sixth").
    MASKED_CONVS = (4, 6)

    def __init__(self, in_channels: int = 3, masked: bool = True):
        super().__init__()
        self.features = vgg16_bn_features(in_channels)
        convs = conv_indices(self.features)
        self.masked = masked
        self._mask_at = {convs[k - 1]: j for j, k in enumerate(self.MASKED_CONVS)}
        for i in self._mask_at:
            conv = self.features[i]
            if conv.in_channels != conv.out_channels:
                raise ValueError(f"masked conv at features.{i} changes width")  # cannot happen for VGG16
        self.out_channels = 512

    def forward(self, x: torch.Tensor, mask56: torch.Tensor | None, mask28: torch.Tensor | None) -> torch.Tensor:
        """x (B, 3, 112, 112); masks (B, 1, 56, 56), (B, 1, 28, 28) -> (B, 512, 3, 3)."""
        masks = (mask56, mask28) if self.masked else (None, None)
        layers = self.features
        i = 0
        while i < len(layers):
            j = self._mask_at.get(i)
            if j is not None and masks[j] is not None:
                # conv, BN, ReLU at i, i+1, i+2 become one masked residual block
                x = masked_residual(layers[i], layers[i + 1], x, masks[j])
                i += 3
            else:
                x = layers[i](x)
                i += 1
        return x


def _head(in_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(in_dim, 256), nn.ReLU(inplace=True),
                         nn.Linear(256, BRANCH_DIM), nn.ReLU(inplace=True))


@dataclass(frozen=True)
class FFNetMOutput:
    """logits : (B, num_classes); fused : (B, 384) = [depth 128 | normals 128 | texture 128]."""

    logits: torch.Tensor
    fused: torch.Tensor


class FFNetM(nn.Module):
    """FFNet-M: two F3DNet-M (depth, normals) + VGG16-BN-M (texture), fused at 384-d.

    Parameters
    ----------
    num_classes : 6 in the paper (BU-3DFE, Bosphorus).
    masked : False builds FFNet (no mask blocks; masks are ignored and may be None).
    """

    #: per-sample input shapes by name, for the data loaders.
    input_spec: ClassVar[dict[str, tuple[int, ...]]] = {
        "depth": (1, INPUT_SIZE, INPUT_SIZE), "normals": (3, INPUT_SIZE, INPUT_SIZE),
        "texture": (3, INPUT_SIZE, INPUT_SIZE), "mask56": (MASK1_SIZE, MASK1_SIZE),
        "mask28": (MASK2_SIZE, MASK2_SIZE)}

    def __init__(self, num_classes: int = 6, masked: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.masked = masked
        self.depth = F3DNetM(1, masked=masked)
        self.normals = F3DNetM(3, masked=masked)
        self.texture = VGG16BNM(3, masked=masked)
        self.depth_head = _head(self.depth.out_channels)
        self.normals_head = _head(self.normals.out_channels)
        self.texture_head = _head(self.texture.out_channels)
        self.classifier = nn.Linear(3 * BRANCH_DIM, num_classes)

    def _check(self, name: str, t: torch.Tensor, batch: int) -> None:
        want = (batch, *self.input_spec[name])
        if tuple(t.shape) != want:
            raise ValueError(f"FFNet-M input {name} must have shape {want}, got {tuple(t.shape)}")

    def forward_all(self, depth: torch.Tensor, normals: torch.Tensor, texture: torch.Tensor,
                    mask56: torch.Tensor | None = None, mask28: torch.Tensor | None = None) -> FFNetMOutput:
        """See :meth:`forward`; returns :class:`FFNetMOutput`."""
        b = depth.shape[0]
        for name, t in (("depth", depth), ("normals", normals), ("texture", texture)):
            self._check(name, t, b)
        if self.masked:
            if mask56 is None or mask28 is None:
                raise ValueError("FFNet-M (masked=True) needs mask56 and mask28")
            mask56 = _mask4d(mask56, MASK1_SIZE, "mask56", b).to(depth)
            mask28 = _mask4d(mask28, MASK2_SIZE, "mask28", b).to(depth)
        fused = torch.cat([self.depth_head(self.depth(depth, mask56, mask28)),
                           self.normals_head(self.normals(normals, mask56, mask28)),
                           self.texture_head(self.texture(texture, mask56, mask28))], dim=1)
        return FFNetMOutput(self.classifier(fused), fused)

    def forward(self, depth: torch.Tensor, normals: torch.Tensor, texture: torch.Tensor,
                mask56: torch.Tensor | None = None, mask28: torch.Tensor | None = None) -> torch.Tensor:
        """depth (B, 1, 112, 112), normals (B, 3, 112, 112), texture (B, 3, 112, 112),
        mask56 (B, 56, 56), mask28 (B, 28, 28), float32 -> logits (B, num_classes)."""
        return self.forward_all(depth, normals, texture, mask56, mask28).logits


@register("ffnet_m")
def ffnet_m(num_classes: int = 6, masked: bool = True) -> FFNetM:
    """Registry entry: ``create_model("ffnet_m", num_classes=6)``."""
    return FFNetM(num_classes, masked)
