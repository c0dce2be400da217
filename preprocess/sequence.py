"""The canonical face sequence (image folder or video file) the sequence readers return.

Frames are produced lazily: ``iter_frames()`` opens the source each time it is called
and yields one frame at a time, so a long video is never held in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from preprocess.scan import ItemIds, Landmarks


@dataclass(frozen=True)
class Sequence:
    """One face sequence.

    ids : ItemIds (session = sequence id).
    n_frames : number of frames (from the folder listing or the container; for
        videos whose container does not say, the count found by decoding).
    fps : frames per second (image folders: the dataset's nominal rate).
    frame_names : per-frame names (image file names, or ``"frame_000017"``).
    landmarks : per-frame 2-D landmarks (68 points, pixels) from dataset files, or None;
        a list entry may be None where that frame has no file.
    open_frames : callable returning an iterator of frames, each (H, W, 3) uint8 RGB.
    """

    ids: ItemIds
    n_frames: int
    fps: float
    frame_names: tuple[str, ...]
    open_frames: Callable[[], Iterator[np.ndarray]]
    landmarks: tuple[Landmarks | None, ...] | None = None

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Frames one at a time, (H, W, 3) uint8 RGB."""
        return self.open_frames()
