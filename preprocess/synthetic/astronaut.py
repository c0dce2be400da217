"""The one real face the embedded sample is made from: scikit-image's ``astronaut()``
image and its 68 iBUG landmarks.

The landmarks were found once with dlib (HOG detector, upsample 1, then the 68-point
shape predictor) and ship as package data (``astronaut_landmarks68.json``, with their
provenance), so generating the sample needs neither dlib nor its model file.

Pixel convention: (x, y) with x right, y down and pixel centres at integer coordinates
(dlib's and OpenCV's convention).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

_LANDMARK_FILE = Path(__file__).with_name("astronaut_landmarks68.json")


@lru_cache(maxsize=1)
def _image() -> np.ndarray:
    from skimage import data

    img = np.ascontiguousarray(data.astronaut())
    img.setflags(write=False)
    return img


def astronaut_image() -> np.ndarray:
    """The astronaut photograph, (512, 512, 3) uint8 RGB (read-only array)."""
    return _image()


@lru_cache(maxsize=1)
def _landmark_record() -> dict:
    with open(_LANDMARK_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def astronaut_landmarks() -> np.ndarray:
    """The 68 iBUG landmarks of the astronaut's face, (68, 2) float64 pixels (x, y)."""
    pts = np.asarray(_landmark_record()["points"], dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"{_LANDMARK_FILE}: expected 68 (x, y) points, got {pts.shape}")
    return pts


def astronaut_face_box() -> tuple[tuple[int, int], tuple[int, int]]:
    """dlib's face box of the astronaut, ((left, top), (right, bottom)) pixels."""
    (l, t), (r, b) = _landmark_record()["face_box"]
    return (int(l), int(t)), (int(r), int(b))


def landmark_provenance() -> dict:
    """How the shipped landmarks were made (tool, version, image, date, check)."""
    return dict(_landmark_record()["provenance"])


def apply_skin_tone(image: np.ndarray, gain: np.ndarray, offset: float) -> np.ndarray:
    """A skin-tone shift: ``image * gain + offset`` per channel, rounded and clipped.

    image : (H, W, 3) uint8 RGB.  gain : (3,) float per-channel gain (about 0.9-1.1).
    offset : brightness offset in grey levels.  Returns (H, W, 3) uint8.
    """
    out = image.astype(np.float32) * np.asarray(gain, np.float32)[None, None, :] + np.float32(offset)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
