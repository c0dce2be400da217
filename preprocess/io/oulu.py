"""Reader and writer of Oulu-CASIA NIR&VIS image sequences.

Layout (REFERENCE.md)::

    <root>/OriginalImg/<light>/<strength>/P012/Anger/000.jpeg

light is ``VL`` (visible) or ``NI`` (near infrared), strength ``Strong``, ``Weak`` or
``Dark`` (the illumination); the six emotion folders are ``Anger``, ``Disgust``,
``Fear``, ``Happiness``, ``Sadness``, ``Surprise``.  Frames are ``.jpeg`` (also
``.jpg``/``.png`` in re-packed copies), numbered from 000, neutral to peak.

Image listing and decoding are the CK+ module's image-folder helpers.
"""
from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path

from PIL import Image

from data_schema.labels import label_map
from preprocess.io._images import (
    check_folder_name, check_frame_stack, has_image, image_frames, list_frame_files,
)
from preprocess.io._text import wraps_input_errors
from preprocess.scan import ItemIds
from preprocess.sequence import Sequence

FPS = 25.0
OULU_SUFFIXES = (".jpeg", ".jpg", ".png")
EMOTIONS = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
LIGHTS = ("VL", "NI")
STRENGTHS = ("Strong", "Weak", "Dark")
JPEG_QUALITY = 95

_SUBJECT = re.compile(r"^P\d+$")


def _is_sequence_place(path: Path) -> bool:
    """``.../P<digits>/<Emotion>`` by name only (no disk access)."""
    return path.name in EMOTIONS and bool(_SUBJECT.match(path.parent.name))


def is_sequence_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is an Oulu-CASIA sequence folder ``P<digits>/<Emotion>``
    (one of the six emotion names) holding at least one image."""
    p = Path(path)
    if not _is_sequence_place(p) or not p.is_dir():
        return False
    try:
        with os.scandir(p) as it:
            return any(e.name.lower().endswith(OULU_SUFFIXES) and e.is_file() for e in it)
    except OSError:
        return False


def find_sequences(root: str | os.PathLike) -> list[Path]:
    """Every Oulu-CASIA sequence folder under ``root`` (``root`` included), sorted.

    One walk of the tree; symbolic links are not followed; sequence folders are not
    entered further.  Trees without ``P<digits>/<Emotion>`` folders give [].
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        p = Path(dirpath)
        if _is_sequence_place(p):
            if has_image(filenames, OULU_SUFFIXES):
                found.append(p)
            dirnames[:] = []
    return sorted(found)


def session_of(path: str | os.PathLike) -> str:
    """``"<light>_<strength>"`` from the two folders above the subject folder
    (``.../VL/Strong/P012/Anger`` -> ``"VL_Strong"``), ``""`` when they are not a
    known light (VL, NI) and strength (Strong, Weak, Dark)."""
    p = Path(path)
    strength, light = p.parent.parent.name, p.parent.parent.parent.name
    return f"{light}_{strength}" if light in LIGHTS and strength in STRENGTHS else ""


@wraps_input_errors
def read_oulu_sequence(path: str | os.PathLike) -> Sequence:
    """Read one Oulu-CASIA sequence folder ``.../<light>/<strength>/P012/Anger``.

    Returns a Sequence with
      ids : dataset ``"oulu"``, subject ``"P012"``, session ``"VL_Strong"`` (see
        :func:`session_of`), expression the folder name (``"Anger"``), label from
        ``label_map("oulu")``;
      frames sorted by frame number (``000.jpeg``, ``001.jpeg``, ...), decoded lazily
        one at a time into (H, W, 3) uint8 RGB (NI grayscale replicated);
      frame_names : file names; fps : 25 (nominal); landmarks : None.

    Raises InputError when the folder holds no image; a corrupt image raises
    InputError naming that file when the iterator reaches it.
    """
    folder = Path(path)
    frames = list_frame_files(folder, OULU_SUFFIXES)
    expression = folder.name
    ids = ItemIds("oulu", folder.parent.name, session_of(folder), expression,
                  label_map("oulu").label_of(expression), str(path))
    return Sequence(ids=ids, n_frames=len(frames), fps=FPS,
                    frame_names=tuple(f.name for f in frames),
                    open_frames=partial(image_frames, tuple(frames)), landmarks=None)


def write_oulu_sequence(root, subject: str, emotion: str, frames, light: str = "VL",
                        strength: str = "Strong") -> Path:
    """Write one sequence in the Oulu-CASIA layout and return its folder
    ``<root>/OriginalImg/<light>/<strength>/<subject>/<emotion>``.

    frames : (T, H, W) or (T, H, W, 3) uint8 -> JPEG (quality 95) files ``000.jpeg``,
        ``001.jpeg``, ... (grayscale or RGB as given).
    subject : ``P<digits>`` (e.g. ``"P012"``); emotion : one of :data:`EMOTIONS`.
    light, strength : one of :data:`LIGHTS` and :data:`STRENGTHS`, or both ``""`` to
        write ``<root>/OriginalImg/<subject>/<emotion>`` (a sequence without session).

    Files of the same names are overwritten.  Raises ValueError for malformed arguments.
    """
    check_folder_name("subject", subject)
    if not _SUBJECT.match(subject):
        raise ValueError(f"subject must look like 'P012', got {subject!r}")
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion must be one of {EMOTIONS}, got {emotion!r}")
    if (light, strength) != ("", "") and (light not in LIGHTS or strength not in STRENGTHS):
        raise ValueError(f"light/strength must be in {LIGHTS}/{STRENGTHS} or both '', "
                         f"got {light!r}/{strength!r}")
    stack = check_frame_stack(frames)
    folder = Path(root) / "OriginalImg"
    if light:
        folder = folder / light / strength
    folder = folder / subject / emotion
    folder.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(stack.shape[0] - 1)))
    for k, frame in enumerate(stack):
        img = Image.fromarray(frame, "L" if frame.ndim == 2 else "RGB")
        img.save(folder / f"{k:0{width}d}.jpeg", format="JPEG", quality=JPEG_QUALITY)
    return folder
