"""``fermaps preview STORE --out DIR``: PNG montages a person can look at.

aligned_frames stores: a contact sheet of every aligned frame with its landmarks.
masks stores: the 56x56 texture with its 68 landmarks, mask-1 and mask-2 (upscaled).

maps / maps_clean stores: one PNG per scan with the 8 channels (Nx, Ny, Nz, D, C as
gray, RGB as colour) and the valid mask side by side, with the projected iBUG-68
landmarks drawn on the texture tile.  Drawing uses PIL only.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from data_schema.store import Store


def _gray(a: np.ndarray) -> np.ndarray:
    g = (np.clip(a, 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def map_montage(maps: np.ndarray, valid: np.ndarray, landmarks: np.ndarray | None = None,
                present: np.ndarray | None = None, scale: int = 2) -> np.ndarray:
    """(8, H, W) maps in [0, 1] + (H, W) valid -> (H*scale, 7*W*scale, 3) uint8 montage:
    Nx | Ny | Nz | D | C | RGB (+ landmarks) | valid."""
    from PIL import Image, ImageDraw

    tiles = [_gray(maps[c]) for c in range(5)]
    rgb = (np.clip(np.moveaxis(maps[5:8], 0, -1), 0, 1) * 255).astype(np.uint8)
    tiles += [rgb, _gray(valid.astype(np.float32))]
    h, w = valid.shape
    im = Image.fromarray(np.concatenate(tiles, axis=1)).resize((7 * w * scale, h * scale), Image.NEAREST)
    if landmarks is not None:
        draw = ImageDraw.Draw(im)
        for k, (x, y) in enumerate(landmarks):
            if present is None or present[k]:
                cx, cy = (5 * w + x + 0.5) * scale, (y + 0.5) * scale
                draw.ellipse([cx - 1.5, cy - 1.5, cx + 1.5, cy + 1.5], fill=(255, 40, 40))
    return np.asarray(im)


def mask_montage(texture56: np.ndarray, mask56: np.ndarray, mask28: np.ndarray,
                 landmarks: np.ndarray, present: np.ndarray, scale: int = 4) -> np.ndarray:
    """(56, 56, 3) texture with its landmarks | mask-1 | mask-2 (upscaled to 56) as one
    (56*scale, 3*56*scale, 3) uint8 image."""
    from PIL import Image, ImageDraw

    m2 = np.kron(mask28, np.ones((2, 2), np.float32))
    tiles = np.concatenate([texture56, _gray(mask56), _gray(m2)], axis=1)
    im = Image.fromarray(tiles).resize((3 * 56 * scale, 56 * scale), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    for (x, y), ok in zip(landmarks, present):
        if ok:
            cx, cy = (x + 0.5) * scale, (y + 0.5) * scale
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], outline=(255, 40, 40))
    return np.asarray(im)


def contact_sheet(frames: np.ndarray, landmarks: np.ndarray, cols: int = 8, tile: int = 120) -> np.ndarray:
    """(T, S, S, 3) aligned frames + (T, 68, 2) landmarks -> one uint8 contact sheet,
    ``cols`` tiles a row, each ``tile`` px, landmarks drawn."""
    from PIL import Image, ImageDraw

    t, size = len(frames), frames.shape[1]
    rows = max(1, -(-t // cols))
    sheet = Image.new("RGB", (cols * tile, rows * tile))
    f = tile / size
    for i in range(t):
        im = Image.fromarray(frames[i]).resize((tile, tile), Image.BILINEAR)
        draw = ImageDraw.Draw(im)
        for x, y in landmarks[i]:
            cx, cy = (x + 0.5) * f, (y + 0.5) * f
            draw.point((cx, cy), fill=(255, 40, 40))
        sheet.paste(im, ((i % cols) * tile, (i // cols) * tile))
    return np.asarray(sheet)


def write_previews(store_root: str, out_dir: str, limit: int = 0) -> list[Path]:
    """One montage PNG per item of a maps or maps_clean store; returns the paths."""
    from PIL import Image

    store = Store(store_root)
    if store.schema.name not in ("maps", "maps_clean", "masks", "aligned_frames"):
        raise SystemExit(f"preview: {store_root} is a {store.schema.name} store; preview draws "
                         "maps, masks and aligned_frames stores")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (meta, a) in enumerate(store.iter_items()):
        if limit and n >= limit:
            break
        if store.schema.name == "aligned_frames":
            img = contact_sheet(a["frames"], a["landmarks68"])
        elif store.schema.name == "masks":
            img = mask_montage(a["texture56"], a["mask56"], a["mask28"], a["landmarks68"], a["landmarks_present"])
        else:
            img = map_montage(a["maps"], a["valid"], a["landmarks68_px"], a["landmarks68_present"])
        path = out / (re.sub(r"[^A-Za-z0-9._-]+", "_", meta.key) + ".png")
        Image.fromarray(img).save(path)
        written.append(path)
    return written
