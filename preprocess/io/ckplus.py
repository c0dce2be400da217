"""Reader and writer of CK+ (extended Cohn-Kanade) image sequences.

Layout (REFERENCE.md)::

    <root>/cohn-kanade-images/S005/001/S005_001_00000011.png
    <root>/Landmarks/S005/001/S005_001_00000011_landmarks.txt   68 lines "x y"
    <root>/Emotion/S005/001/S005_001_00000011_emotion.txt       one float code 0..7

The emotion file exists for only some sequences and is named after the last frame.
Landmark and emotion files are MATLAB ``save -ascii`` text: every number in a
16-character ``%16.7e`` field (``"   2.9061757e+02"``).

Image-folder helpers shared with Oulu-CASIA live in ``preprocess.io._images``.
"""
from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from data_schema.errors import InputError
from data_schema.labels import label_map
from preprocess.io._images import (
    check_folder_name, check_frame_stack, has_image, image_frames, list_frame_files,
)
from preprocess.io._text import (
    nonblank_lines, parse_numbers, parse_row, read_text, require_finite, wraps_input_errors,
)
from preprocess.scan import ItemIds, Landmarks
from preprocess.sequence import Sequence

IMAGES_DIR = "cohn-kanade-images"
LANDMARKS_DIR = "Landmarks"
EMOTION_DIR = "Emotion"
FPS = 30.0
N_LANDMARKS = 68
LANDMARK_NAMES = tuple(f"ibug_{i}" for i in range(N_LANDMARKS))
CKPLUS_SUFFIXES = (".png",)

# CK+ landmark files are ~2.2 kB and emotion files 17 bytes; read no more than this.
_MAX_TEXT_BYTES = 64 * 1024


# --------------------------------------------------------------------------------------
# CK+ layout
# --------------------------------------------------------------------------------------

def _is_sequence_place(path: Path) -> bool:
    """``.../cohn-kanade-images/<subject>/<sequence>`` by name only (no disk access)."""
    return path.parent.parent.name == IMAGES_DIR and bool(path.name) and bool(path.parent.name)


def is_sequence_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a CK+ sequence folder: ``cohn-kanade-images/<S>/<seq>``
    holding at least one ``.png``."""
    p = Path(path)
    if not _is_sequence_place(p) or not p.is_dir():
        return False
    try:
        with os.scandir(p) as it:
            return any(e.name.lower().endswith(CKPLUS_SUFFIXES) and e.is_file() for e in it)
    except OSError:
        return False


def find_sequences(root: str | os.PathLike) -> list[Path]:
    """Every CK+ sequence folder under ``root`` (``root`` itself included), at any
    depth, sorted.

    One walk of the tree; symbolic links are not followed; a sequence folder's
    sub-folders are not entered.  Trees without a ``cohn-kanade-images`` folder give [].
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        p = Path(dirpath)
        if _is_sequence_place(p):
            if has_image(filenames, CKPLUS_SUFFIXES):
                found.append(p)
            dirnames[:] = []
    return sorted(found)


def read_landmarks_file(path: str | os.PathLike) -> Landmarks:
    """One CK+ landmark file: 68 lines ``x y``.

    Returns Landmarks with ``points : (68, 2) float64`` in pixels of the frame as the
    file gives them (x right, y down), names ``ibug_0..ibug_67``, provenance
    ``"file:ckplus"``.  InputError for an empty or oversized file, a line without
    exactly two numbers, a wrong point count, or a NaN/inf value.
    """
    lines = nonblank_lines(read_text(path, max_bytes=_MAX_TEXT_BYTES))
    if len(lines) != N_LANDMARKS:
        raise InputError(path, f"wrong landmark count: {len(lines)} points, "
                               f"expected {N_LANDMARKS}")
    points = np.stack([parse_row(line, path, f"landmark {i}", 2)
                       for i, line in enumerate(lines)])
    require_finite(points, path, "landmarks")
    return Landmarks(points, LANDMARK_NAMES, "file:ckplus")


def read_emotion_file(path: str | os.PathLike) -> int:
    """One CK+ emotion file: a single float (``3.0000000e+00``) that must be an integer
    code in 0..7; returns the code."""
    values = parse_numbers(read_text(path, max_bytes=_MAX_TEXT_BYTES), path, "emotion code")
    if values.size != 1:
        raise InputError(path, f"emotion file must hold one number, found {values.size}")
    value = float(values[0])
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= 7:
        raise InputError(path, f"emotion code must be an integer in 0..7, got {value!r}")
    return int(value)


def _find_emotion(folder: Path, last_stem: str) -> Path | None:
    """The sequence's emotion file: the one named after the last frame, else the only
    ``*_emotion.txt`` in the folder; InputError when several compete."""
    if not folder.is_dir():
        return None
    preferred = folder / f"{last_stem}_emotion.txt"
    if preferred.is_file():
        return preferred
    candidates = sorted(p for p in folder.glob("*_emotion.txt") if p.is_file())
    if len(candidates) > 1:
        raise InputError(folder, f"{len(candidates)} emotion files for one sequence")
    return candidates[0] if candidates else None


@wraps_input_errors
def read_ckplus_sequence(path: str | os.PathLike) -> Sequence:
    """Read one CK+ sequence folder ``<root>/cohn-kanade-images/<S>/<seq>``.

    Returns a Sequence with
      ids : dataset ``"ckplus"``, subject ``"S005"``, session ``"001"``, expression the
        emotion code as an int string (``"3"``) or ``""`` without an emotion file, label
        from ``label_map("ckplus")`` (-1 when unlabelled);
      frames sorted by frame number, decoded lazily with PIL one at a time into
        (H, W, 3) uint8 RGB (grayscale replicated); sizes may differ between frames;
      frame_names : image file names; fps : 30 (nominal);
      landmarks : per frame Landmarks ((68, 2) float64, pixels, provenance
        ``"file:ckplus"``) or None for a frame without a file; None for the whole
        sequence when no frame has a landmark file.
    Landmark and emotion files are parsed here (they are small); images are not opened
    until the frames are iterated.

    Raises InputError: no images; a landmark file with a wrong count or a non-finite
    value (naming that file); an emotion value that is not an integer in 0..7.  A corrupt
    image raises InputError naming that frame file when the iterator reaches it.
    """
    folder = Path(path)
    frames = list_frame_files(folder, CKPLUS_SUFFIXES)
    subject, session = folder.parent.name, folder.name
    root = folder.parent.parent.parent

    lm_folder = root / LANDMARKS_DIR / subject / session
    landmarks: list[Landmarks | None] = []
    for f in frames:
        lm_file = lm_folder / f"{f.stem}_landmarks.txt"
        landmarks.append(read_landmarks_file(lm_file) if lm_file.is_file() else None)

    emotion_file = _find_emotion(root / EMOTION_DIR / subject / session, frames[-1].stem)
    expression = str(read_emotion_file(emotion_file)) if emotion_file is not None else ""

    ids = ItemIds("ckplus", subject, session, expression,
                  label_map("ckplus").label_of(expression), str(path))
    return Sequence(
        ids=ids,
        n_frames=len(frames),
        fps=FPS,
        frame_names=tuple(f.name for f in frames),
        open_frames=partial(image_frames, tuple(frames)),
        landmarks=tuple(landmarks) if any(lm is not None for lm in landmarks) else None,
    )


def _ascii_row(values) -> str:
    """One line of MATLAB ``save -ascii`` text: each value in a ``%16.7e`` field."""
    return "".join(f"{v:16.7e}" for v in values) + "\n"


def write_ckplus_sequence(root, subject: str, session: str, frames, landmarks=None,
                          emotion: int | None = None) -> Path:
    """Write one sequence in the CK+ layout under ``root`` and return its image folder.

    frames : (T, H, W) or (T, H, W, 3) uint8 -> 8-bit grayscale or RGB PNGs named
        ``<subject>_<session>_<8-digit frame number>.png``, numbered from 1.
    landmarks : (T, 68, 2) float, pixels (x right, y down), or None -> one
        ``..._landmarks.txt`` per frame in ``%16.7e`` text like the real files.
    emotion : int code 0..7 or None -> ``..._emotion.txt`` named after the last frame.
    subject, session : plain folder names (e.g. ``"S005"``, ``"001"``).

    Files of the same names are overwritten.  Raises ValueError for malformed arguments.
    """
    check_folder_name("subject", subject)
    check_folder_name("session", session)
    stack = check_frame_stack(frames)
    t = stack.shape[0]
    lm = None
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (t, N_LANDMARKS, 2):
            raise ValueError(f"landmarks must be ({t}, {N_LANDMARKS}, 2), got {lm.shape}")
        if not np.isfinite(lm).all():
            raise ValueError("landmarks must be finite")
    if emotion is not None and (isinstance(emotion, bool) or int(emotion) != emotion
                                or not 0 <= emotion <= 7):
        raise ValueError(f"emotion must be an integer code in 0..7, got {emotion!r}")

    root = Path(root)
    img_dir = root / IMAGES_DIR / subject / session
    img_dir.mkdir(parents=True, exist_ok=True)
    stems = [f"{subject}_{session}_{k:08d}" for k in range(1, t + 1)]
    for stem, frame in zip(stems, stack):
        Image.fromarray(frame, "L" if frame.ndim == 2 else "RGB").save(img_dir / f"{stem}.png")
    if lm is not None:
        lm_dir = root / LANDMARKS_DIR / subject / session
        lm_dir.mkdir(parents=True, exist_ok=True)
        for stem, pts in zip(stems, lm):
            text = "".join(_ascii_row(p) for p in pts)
            (lm_dir / f"{stem}_landmarks.txt").write_text(text, encoding="ascii")
    if emotion is not None:
        emo_dir = root / EMOTION_DIR / subject / session
        emo_dir.mkdir(parents=True, exist_ok=True)
        (emo_dir / f"{stems[-1]}_emotion.txt").write_text(_ascii_row([float(emotion)]),
                                                           encoding="ascii")
    return img_dir
