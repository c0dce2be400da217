"""CK+ reader/writer: hand-made trees (PNG bytes built with zlib, landmark and emotion
text typed in), writer round trips, and every bad input with its reason."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_schema.errors import InputError
from preprocess.io import format_of, list_items, read_sequence
from preprocess.io._images import read_image_rgb
from preprocess.io.ckplus import (
    find_sequences, is_sequence_dir, read_ckplus_sequence,
    write_ckplus_sequence,
)


# ---------------------------------------------------------------- hand-made files

def png_bytes(rows: np.ndarray, bit_depth: int = 8, width: int | None = None,
              height: int | None = None) -> bytes:
    """A PNG written by hand: grayscale (2-D rows) or RGB (3-D), filter 0 per row.
    ``width``/``height`` override the IHDR (to make lying headers)."""
    rows = np.asarray(rows)
    color_type = 0 if rows.ndim == 2 else 2
    h, w = rows.shape[:2]
    sample = rows.astype(">u2") if bit_depth == 16 else rows.astype(np.uint8)
    raw = b"".join(b"\x00" + sample[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width or w, height or h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def gray(k: int, h: int = 6, w: int = 8) -> np.ndarray:
    """A known 8-bit grayscale frame that differs per frame number k."""
    return ((np.arange(h)[:, None] * 10 + np.arange(w)[None, :] * 3 + 7 * k) % 256).astype(np.uint8)


LM_LINE = "   2.9061757e+02   2.3724585e+02\n"


def landmark_text(k: int) -> str:
    """68 lines like the real files; point i of frame k is (100 + i + k, 200 - i / 4)."""
    return "".join(f"{100 + i + k:16.7e}{200 - i / 4:16.7e}\n" for i in range(68))


def make_tree(root: Path, frames=(1, 2, 10), landmarks=(1, 10), emotion="   3.0000000e+00\n",
              subject="S005", session="001") -> Path:
    seq = root / "cohn-kanade-images" / subject / session
    seq.mkdir(parents=True)
    for k in reversed(frames):  # created out of order on purpose
        (seq / f"{subject}_{session}_{k:08d}.png").write_bytes(png_bytes(gray(k)))
    lm = root / "Landmarks" / subject / session
    lm.mkdir(parents=True)
    for k in landmarks:
        (lm / f"{subject}_{session}_{k:08d}_landmarks.txt").write_text(landmark_text(k))
    if emotion is not None:
        emo = root / "Emotion" / subject / session
        emo.mkdir(parents=True)
        (emo / f"{subject}_{session}_{max(frames):08d}_emotion.txt").write_text(emotion)
    return seq


# ---------------------------------------------------------------- reading

def test_reads_hand_made_sequence(tmp_path):
    seq = make_tree(tmp_path / "ck")
    s = read_ckplus_sequence(seq)
    assert s.ids.dataset == "ckplus"
    assert (s.ids.subject, s.ids.session, s.ids.expression, s.ids.label) == ("S005", "001", "3", 3)
    assert s.ids.source == str(seq)
    assert s.n_frames == 3 and s.fps == 30.0
    assert s.frame_names == ("S005_001_00000001.png", "S005_001_00000002.png",
                             "S005_001_00000010.png")
    frames = list(s.iter_frames())
    assert len(frames) == 3
    for k, f in zip((1, 2, 10), frames):
        assert f.shape == (6, 8, 3) and f.dtype == np.uint8
        for c in range(3):  # grayscale replicated, lossless
            np.testing.assert_array_equal(f[:, :, c], gray(k))


def test_landmarks_per_frame_with_gaps(tmp_path):
    s = read_ckplus_sequence(make_tree(tmp_path / "ck"))
    lm1, lm2, lm10 = s.landmarks
    assert lm2 is None
    assert lm1.points.shape == (68, 2) and lm1.points.dtype == np.float64
    assert lm1.names[0] == "ibug_0" and lm1.names[67] == "ibug_67"
    assert lm1.provenance == "file:ckplus"
    assert lm1.points[0].tolist() == [101.0, 200.0]
    assert lm10.points[5].tolist() == pytest.approx([115.0, 198.75])


def test_real_file_formatting_parses(tmp_path):
    seq = make_tree(tmp_path / "ck", landmarks=())
    (tmp_path / "ck/Landmarks/S005/001/S005_001_00000002_landmarks.txt").write_text(LM_LINE * 68)
    s = read_ckplus_sequence(seq)
    assert s.landmarks[0] is None and s.landmarks[2] is None
    assert s.landmarks[1].points[67].tolist() == [290.61757, 237.24585]


def test_no_landmarks_no_emotion(tmp_path):
    s = read_ckplus_sequence(make_tree(tmp_path / "ck", landmarks=(), emotion=None))
    assert s.landmarks is None
    assert (s.ids.expression, s.ids.label) == ("", -1)


def test_rgb_and_16bit_frames(tmp_path):
    seq = make_tree(tmp_path / "ck", frames=(1,), landmarks=(), emotion=None)
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 2
    (seq / "S005_001_00000002.png").write_bytes(png_bytes(rgb))
    g16 = np.array([[0, 257, 65535], [514, 1000, 30000]], dtype=np.uint16)
    (seq / "S005_001_00000003.png").write_bytes(png_bytes(g16, bit_depth=16))
    f1, f2, f3 = read_ckplus_sequence(seq).iter_frames()
    np.testing.assert_array_equal(f2, rgb)
    expected = np.array([[0, 1, 255], [2, 4, 117]], dtype=np.uint8)  # round(v / 257)
    np.testing.assert_array_equal(f3, np.repeat(expected[:, :, None], 3, axis=2))


def test_frames_are_lazy(tmp_path):
    seq = make_tree(tmp_path / "ck", landmarks=(), emotion=None)
    (seq / "S005_001_00000010.png").write_bytes(b"not a png at all")
    s = read_ckplus_sequence(seq)  # nothing decoded yet: no error
    it = s.iter_frames()
    np.testing.assert_array_equal(next(it)[:, :, 0], gray(1))
    next(it)
    with pytest.raises(InputError, match="S005_001_00000010.png: cannot decode image"):
        next(it)


def test_truncated_image_raises_on_decode(tmp_path):
    seq = make_tree(tmp_path / "ck", frames=(1,), landmarks=(), emotion=None)
    big = (np.random.default_rng(0).integers(0, 256, (64, 64))).astype(np.uint8)
    data = png_bytes(big)
    (seq / "S005_001_00000001.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot decode image"):
        list(read_ckplus_sequence(seq).iter_frames())


def test_lying_png_headers(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bytes(gray(0), width=100_000, height=100_000))
    with pytest.raises(InputError, match="too large"):
        read_image_rgb(huge)
    lying = tmp_path / "lying.png"
    lying.write_bytes(png_bytes(gray(0), width=4000, height=4000))
    with pytest.raises(InputError, match="header promises 4000 x 4000 pixels"):
        read_image_rgb(lying)


def test_only_png_and_jpeg_are_decoded(tmp_path):
    bmp = tmp_path / "frame.png"
    Image.fromarray(gray(0)).save(bmp, format="BMP")  # a BMP wearing a .png name
    with pytest.raises(InputError, match="cannot decode image: cannot identify"):
        read_image_rgb(bmp)


# ---------------------------------------------------------------- bad inputs

def test_no_images(tmp_path):
    seq = tmp_path / "cohn-kanade-images" / "S005" / "001"
    seq.mkdir(parents=True)
    (seq / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        read_ckplus_sequence(seq)


def test_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        read_ckplus_sequence(tmp_path / "missing")


def test_duplicate_and_unnumbered_frames(tmp_path):
    seq = make_tree(tmp_path / "a", frames=(1,), landmarks=(), emotion=None)
    (seq / "S005_001_1.png").write_bytes(png_bytes(gray(1)))
    with pytest.raises(InputError, match="frame number 1 also used"):
        read_ckplus_sequence(seq)
    seq = make_tree(tmp_path / "b", frames=(1,), landmarks=(), emotion=None)
    (seq / "cover.png").write_bytes(png_bytes(gray(1)))
    with pytest.raises(InputError, match="cover.png: image name has no frame number"):
        read_ckplus_sequence(seq)


@pytest.mark.parametrize("text, reason", [
    (LM_LINE * 67, "wrong landmark count: 67 points, expected 68"),
    (LM_LINE * 69, "wrong landmark count: 69 points"),
    (LM_LINE * 67 + "   nan   1.0\n", "NaN/inf"),
    (LM_LINE * 67 + "   1.0   inf\n", "NaN/inf"),
    (LM_LINE * 67 + "   1.0   abc\n", "expected 2 numbers"),
    (LM_LINE * 67 + "   1.0   2.0   3.0\n", "expected 2 numbers"),
    ("", "empty file"),
])
def test_bad_landmark_file(tmp_path, text, reason):
    seq = make_tree(tmp_path / "ck", landmarks=())
    bad = tmp_path / "ck/Landmarks/S005/001/S005_001_00000002_landmarks.txt"
    bad.write_text(text)
    with pytest.raises(InputError, match=reason) as info:
        read_ckplus_sequence(seq)
    assert info.value.path == str(bad)


def test_oversized_landmark_file(tmp_path):
    seq = make_tree(tmp_path / "ck", landmarks=())
    (tmp_path / "ck/Landmarks/S005/001/S005_001_00000001_landmarks.txt").write_text(
        LM_LINE * 5000)
    with pytest.raises(InputError, match="limit"):
        read_ckplus_sequence(seq)


@pytest.mark.parametrize("text, reason", [
    ("   8.0000000e+00\n", "integer in 0..7"),
    ("  -1.0000000e+00\n", "integer in 0..7"),
    ("   2.5000000e+00\n", "integer in 0..7"),
    ("   nan\n", "integer in 0..7"),
    ("   3.0   4.0\n", "one number, found 2"),
    ("three\n", "'three' is not a number"),
    ("", "empty file"),
])
def test_bad_emotion_file(tmp_path, text, reason):
    seq = make_tree(tmp_path / "ck", emotion=text)
    with pytest.raises(InputError, match=reason):
        read_ckplus_sequence(seq)


def test_emotion_file_not_beside_last_frame_is_still_found(tmp_path):
    seq = make_tree(tmp_path / "ck", emotion=None)
    emo = tmp_path / "ck/Emotion/S005/001"
    emo.mkdir(parents=True)
    (emo / "S005_001_00000002_emotion.txt").write_text("   7.0000000e+00\n")
    assert read_ckplus_sequence(seq).ids.label == 7
    (emo / "S005_001_00000001_emotion.txt").write_text("   5.0000000e+00\n")
    with pytest.raises(InputError, match="2 emotion files"):
        read_ckplus_sequence(seq)


# ---------------------------------------------------------------- finding

def test_find_sequences_only_ckplus(tmp_path):
    a = make_tree(tmp_path / "deep" / "er" / "CK+", subject="S010", session="002")
    b = make_tree(tmp_path / "deep" / "er" / "CK+2")
    empty = tmp_path / "deep/er/CK+/cohn-kanade-images/S011/001"
    empty.mkdir(parents=True)
    # Look-alikes that are not CK+ sequences.
    oulu = tmp_path / "OriginalImg" / "VL" / "Strong" / "P001" / "Anger"
    oulu.mkdir(parents=True)
    (oulu / "000.png").write_bytes(png_bytes(gray(0)))
    other = tmp_path / "images" / "S005" / "001"
    other.mkdir(parents=True)
    (other / "S005_001_00000001.png").write_bytes(png_bytes(gray(0)))
    assert find_sequences(tmp_path) == sorted([a, b])
    assert find_sequences(a) == [a]
    assert find_sequences(oulu.parent) == []
    assert is_sequence_dir(a) and not is_sequence_dir(empty)
    assert not is_sequence_dir(other) and not is_sequence_dir(oulu)
    assert not is_sequence_dir(a.parent)


# ---------------------------------------------------------------- writing

def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    lms = rng.uniform(0, 640, (4, 68, 2))
    seq = write_ckplus_sequence(tmp_path, "S042", "003", frames, lms, emotion=5)
    assert seq == tmp_path / "cohn-kanade-images" / "S042" / "003"
    assert sorted(p.name for p in seq.iterdir()) == [f"S042_003_{k:08d}.png" for k in range(1, 5)]
    assert (tmp_path / "Emotion/S042/003/S042_003_00000004_emotion.txt").read_text() == \
        "   5.0000000e+00\n"
    s = read_ckplus_sequence(seq)
    assert (s.ids.subject, s.ids.session, s.ids.expression, s.ids.label) == ("S042", "003", "5", 5)
    np.testing.assert_array_equal(np.stack(list(s.iter_frames())), frames)
    got = np.stack([lm.points for lm in s.landmarks])
    np.testing.assert_allclose(got, lms, rtol=1e-7)  # 8 significant digits in %16.7e
    assert find_sequences(tmp_path) == [seq]


def test_writer_text_matches_real_files(tmp_path):
    lms = np.zeros((1, 68, 2))
    lms[0, :] = [290.61757, 237.24585]
    lms[0, 1] = [-1.5, 0.0]
    write_ckplus_sequence(tmp_path, "S005", "001", np.zeros((1, 4, 4), np.uint8), lms)
    lines = (tmp_path / "Landmarks/S005/001/S005_001_00000001_landmarks.txt").read_text() \
        .splitlines(keepends=True)
    assert len(lines) == 68
    assert lines[0] == LM_LINE
    assert lines[1] == "  -1.5000000e+00   0.0000000e+00\n"
    assert not (tmp_path / "Emotion").exists()


def test_writer_grayscale_frames(tmp_path):
    frames = np.stack([gray(k) for k in range(3)])
    seq = write_ckplus_sequence(tmp_path, "S001", "001", frames)
    with Image.open(seq / "S001_001_00000001.png") as im:
        assert im.mode == "L"
    got = np.stack(list(read_ckplus_sequence(seq).iter_frames()))
    np.testing.assert_array_equal(got, np.repeat(frames[..., None], 3, axis=3))


@pytest.mark.parametrize("kwargs, reason", [
    (dict(frames=np.zeros((2, 4, 4), np.float32)), "uint8"),
    (dict(frames=np.zeros((2, 4, 4, 4), np.uint8)), r"\(T, H, W\)"),
    (dict(frames=np.zeros((0, 4, 4), np.uint8)), "at least one"),
    (dict(landmarks=np.zeros((2, 67, 2))), r"\(2, 68, 2\)"),
    (dict(landmarks=np.full((2, 68, 2), np.nan)), "finite"),
    (dict(emotion=8), "0..7"),
    (dict(emotion=2.5), "0..7"),
    (dict(subject="../S005"), "plain folder name"),
    (dict(session=""), "plain folder name"),
])
def test_writer_rejects(tmp_path, kwargs, reason):
    args = dict(root=tmp_path, subject="S005", session="001",
                frames=np.zeros((2, 4, 4), np.uint8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=reason):
        write_ckplus_sequence(**args)


def test_registry_routes_ckplus_folders(tmp_path):
    seq = make_tree(tmp_path / "ck")
    assert format_of(seq).name == "ckplus"
    assert read_sequence(seq).ids.dataset == "ckplus"
    assert [it.path for it in list_items(tmp_path)] == [str(seq)]  # .txt files are no items
