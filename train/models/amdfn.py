"""AMDFN: attention-based multichannel data fusion network (seed amdfn, III-C..F).

Input: the eight attribute maps of one scan stacked at data level, (B, 8, 112, 112)
float32 in the store's channel order Nx, Ny, Nz, D, C, R, G, B
(``data_schema.channels.CHANNELS``).  Output: (B, num_classes) logits.

    x -> IR-18 stem (3x3 conv 8->64) -> F0 64x112x112 -> pool 7x7, 1x1 conv -> S0
      -> stage1 64x56x56   -> pool 7x7, 1x1 conv 64->512  -> F1
      -> stage2 128x28x28  -> pool 7x7, 1x1 conv 128->512 -> F2
      -> stage3 256x14x14  -> pool 7x7, 1x1 conv 256->512 -> F3
      -> stage4 512x7x7                                   -> F4
    E = LAM(F1..F4) (B, 4, 512, 7, 7) -> 1x1 conv 2048->512
    3x3 conv(E + F4 + S0) -> IR-18 output layer (512-d) -> FC -> logits

* Data-level fusion (III-C): the backbone's first convolution takes all 8 channels.
* Backbone (III-F): IR-18, the face-recognition "ResNet18-variant" (see
  ``backbones.IResNet``), kept with its face-embedding output layer (BN, dropout, FC
  25088 -> 512, BN) so that a face-pretrained IR-18 checkpoint (MS-Celeb-1M in the
  paper) can be loaded into ``model.backbone`` (its 3-channel stem will be reported
  as a shape mismatch: that conv is trained from scratch or adapted by the user).
* Reduction R_i (eq. 9, III-F): each of the first three stage outputs is brought to
  512 x 7 x 7 by a 1x1 convolution to 512 channels and average pooling to 7 x 7.
* LAM (III-D, eq. 10-11): F_cat = (F1..F4) as (B, 4, 512, 7, 7); G_k = mean of layer
  k over C, H, W; weights w = sigmoid(FC(ReLU(FC(G)))) in (0, 1)^4; E_k = w_k F_k.
* Shallow-feature sum (III-D): E (merged to 512 channels), the last layer F4 and the
  shallow feature S0 are summed element-wise, followed by one convolution, then the
  classifier.

Departures from the paper, and why:

1. Reduction order: we pool first, then apply the 1x1 conv (the paper: conv, then
   pooling).  Averaging and a 1x1 convolution are both linear and commute exactly, so
   the result is the same, at 1/64, 1/16 and 1/4 of the cost.  The paper's "padding of
   1" on a 1x1 conv would only add a border of bias values that the pooling then mixes
   in; we use no padding.  A BatchNorm follows each reduction so that the four layers
   enter the LAM (whose gate reads their means) and the sum on the same scale.
2. LAM gate: eq. 11 written literally, sigmoid(ReLU(FC(G))), confines every weight to
   [0.5, 1) and gives no gradient where FC(G) < 0.  We read it as squeeze-and-excitation
   [49], which the paper names as its model: FC -> ReLU -> FC -> sigmoid (N = 4, no
   reduction).  ``lam_gate="literal"`` builds eq. 11 as written; ``use_lam=False``
   gives Table III's "without LAM" (all weights 1).
3. E has N x C = 2048 channels but is summed element-wise with 512-channel maps; the
   paper does not say how it is merged.  We use a 1x1 conv 2048 -> 512 + BN (the
   layer-attention design the module follows concatenates the weighted layers and
   convolves them back to C channels).
4. The shallow feature's "pooling layer and convolutional layer": average pooling to
   7 x 7 and a 1x1 conv 64 -> 512 + BN (kernel not given; 1x1 as for the other
   reductions).
5. "A convolution layer is followed": a 3x3 conv 512 -> 512 + BN + PReLU on the sum;
   then the IR-18 output layer (512-d embedding) and FC 512 -> num_classes (the paper
   "changes the output of the last FC layer to 16 or 6").  The loss applies softmax.
6. Parameter count: 27.7 M for num_classes = 16 against Table II's 29,748,708.  The
   paper does not give the kernel sizes of the merge, shallow and final convolutions,
   which is where a difference of this size (2 M = one 3x3 512->512 conv and a bit)
   lives; the backbone with its output layer alone is 24.0 M.
7. No MS-Celeb-1M pretraining here (no downloads): weights start from He init unless
   the user loads a checkpoint with ``train.models.load_pretrained``.

Why by hand: no library ships AMDFN, its LAM or an IR-18 (torchvision is not a dependency).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from data_schema.channels import CHANNELS
from train.models import register
from train.models.backbones import conv_bn, init_kaiming_, ir18

#: Table II: parameters of data-level fusion (FaceScape subset, 16 classes).
PAPER_PARAMETERS = 29_748_708
#: Spatial side every layer is reduced to (III-F: 7 x 7 x 512).
LAYER_SIDE = 7
LAYER_CHANNELS = 512


@dataclass(frozen=True)
class AMDFNOutput:
    """logits : (B, num_classes); embedding : (B, 512) before the classifier;
    layer_weights : (B, 4) LAM weights of F1..F4 in (0, 1) (all 1 without LAM)."""

    logits: torch.Tensor
    embedding: torch.Tensor
    layer_weights: torch.Tensor


class LayerAttention(nn.Module):
    """LAM (eq. 10-11): per-sample weights of N layers from their global means.

    ``forward(f_cat)``: f_cat (B, N, C, H, W) -> (weighted (B, N, C, H, W), weights (B, N)).
    gate "se": sigmoid(FC(ReLU(FC(G)))); "literal": sigmoid(ReLU(FC(G))) as eq. 11 reads.
    """

    def __init__(self, n_layers: int, gate: str = "se"):
        super().__init__()
        if gate == "se":
            self.fc = nn.Sequential(nn.Linear(n_layers, n_layers), nn.ReLU(inplace=True),
                                    nn.Linear(n_layers, n_layers), nn.Sigmoid())
        elif gate == "literal":
            self.fc = nn.Sequential(nn.Linear(n_layers, n_layers), nn.ReLU(inplace=True), nn.Sigmoid())
        else:
            raise ValueError(f"lam_gate must be 'se' or 'literal', got {gate!r}")

    def forward(self, f_cat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = f_cat.flatten(2).mean(dim=2)  # eq. 10: mean over C*H*W per layer
        w = self.fc(g)
        return f_cat * w[:, :, None, None, None], w


class AMDFN(nn.Module):
    """AMDFN for (B, 8, 112, 112) attribute maps -> (B, num_classes) logits.

    Parameters
    ----------
    num_classes : 16 (FaceScape subset) or 6 (Bosphorus) in the paper.
    in_channels : channels fused at data level (8; fewer for single-map ablations).
    use_lam : False gives the "without LAM" ablation (weights fixed to 1).
    lam_gate : "se" (default) or "literal" (see the module docstring, departure 2).
    dropout : dropout probability in the IR-18 output layer.
    """

    #: per-sample input shapes by name, for the data loaders.
    input_spec: ClassVar[dict[str, tuple[int, ...]]] = {"maps": (len(CHANNELS), 112, 112)}

    def __init__(self, num_classes: int = 16, in_channels: int = len(CHANNELS), use_lam: bool = True,
                 lam_gate: str = "se", dropout: float = 0.5):
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be positive, got {num_classes}, {in_channels}")
        self.backbone = ir18(in_channels, embedding_dim=LAYER_CHANNELS, dropout=dropout)
        widths = self.backbone.widths
        pool = nn.AdaptiveAvgPool2d(LAYER_SIDE)  # exact k x k averaging at 112 input
        self.reduce = nn.ModuleList(
            nn.Sequential(pool, conv_bn(w, LAYER_CHANNELS, 1, 1, 0)) for w in widths[:-1])
        self.shallow = nn.Sequential(pool, conv_bn(widths[0], LAYER_CHANNELS, 1, 1, 0))
        n_layers = len(widths)
        self.lam = LayerAttention(n_layers, lam_gate) if use_lam else None
        self.merge = conv_bn(n_layers * LAYER_CHANNELS, LAYER_CHANNELS, 1, 1, 0)
        self.post = nn.Sequential(conv_bn(LAYER_CHANNELS, LAYER_CHANNELS, 3), nn.PReLU(LAYER_CHANNELS))
        self.classifier = nn.Linear(LAYER_CHANNELS, num_classes)
        for part in (self.reduce, self.shallow, self.merge, self.post):
            init_kaiming_(part)
        if self.lam is not None:
            # Start the gate near the middle of the sigmoid (weights ~0.5 - 0.7), not saturated.
            for m in self.lam.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.1)
                    nn.init.zeros_(m.bias)

    def forward_all(self, x: torch.Tensor) -> AMDFNOutput:
        """x (B, in_channels, 112, 112) float32 -> :class:`AMDFNOutput`."""
        want = (self.backbone.in_channels, *self.input_spec["maps"][1:])
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"AMDFN expects maps of shape (B, {', '.join(map(str, want))}), "
                             f"got {tuple(x.shape)}")
        feats = self.backbone.forward_stages(x)
        layers = [r(s) for r, s in zip(self.reduce, feats.stages[:-1])] + [feats.stages[-1]]
        f_cat = torch.stack(layers, dim=1)  # (B, N, 512, 7, 7)
        if self.lam is not None:
            e, w = self.lam(f_cat)
        else:
            e, w = f_cat, f_cat.new_ones(f_cat.shape[:2])
        merged = self.merge(e.flatten(1, 2))
        fused = self.post(merged + feats.stages[-1] + self.shallow(feats.shallow))
        emb = self.backbone.embed(fused)
        return AMDFNOutput(self.classifier(emb), emb, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_channels, 112, 112) float32 -> logits (B, num_classes)."""
        return self.forward_all(x).logits


@register("amdfn")
def amdfn(num_classes: int = 16, in_channels: int = len(CHANNELS), use_lam: bool = True,
          lam_gate: str = "se", dropout: float = 0.5) -> AMDFN:
    """Registry entry: ``create_model("amdfn", num_classes=6)``."""
    return AMDFN(num_classes, in_channels, use_lam, lam_gate, dropout)
