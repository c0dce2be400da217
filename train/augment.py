"""Batch-level data augmentation in torch, on whatever device the batch is on.

Every function takes a batch - one tensor ``(B, ..., H, W)`` or a dict of tensors as the
DataLoader collates the datasets of :mod:`train.data` - and a ``torch.Generator`` (the
only source of randomness; it may live on the CPU while the batch is on the GPU), and
returns a new batch of the same kind.  Each sample draws its own transform; within a
sample every image entry gets the same one, so masks, validity and normal maps move with
the image.

Dict entries:

* ``"landmarks"`` (B, P, 2) float, pixels (x right, y down, pixel centres at integers)
  of the batch's images: moved with them (P = 68: also relabelled left <-> right on a
  flip, ``preprocess.landmark_names.IBUG_MIRROR``).  Images must then share one size.
* every other entry with 3 or more dims is an image whose last two dims are (H, W):
  (B, C, H, W), (B, H, W) masks, (B, C, T, H, W) or (B, T, C, H, W) clips; float or bool
  (``"valid"``).  Entries of different sizes (maps 112 and masks 56) are transformed in
  normalised coordinates, i.e. the same geometric transform of the same field of view.
* anything else (``"label"``) is passed through.

Normal maps hold ``(n + 1) / 2`` per component (data_schema.channels), 0 off the face.
A horizontal flip mirrors the surface, so n_x changes sign: ``v -> 1 - v`` on the face
(``"valid"`` when the batch has it), background left at 0.  An in-plane rotation by a
rotates (n_x, n_y) by a as well (the +Y-up map frame seen from +Z): ``n_x' = c n_x - s
n_y``, ``n_y' = s n_x + c n_y``.  Which channels hold Nx / Ny is given per entry
(``normal_channels``; ``MapsDataset.normal_channels`` says it for its output).

Angles are degrees, positive = counter-clockwise as the image is displayed (row 0 at the
top), so ``rotate`` by +90 equals ``torch.rot90(img, 1, dims=(-2, -1))``.  Rotation
resamples bilinearly with ``affine_grid`` / ``grid_sample`` (``align_corners=False``,
zeros outside), the inverse map corrected for non-square images; ``"valid"`` is
resampled and thresholded at 0.5.

The papers' pipelines (:func:`augment_for`):

* STCAM (4.2): training "random horizontal flip and random crop of four corners and
  center ... from 240x240 to 224x224"; testing "only the center crop".
* WS-LGAN (IV-B): each training image rotated by -15, -10, -5, 5, 10, 15 degrees and
  flipped: 14 variants per image (7 angles incl. 0, x 2 flips); here drawn at random,
  each variant with probability 1/14.
* AMDFN, FFNet-M, HACN: the papers state no augmentation: identity.

Why by hand: torchvision (not a dependency) transforms one image at a time and knows
nothing of normal maps, masks riding along, or landmark relabelling; each operation is a
few tensor lines.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from preprocess.landmark_names import IBUG_MIRROR

__all__ = ["Augmentation", "CROP_NAMES", "WSLGAN_ANGLES", "augment_for", "center_crop",
           "crop_offsets", "hflip", "random_crop_5", "rotate"]

Batch = torch.Tensor | Mapping[str, torch.Tensor]

LANDMARKS = "landmarks"
VALID = "valid"
#: The five crops of :func:`random_crop_5`, in draw order.
CROP_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
#: WS-LGAN's rotations, degrees.
WSLGAN_ANGLES = (-15.0, -10.0, -5.0, 5.0, 10.0, 15.0)
_MIRROR = torch.tensor(IBUG_MIRROR, dtype=torch.long)


# --------------------------------------------------------------------- helpers

def _split(batch: Batch) -> tuple[dict[str, torch.Tensor], bool]:
    if isinstance(batch, torch.Tensor):
        return {"_": batch}, True
    if isinstance(batch, Mapping):
        return dict(batch), False
    raise TypeError(f"batch must be a tensor or a dict of tensors, got {type(batch).__name__}")


def _join(entries: dict[str, torch.Tensor], single: bool) -> Batch:
    return entries["_"] if single else entries


def _image_keys(entries: Mapping[str, torch.Tensor]) -> list[str]:
    keys = [k for k, v in entries.items() if k != LANDMARKS and isinstance(v, torch.Tensor) and v.ndim >= 3]
    for k in keys:
        if not (entries[k].is_floating_point() or entries[k].dtype == torch.bool):
            raise TypeError(f"image entry {k!r} must be float or bool, got {entries[k].dtype}")
    return keys


def _batch_size(entries: Mapping[str, torch.Tensor], keys: Sequence[str]) -> int:
    sizes = {entries[k].shape[0] for k in keys}
    if LANDMARKS in entries:
        sizes.add(entries[LANDMARKS].shape[0])
    if len(sizes) != 1:
        raise ValueError(f"entries disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def _landmark_grid(entries: Mapping[str, torch.Tensor], keys: Sequence[str]) -> tuple[int, int] | None:
    """(H, W) the landmarks refer to, or None when the batch has no landmarks."""
    if LANDMARKS not in entries:
        return None
    lm = entries[LANDMARKS]
    if lm.ndim != 3 or lm.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, P, 2), got {tuple(lm.shape)}")
    sizes = {tuple(entries[k].shape[-2:]) for k in keys}
    if len(sizes) != 1:
        raise ValueError(f"landmarks need the images to share one size, got {sorted(sizes)}")
    return sizes.pop()


def _generator(gen) -> torch.Generator:
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"gen must be a torch.Generator (seeded), got {type(gen).__name__}")
    return gen


def _per_sample(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like``."""
    return mask.to(like.device).view(-1, *([1] * (like.ndim - 1)))


def _check_prob(p: float) -> float:
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return float(p)


# ------------------------------------------------------------------------ crops

def crop_offsets(h: int, w: int, out: int) -> tuple[tuple[int, int], ...]:
    """(y0, x0) of the five ``out`` x ``out`` crops of an h x w image, in
    :data:`CROP_NAMES` order; the centre one is ``((h - out) // 2, (w - out) // 2)``.
    240 -> 224: (0, 0), (0, 16), (16, 0), (16, 16), (8, 8)."""
    if out < 1 or out > h or out > w:
        raise ValueError(f"cannot crop {out} x {out} from {h} x {w}")
    dy, dx = h - out, w - out
    return ((0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2))


def _crop_size(entries: Mapping[str, torch.Tensor], keys: Sequence[str]) -> tuple[int, int]:
    sizes = {tuple(entries[k].shape[-2:]) for k in keys}
    if len(sizes) != 1:
        raise ValueError(f"crops need the images to share one size, got {sorted(sizes)}")
    return sizes.pop()


def _apply_crops(batch: Batch, out: int, choice: torch.Tensor | None) -> Batch:
    entries, single = _split(batch)
    keys = _image_keys(entries)
    if not keys:
        return batch
    _batch_size(entries, keys)
    h, w = _crop_size(entries, keys)
    offsets = crop_offsets(h, w, out)
    for k in keys:
        x = entries[k]
        if choice is None:
            y0, x0 = offsets[4]
            entries[k] = x[..., y0:y0 + out, x0:x0 + out].contiguous()
            continue
        res = None
        for p, (y0, x0) in enumerate(offsets):
            crop = x[..., y0:y0 + out, x0:x0 + out]
            res = crop if res is None else torch.where(_per_sample(choice == p, crop), crop, res)
        entries[k] = res.contiguous()
    if LANDMARKS in entries:
        _landmark_grid(entries, keys)
        lm = entries[LANDMARKS]
        off = torch.tensor([(x0, y0) for y0, x0 in offsets], dtype=lm.dtype, device=lm.device)
        shift = off[4].expand(lm.shape[0], 2) if choice is None else off[choice.to(lm.device)]
        entries[LANDMARKS] = lm - shift[:, None, :]
    return _join(entries, single)


def random_crop_5(batch: Batch, out: int = 224, gen: torch.Generator | None = None) -> Batch:
    """Per sample, one of the five ``out`` x ``out`` crops (4 corners, centre; STCAM
    4.2), uniformly.

    batch : (B, ..., H, W) tensor or dict (see the module docstring); all images one size.
    out : crop side, pixels (224 of 240 in STCAM).  gen : torch.Generator.
    Returns the batch with images (B, ..., out, out) and landmarks shifted.
    """
    gen = _generator(gen)
    entries, _ = _split(batch)
    keys = _image_keys(entries)
    if not keys:
        return batch
    b = _batch_size(entries, keys)
    choice = torch.randint(len(CROP_NAMES), (b,), generator=gen, device=gen.device)
    return _apply_crops(batch, out, choice)


def center_crop(batch: Batch, out: int = 224) -> Batch:
    """The centre ``out`` x ``out`` crop of every sample (STCAM testing)."""
    return _apply_crops(batch, out, None)


# ------------------------------------------------------------------------- flip

def _normal_map(normal_channels, entries) -> dict[str, tuple[int | None, int | None]]:
    if normal_channels is None:
        return {}
    bad = [k for k in normal_channels if k not in entries]
    if bad:
        raise KeyError(f"normal_channels name entries not in the batch: {bad}")
    return {k: tuple(v) for k, v in normal_channels.items()}


def _valid_like(entries: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
    """The batch's validity as (B, 1, H, W) bool matching ``x`` (B, C, H, W), or None."""
    v = entries.get(VALID)
    if v is None:
        return None
    v = v if v.ndim == 4 else v[:, None]
    if v.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"'valid' is {tuple(v.shape[-2:])}, the normal map {tuple(x.shape[-2:])}")
    return v if v.dtype == torch.bool else v > 0.5


def hflip(batch: Batch, gen: torch.Generator | None = None, p: float = 0.5,
          normal_x_channels: Mapping[str, int | Sequence[int]] | None = None) -> Batch:
    """Mirror each sample left-right with probability ``p``.

    batch : tensor (B, ..., H, W) or dict (see the module docstring).
    gen : torch.Generator.  p : float in [0, 1].
    normal_x_channels : entry name -> index (or indices) of its Nx channel on axis 1;
        those channels become ``1 - v`` on the face of flipped samples (on every pixel
        when the batch has no ``"valid"``).  For ``MapsDataset`` output:
        ``{name: nx for name, (nx, ny) in ds.normal_channels.items()}``.

    Landmarks: ``x -> W - 1 - x``, and with 68 points the iBUG left/right relabelling.
    Flipping twice is the identity, exactly.
    """
    gen = _generator(gen)
    p = _check_prob(p)
    entries, single = _split(batch)
    keys = _image_keys(entries)
    if not keys:
        return batch
    b = _batch_size(entries, keys)
    sel = torch.rand(b, generator=gen, device=gen.device) < p
    grid = _landmark_grid(entries, keys)
    for k in keys:
        x = entries[k]
        entries[k] = torch.where(_per_sample(sel, x), x.flip(-1), x)
    if normal_x_channels:
        bad = [k for k in normal_x_channels if k not in entries]
        if bad:
            raise KeyError(f"normal_x_channels name entries not in the batch: {bad}")
        for k, idx in normal_x_channels.items():
            idx = [idx] if isinstance(idx, int) else list(idx)
            x = entries[k].clone()
            if x.ndim != 4:
                raise ValueError(f"normal map {k!r} must be (B, C, H, W), got {tuple(x.shape)}")
            valid = _valid_like(entries, x)
            on = _per_sample(sel, x) if valid is None else (_per_sample(sel, x) & valid)
            for c in idx:
                x[:, c:c + 1] = torch.where(on, 1.0 - x[:, c:c + 1], x[:, c:c + 1])
            entries[k] = x
    if grid is not None:
        lm = entries[LANDMARKS]
        flipped = lm.clone()
        flipped[..., 0] = (grid[1] - 1) - lm[..., 0]
        if lm.shape[1] == len(IBUG_MIRROR):
            flipped = flipped[:, _MIRROR.to(lm.device)]
        entries[LANDMARKS] = torch.where(_per_sample(sel, lm), flipped, lm)
    return _join(entries, single)


# ----------------------------------------------------------------------- rotate

def _theta(angle_rad: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 2, 3) affine_grid matrices: output (normalised) -> input position for a
    counter-clockwise (as displayed) rotation about the image centre, aspect-corrected."""
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    z = torch.zeros_like(c)
    # pixel map p_in = [[c, -s], [s, c]] p_out (y down); normalised u = 2x/W, v = 2y/H
    return torch.stack([torch.stack([c, -s * (h / w), z], -1),
                        torch.stack([s * (w / h), c, z], -1)], -2)


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    shape = x.shape
    flat = x.reshape(shape[0], -1, *shape[-2:])  # clips and masks as (B, C', H, W)
    src = flat.to(theta.dtype) if flat.dtype == torch.bool else flat
    grid = F.affine_grid(theta.to(src.dtype), list(src.shape), align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out > 0.5 if x.dtype == torch.bool else out).reshape(shape)


def rotate(batch: Batch, angles: Sequence[float] = WSLGAN_ANGLES, gen: torch.Generator | None = None,
           p: float = 1.0,
           normal_channels: Mapping[str, tuple[int | None, int | None]] | None = None) -> Batch:
    """Rotate each sample, with probability ``p``, by an angle drawn uniformly from
    ``angles`` (degrees, counter-clockwise as displayed) about the image centre.

    batch : tensor (B, ..., H, W) or dict (see the module docstring).
    angles : non-empty sequence of degrees.  gen : torch.Generator.  p : float in [0, 1].
    normal_channels : entry name -> (Nx index, Ny index) on axis 1 (None for a missing
        one); on the face (``"valid"``) those vectors are rotated by the same angle.

    Samples not drawn are returned bit for bit; landmarks rotate with the image.
    """
    gen = _generator(gen)
    p = _check_prob(p)
    if len(angles) == 0:
        raise ValueError("angles must not be empty")
    entries, single = _split(batch)
    keys = _image_keys(entries)
    if not keys:
        return batch
    b = _batch_size(entries, keys)
    normals = _normal_map(normal_channels, entries)
    sel = torch.rand(b, generator=gen, device=gen.device) < p
    pick = torch.randint(len(angles), (b,), generator=gen, device=gen.device)
    table = torch.tensor([float(a) for a in angles], dtype=torch.float64, device=gen.device)
    rad = torch.where(sel, table[pick] * (math.pi / 180.0), torch.zeros((), dtype=torch.float64, device=gen.device))
    grid = _landmark_grid(entries, keys)
    originals = dict(entries)

    for k, (ix, iy) in normals.items():
        x = entries[k]
        if x.ndim != 4 or None in (ix, iy):
            raise ValueError(f"normal map {k!r} needs (B, C, H, W) with both Nx and Ny, "
                             f"got {tuple(x.shape)} and channels {(ix, iy)}")
        r = rad.to(device=x.device, dtype=x.dtype)
        c, s = torch.cos(r).view(-1, 1, 1, 1), torch.sin(r).view(-1, 1, 1, 1)
        nx, ny = 2 * x[:, ix:ix + 1] - 1, 2 * x[:, iy:iy + 1] - 1
        valid = _valid_like(entries, x)
        on = torch.ones_like(nx, dtype=torch.bool) if valid is None else valid
        y = x.clone()
        y[:, ix:ix + 1] = torch.where(on, (c * nx - s * ny + 1) / 2, x[:, ix:ix + 1])
        y[:, iy:iy + 1] = torch.where(on, (s * nx + c * ny + 1) / 2, x[:, iy:iy + 1])
        entries[k] = y

    for k in keys:
        x = entries[k]
        h, w = x.shape[-2:]
        theta = _theta(rad.to(x.device), h, w).to(torch.float32 if x.dtype == torch.bool else x.dtype)
        entries[k] = torch.where(_per_sample(sel, x), _resample(x, theta), originals[k])

    if grid is not None:
        lm = entries[LANDMARKS]
        h, w = grid
        r = rad.to(device=lm.device, dtype=lm.dtype)
        c, s = torch.cos(r)[:, None], torch.sin(r)[:, None]
        cx, cy = (w - 1) / 2, (h - 1) / 2
        dx, dy = lm[..., 0] - cx, lm[..., 1] - cy
        # forward map of the content, inverse of _theta's: (x, y) -> (c x + s y, -s x + c y)
        moved = torch.stack([c * dx + s * dy + cx, -s * dx + c * dy + cy], -1)
        entries[LANDMARKS] = torch.where(_per_sample(sel, lm), moved, lm)
    return _join(entries, single)


# -------------------------------------------------------------------- pipelines

Step = Callable[[Batch, torch.Generator], Batch]


@dataclass(frozen=True)
class Augmentation:
    """A model's augmentation: ``aug(batch, gen, train=True)`` runs ``train_steps`` (each
    called as ``step(batch, gen=gen) -> batch``) in order, ``aug(batch, gen, train=False)`` the
    ``eval_steps``."""

    model: str
    train_steps: tuple[Step, ...]
    eval_steps: tuple[Step, ...]
    source: str

    def __call__(self, batch: Batch, gen: torch.Generator | None = None, train: bool = True) -> Batch:
        for step in (self.train_steps if train else self.eval_steps):
            batch = step(batch, gen=gen)
        return batch


def _center(batch: Batch, gen: torch.Generator | None = None, out: int = 224) -> Batch:
    return center_crop(batch, out)


def augment_for(model_name: str, *, crop: int = 224) -> Augmentation:
    """The paper's augmentation for a registered model name (see the module docstring).

    crop : STCAM's crop side (224).  Raises ValueError for an unknown name.
    """
    if model_name == "stcam":
        return Augmentation("stcam", (partial(random_crop_5, out=crop), partial(hflip, p=0.5)),
                            (partial(_center, out=crop),),
                            "STCAM 4.2: random 4-corner/centre 224 crop + horizontal flip; test: centre crop")
    if model_name == "ws_lgan":
        return Augmentation("ws_lgan",
                            (partial(rotate, angles=WSLGAN_ANGLES, p=len(WSLGAN_ANGLES) / (len(WSLGAN_ANGLES) + 1)),
                             partial(hflip, p=0.5)),
                            (),
                            "WS-LGAN IV-B: rotations +-5/10/15 deg and flips (14 variants, 1/14 each)")
    if model_name in ("amdfn", "ffnet_m", "hacn"):
        return Augmentation(model_name, (), (), "the paper states no augmentation")
    raise ValueError(f"no augmentation known for {model_name!r}; known: amdfn, ffnet_m, hacn, stcam, ws_lgan")
