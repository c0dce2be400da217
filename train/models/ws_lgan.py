"""WS-LGAN: weakly supervised local-global attention network (seed ws_lgan, section III).

Input ``(B, 1, 48, 48)`` float32: one 48x48 grayscale face (sec. IV-B).  The paper's "last
three frames" of each CK+ / Oulu-CASIA sequence are three separate static samples (981
images for CK+), not a 3-frame stack, so the model sees one frame per sample.

Parts (Fig. 2):

* Attention Map Generator (AMG, III-B): two branches (eyes, mouth), each a DenseNet variant
  (3 dense blocks of 6, 12, 24 layers, 2 transitions) closed by a 1x1 scoring layer and
  global average pooling; the class activation map (CAM) of the 1x1 layer, min-max
  normalised to [0, 1] per map, is the attention map ``A_e`` / ``A_m`` (12x12 for 48x48).
* Feature Extractor (FE): the same DenseNet variant with 6 layers per block -> ``F_g``
  ``(B, C, 12, 12)``.
* Bilinear attention pooling (III-C-1, eq. 1-2): ``F_e = A_e * F_g``, ``F_m = A_m * F_g``.
* Selective Feature Unit (III-D-2, eq. 5-9): ``U = F_e + F_m + F_g``, ``s = GAP(U)``,
  ``z = ReLU(BN(FC(s)))`` with ``d = C / 16``, per-channel softmax over the three branches
  (``E z``, ``M z``, ``G z``), ``V = e * F_e + m * F_m + g * F_g``; then GAP + FC logits.
* Auxiliary FC embeddings of ``F_e``, ``F_m``, ``F_g`` feed the local- and global-sensitive
  contrastive losses (eq. 3-4, margin 10); :func:`ws_lgan_losses` adds the two streams'
  softmax losses (eq. 10).  The paper's two weight-sharing streams are one network applied
  to a batch of ``2N`` images: sample ``i`` and sample ``N + i`` form pair ``i``.

Where this departs from the paper, and why:

* **No CelebA offline.**  The paper trains each AMG branch as a binary eyes-/mouth-attribute
  classifier on CelebA and takes its CAM.  Here the AMG is trained (stage 1) to reproduce
  eye and mouth maps derived from the 68 landmarks instead:
  :func:`landmark_attention_targets` draws Gaussian blobs on the brows + eyes (iBUG 17-26,
  36-47; the paper groups eyebrow attributes with the eyes, Table 1) and on the mouth
  (48-67), and :func:`amg_target_loss` is a per-pixel binary cross-entropy between the
  CAM (as logits) and those maps.  This is dense rather than weak supervision; the CAM
  mechanism and its normalisation are the paper's.  :meth:`WSLGAN.freeze_attention_generator`
  then freezes it for stage 2 (sec. IV-C).  ``forward(x, attention=maps)`` also accepts
  ready-made ``(B, 2, h, w)`` maps (e.g. the landmark targets themselves).
* Unspecified sizes, chosen here: DenseNet growth rate 32, bottleneck 4 x growth,
  compression 0.5, 3x3 stem of 64 channels without down-sampling (the input is only 48
  pixels), 128-d auxiliary embeddings, dropout 0.2 before the classifier.  How a feature
  map becomes the vector that the auxiliary FC layer sees is not said: it is global
  average pooling here, as in the bilinear attention pooling the paper builds on.
* A flat CAM (max = min) cannot be min-max normalised; it becomes an all-ones map (no
  localisation = attend everywhere) instead of NaN.
* The SFU's batch norm needs batches of 2 or more in training mode (as every BN layer).

Why by hand: torchvision (not a dependency) has DenseNet-121 only at ImageNet sizes and
nothing of AMG / SFU / the contrastive losses; the layers are a few lines each.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data_schema.errors import InputError
from train.models import register
from train.models.backbones import init_kaiming_

#: iBUG-68 indices (0-based) of the eye region (brows 17-26 + eyes 36-47) and the mouth.
EYE_LANDMARKS: tuple[int, ...] = (*range(17, 27), *range(36, 48))
MOUTH_LANDMARKS: tuple[int, ...] = tuple(range(48, 68))
#: Outer eye corners (iBUG 36, 45): their distance sets the blob width.
OUTER_EYE_CORNERS = (36, 45)
#: Contrastive margins delta^e = delta^m = delta^g (sec. III-C-2, III-D-1).
CONTRASTIVE_MARGIN = 10.0
INPUT_SIZE = 48


# ----------------------------------------------------------------------------- DenseNet
class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (4k) -> BN-ReLU-Conv3x3 (k); output concatenated to the input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseTrunk(nn.Module):
    """DenseNet variant: 3x3 stem, dense blocks with transitions between, final BN-ReLU.

    ``(B, in_channels, H, W)`` -> ``(B, out_channels, H / 2**(len(blocks)-1), ...)``;
    for 48x48 and 3 blocks: 12x12.
    """

    def __init__(self, in_channels: int = 1, blocks: Sequence[int] = (6, 6, 6),
                 growth: int = 32, stem: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)]
        c = stem
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(_DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:  # transition: compress channels by 2, halve the map
                layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                           nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.body = init_kaiming_(nn.Sequential(*layers))  # He init, as DenseNet
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# ----------------------------------------------------------------------------- AMG
@dataclass(frozen=True)
class AMGOutput:
    """Attention Map Generator output.

    cam : (B, 2, h, w) float32, class activation maps (logit units), channel 0 eyes, 1 mouth.
    logits : (B, 2) float32, image-level branch scores (= spatial mean of ``cam``).
    attention : (B, 2, h, w) float32 in [0, 1], ``cam`` min-max normalised per map.
    """

    cam: torch.Tensor
    logits: torch.Tensor
    attention: torch.Tensor


def normalize_attention(cam: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min-max normalise each map to [0, 1] (sec. III-B); a flat map becomes all ones.

    cam : (B, K, h, w) float -> (B, K, h, w) float in [0, 1], never NaN.
    """
    flat = cam.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    rng = flat.amax(dim=2, keepdim=True) - lo
    ok = rng > eps
    out = torch.where(ok, (flat - lo) / torch.where(ok, rng, torch.ones_like(rng)),
                      torch.ones_like(flat))
    return out.view_as(cam)


class _AMGBranch(nn.Module):
    def __init__(self, blocks: Sequence[int], growth: int):
        super().__init__()
        self.trunk = DenseTrunk(1, blocks, growth)
        # The FC scoring layer written as a 1x1 conv: GAP(conv(F)) = FC(GAP(F)) by linearity,
        # so its output before pooling is the CAM of Zhou et al. directly.
        self.score = nn.Conv2d(self.trunk.out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.trunk(x))  # (B, 1, h, w)


class AttentionMapGenerator(nn.Module):
    """Two CAM branches (eyes, mouth): ``(B, 1, H, W)`` -> :class:`AMGOutput`."""

    def __init__(self, blocks: Sequence[int] = (6, 12, 24), growth: int = 32):
        super().__init__()
        self.eyes = _AMGBranch(blocks, growth)
        self.mouth = _AMGBranch(blocks, growth)

    def forward(self, x: torch.Tensor) -> AMGOutput:
        cam = torch.cat([self.eyes(x), self.mouth(x)], dim=1)
        return AMGOutput(cam=cam, logits=cam.mean(dim=(2, 3)), attention=normalize_attention(cam))


# ----------------------------------------------------------------------------- targets
def landmark_attention_targets(landmarks68: torch.Tensor, size: int | tuple[int, int], *,
                               image_size: int | tuple[int, int] = INPUT_SIZE,
                               sigma_frac: float = 0.15,
                               sigma_px: float | None = None) -> torch.Tensor:
    """Eye and mouth target maps for the AMG, from iBUG-68 landmarks (stands in for CelebA).

    Each map is the maximum over its region's landmarks of an isotropic Gaussian
    ``exp(-d^2 / (2 sigma^2))`` evaluated at the centre of each map cell.

    Parameters
    ----------
    landmarks68 : (B, 68, 2) float tensor, pixels of the input image, (x right, y down),
        pixel centres at integers (the convention of ``preprocess.masks``).
    size : int or (h, w)
        Target map size (the FE map: 12 for a 48x48 input).
    image_size : int or (H, W)
        Size of the image the landmarks refer to; cell (i, j) of the map has its centre at
        image pixel ``x = (j + 0.5) * W / w - 0.5``, ``y = (i + 0.5) * H / h - 0.5``.
    sigma_frac : float
        Blob width as a fraction of the outer-eye-corner distance (iBUG 36-45).
    sigma_px : float, optional
        Fixed blob width in image pixels (overrides ``sigma_frac``).

    Returns
    -------
    (B, 2, h, w) float32 in (0, 1]: channel 0 eyes (brows + eyes), channel 1 mouth.

    Raises
    ------
    InputError
        Wrong shape, NaN/inf coordinates, non-positive sigma, or coinciding outer eye corners.
    """
    h, w = (size, size) if isinstance(size, int) else size
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    lm = torch.as_tensor(landmarks68)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise InputError("landmarks68", f"expected shape (B, 68, 2), got {tuple(lm.shape)}")
    if min(h, w, H, W) < 1:
        raise InputError("landmarks68", f"map size {(h, w)} and image size {(H, W)} must be >= 1")
    lm = lm.to(torch.float32)
    if not torch.isfinite(lm).all():
        raise InputError("landmarks68", "NaN or inf landmark coordinates")
    if sigma_px is not None:
        if not sigma_px > 0:
            raise InputError("landmarks68", f"sigma_px must be > 0, got {sigma_px}")
        sigma = torch.full((lm.shape[0],), float(sigma_px), device=lm.device)
    else:
        iod = (lm[:, OUTER_EYE_CORNERS[0]] - lm[:, OUTER_EYE_CORNERS[1]]).norm(dim=1)
        if not (iod > 1e-6).all():
            raise InputError("landmarks68", "degenerate landmarks: outer eye corners 36 and 45 "
                                            "coincide, cannot size the blobs")
        sigma = sigma_frac * iod
    ys = (torch.arange(h, dtype=torch.float32, device=lm.device) + 0.5) * (H / h) - 0.5
    xs = (torch.arange(w, dtype=torch.float32, device=lm.device) + 0.5) * (W / w) - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (h*w, 2) as (x, y)
    maps = []
    for idx in (EYE_LANDMARKS, MOUTH_LANDMARKS):
        pts = lm[:, list(idx)]  # (B, P, 2)
        d2 = ((pts[:, :, None, :] - grid[None, None]) ** 2).sum(-1)  # (B, P, h*w)
        blob = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2)).amax(dim=1)
        maps.append(blob.view(-1, h, w))
    return torch.stack(maps, dim=1)


def amg_target_loss(cam: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Stage-1 AMG loss: per-pixel binary cross-entropy of ``cam`` (logits) against targets.

    cam : (B, 2, h, w) float, :attr:`AMGOutput.cam`; targets : (B, 2, h, w) in [0, 1]
    (:func:`landmark_attention_targets`).  Returns a scalar (mean over pixels and maps).
    """
    if cam.shape != targets.shape:
        raise ValueError(f"cam {tuple(cam.shape)} and targets {tuple(targets.shape)} differ")
    return F.binary_cross_entropy_with_logits(cam, targets.to(cam.dtype))


# ----------------------------------------------------------------------------- SFU
class SelectiveFeatureUnit(nn.Module):
    """SFU (eq. 5-9): per-channel softmax selection among ``F_e``, ``F_m``, ``F_g``.

    ``forward(fe, fm, fg)`` with three ``(B, C, h, w)`` maps -> ``(V, weights)``:
    ``V : (B, C, h, w)``, ``weights : (B, 3, C)`` (e, m, g; they sum to 1 over dim 1).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        d = max(1, channels // reduction)
        self.squeeze = nn.Sequential(nn.Linear(channels, d, bias=False), nn.BatchNorm1d(d),
                                     nn.ReLU(inplace=True))
        # Rows of E, M, G (eq. 5-7) stacked into one (3C, d) matrix.
        self.select = nn.Linear(d, 3 * channels, bias=False)

    def forward(self, fe: torch.Tensor, fm: torch.Tensor,
                fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = (fe + fm + fg).mean(dim=(2, 3))
        z = self.squeeze(s)
        weights = self.select(z).view(s.shape[0], 3, -1).softmax(dim=1)
        stacked = torch.stack([fe, fm, fg], dim=1)  # (B, 3, C, h, w)
        return (weights[..., None, None] * stacked).sum(dim=1), weights


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class WSLGANOutput:
    """One stream's output for a batch of B images.

    logits : (B, num_classes) float32.
    eyes, mouth, glob : (B, embed_dim) float32, auxiliary embeddings of F_e, F_m, F_g
        (inputs of the contrastive losses).
    attention : (B, 2, h, w) float32 in [0, 1], the maps used (eyes, mouth).
    selection : (B, 3, C) float32, SFU weights (e, m, g).
    """

    logits: torch.Tensor
    eyes: torch.Tensor
    mouth: torch.Tensor
    glob: torch.Tensor
    attention: torch.Tensor
    selection: torch.Tensor


class WSLGAN(nn.Module):
    """WS-LGAN for ``(B, 1, 48, 48)`` grayscale faces.

    Parameters
    ----------
    num_classes : int
        Expression classes (7 CK+, 6 Oulu-CASIA).
    growth : int
        DenseNet growth rate of the AMG and the FE.
    fe_blocks, amg_blocks : sequence of int
        Dense layers per block (paper: FE 6-6-6, AMG 6-12-24).
    embed_dim : int
        Size of the auxiliary contrastive embeddings.
    dropout : float
        Dropout before the classifier.

    ``forward(x, attention=None) -> WSLGANOutput``; ``attention`` (B, 2, h, w) in [0, 1]
    replaces the AMG's maps when given.
    """

    def __init__(self, num_classes: int = 7, growth: int = 32,
                 fe_blocks: Sequence[int] = (6, 6, 6), amg_blocks: Sequence[int] = (6, 12, 24),
                 embed_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        self.amg = AttentionMapGenerator(amg_blocks, growth)
        self.fe = DenseTrunk(1, fe_blocks, growth)
        c = self.fe.out_channels
        self.embed_eyes = nn.Linear(c, embed_dim)
        self.embed_mouth = nn.Linear(c, embed_dim)
        self.embed_global = nn.Linear(c, embed_dim)
        self.sfu = SelectiveFeatureUnit(c)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))
        self._amg_frozen = False

    def freeze_attention_generator(self) -> None:
        """Stage 2 (sec. IV-C): AMG weights fixed, its batch norms kept in eval mode."""
        self._amg_frozen = True
        self.amg.requires_grad_(False)
        self.amg.eval()

    def train(self, mode: bool = True) -> WSLGAN:
        super().train(mode)
        if self._amg_frozen:
            self.amg.eval()
        return self

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None) -> WSLGANOutput:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"WS-LGAN expects (B, 1, H, W) grayscale, got {tuple(x.shape)}")
        fg = self.fe(x)
        if attention is None:
            attention = self.amg(x).attention
        if attention.shape != (fg.shape[0], 2, *fg.shape[2:]):
            raise ValueError(f"attention must be {(fg.shape[0], 2, *fg.shape[2:])}, "
                             f"got {tuple(attention.shape)}")
        attention = attention.to(fg.dtype)
        fe = attention[:, 0:1] * fg  # eq. 1: every channel times A_e
        fm = attention[:, 1:2] * fg  # eq. 2
        v, weights = self.sfu(fe, fm, fg)
        return WSLGANOutput(
            logits=self.classifier(v.mean(dim=(2, 3))),
            eyes=self.embed_eyes(fe.mean(dim=(2, 3))),
            mouth=self.embed_mouth(fm.mean(dim=(2, 3))),
            glob=self.embed_global(fg.mean(dim=(2, 3))),
            attention=attention, selection=weights)


# ----------------------------------------------------------------------------- losses
def contrastive_loss(f1: torch.Tensor, f2: torch.Tensor, same: torch.Tensor,
                     margin: float = CONTRASTIVE_MARGIN, eps: float = 1e-12) -> torch.Tensor:
    """Contrastive loss of eq. 3-4, averaged over pairs.

    f1, f2 : (N, D) float, the two members of each pair; same : (N,) bool, True when the
    pair shares its expression label.  Per pair: ``0.5 * d^2`` if same, else
    ``0.5 * max(0, margin - d)^2``, with ``d`` the Euclidean distance.  Returns a scalar.
    The distance is taken as ``sqrt(max(d^2, eps))`` so the gradient stays finite when
    two features coincide.
    """
    d2 = ((f1 - f2) ** 2).sum(dim=1)
    d = d2.clamp_min(eps).sqrt()
    per_pair = torch.where(same, 0.5 * d2, 0.5 * (margin - d).clamp_min(0) ** 2)
    return per_pair.mean()


@dataclass(frozen=True)
class WSLGANLosses:
    """Terms of eq. 10 (scalars): total = sum of weight x term."""

    total: torch.Tensor
    contrastive_eyes: torch.Tensor
    contrastive_mouth: torch.Tensor
    contrastive_global: torch.Tensor
    softmax_1: torch.Tensor
    softmax_2: torch.Tensor


def ws_lgan_losses(outputs: WSLGANOutput, labels: torch.Tensor, *,
                   margin_local: float = CONTRASTIVE_MARGIN,
                   margin_global: float = CONTRASTIVE_MARGIN,
                   weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0)) -> WSLGANLosses:
    """Total loss of eq. 10 for a batch of ``2N`` images forming N pairs ``(i, N + i)``.

    Parameters
    ----------
    outputs : WSLGANOutput of the model on the 2N images (stream 1 = first N, stream 2 =
        last N: the two weight-sharing streams of Fig. 2).
    labels : (2N,) int64 expression labels.
    margin_local, margin_global : contrastive margins delta^e = delta^m and delta^g.
    weights : (lambda_1 .. lambda_5) for L_C^e, L_C^m, L_C^g, L_S^1, L_S^2 (the paper sets
        lambda_3 = 2 for CK+ and RAF-DB, 5 for Oulu-CASIA, the others 1).
    """
    n2 = labels.shape[0]
    if n2 % 2 or n2 == 0 or outputs.logits.shape[0] != n2:
        raise ValueError(f"need an even, non-empty batch matching the outputs; got {n2} labels "
                         f"and {outputs.logits.shape[0]} outputs")
    if len(weights) != 5:
        raise ValueError(f"weights must hold 5 lambdas, got {len(weights)}")
    n = n2 // 2
    same = labels[:n] == labels[n:]

    def pair(f: torch.Tensor, margin: float) -> torch.Tensor:
        return contrastive_loss(f[:n], f[n:], same, margin)

    terms = (pair(outputs.eyes, margin_local), pair(outputs.mouth, margin_local),
             pair(outputs.glob, margin_global),
             F.cross_entropy(outputs.logits[:n], labels[:n]),
             F.cross_entropy(outputs.logits[n:], labels[n:]))
    total = sum(lam * t for lam, t in zip(weights, terms))
    return WSLGANLosses(total, *terms)


@register("ws_lgan")
def ws_lgan(num_classes: int = 7, growth: int = 32, embed_dim: int = 128,
            dropout: float = 0.2) -> WSLGAN:
    """Registry entry: ``create_model("ws_lgan", num_classes=7)``."""
    return WSLGAN(num_classes=num_classes, growth=growth, embed_dim=embed_dim, dropout=dropout)
