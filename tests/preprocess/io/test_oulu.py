"""Oulu-CASIA reader/writer: hand-made trees, writer round trips (JPEG tolerance
stated), layout detection and bad inputs with their reasons."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_schema.errors import InputError
from preprocess.io import format_of, read_sequence
from preprocess.io.oulu import (
    find_sequences, is_sequence_dir, read_oulu_sequence, session_of, write_oulu_sequence,
)


def smooth(k: int, h: int = 32, w: int = 48) -> np.ndarray:
    """A smooth RGB frame (JPEG keeps it within a few grey levels), different per k."""
    y, x = np.mgrid[0:h, 0:w]
    f = np.empty((h, w, 3), np.uint8)
    f[..., 0] = 40 + 3 * x + 2 * k
    f[..., 1] = 60 + 4 * y
    f[..., 2] = 180 - x - y
    return f


def make_seq(root: Path, names=("000.jpeg", "001.jpeg", "002.jpeg"), light="VL",
             strength="Strong", subject="P012", emotion="Anger") -> Path:
    parts = [p for p in ("OriginalImg", light, strength) if p]
    folder = root.joinpath(*parts, subject, emotion)
    folder.mkdir(parents=True)
    for name in names:
        k = int(Path(name).stem)
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        Image.fromarray(smooth(k)).save(folder / name, format=fmt, quality=95)
    return folder


def test_reads_hand_made_sequence(tmp_path):
    seq = make_seq(tmp_path, names=("10.jpeg", "2.jpg", "000.jpeg", "1.png"))
    s = read_oulu_sequence(seq)
    assert (s.ids.dataset, s.ids.subject, s.ids.session) == ("oulu", "P012", "VL_Strong")
    assert (s.ids.expression, s.ids.label) == ("Anger", 0)
    assert s.ids.source == str(seq)
    assert s.fps == 25.0 and s.landmarks is None
    assert s.frame_names == ("000.jpeg", "1.png", "2.jpg", "10.jpeg")  # by number
    frames = list(s.iter_frames())
    assert len(frames) == s.n_frames == 4
    np.testing.assert_array_equal(frames[1], smooth(1))  # the PNG is lossless
    for k, f in zip((0, 2, 10), (frames[0], frames[2], frames[3])):
        assert f.shape == (32, 48, 3) and f.dtype == np.uint8
        assert np.abs(f.astype(int) - smooth(k)).mean() < 2.0  # JPEG quality 95


@pytest.mark.parametrize("light, strength, session", [
    ("VL", "Strong", "VL_Strong"), ("NI", "Dark", "NI_Dark"), ("VL", "Weak", "VL_Weak"),
    ("", "", ""), ("XX", "Strong", ""),
])
def test_session(tmp_path, light, strength, session):
    seq = make_seq(tmp_path, names=("000.jpeg",), light=light, strength=strength)
    assert read_oulu_sequence(seq).ids.session == session == session_of(seq)


@pytest.mark.parametrize("emotion, label", [
    ("Anger", 0), ("Disgust", 1), ("Fear", 2), ("Happiness", 3), ("Sadness", 4), ("Surprise", 5),
])
def test_labels(tmp_path, emotion, label):
    seq = make_seq(tmp_path, names=("000.jpeg",), emotion=emotion)
    assert read_oulu_sequence(seq).ids.label == label


def test_grayscale_frames_become_rgb(tmp_path):
    folder = tmp_path / "P001" / "Fear"
    folder.mkdir(parents=True)
    g = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (8, 1))
    Image.fromarray(g, "L").save(folder / "000.png")
    (f,) = read_oulu_sequence(folder).iter_frames()
    np.testing.assert_array_equal(f, np.repeat(g[:, :, None], 3, axis=2))


def test_find_sequences_only_oulu(tmp_path):
    a = make_seq(tmp_path / "oulu", names=("000.jpeg",))
    b = make_seq(tmp_path / "oulu", names=("000.jpeg",), light="NI", strength="Weak",
                 subject="P001", emotion="Surprise")
    # Look-alikes: a seventh "emotion", a subject folder not named P<digits>, an empty
    # sequence, and a CK+ tree.
    for d in ("oulu/OriginalImg/VL/Strong/P012/Neutral", "oulu/OriginalImg/VL/Strong/S012/Anger",
              "ck/cohn-kanade-images/S005/001"):
        (tmp_path / d).mkdir(parents=True)
        Image.fromarray(smooth(0)).save(tmp_path / d / "000.png")
    empty = tmp_path / "oulu/OriginalImg/VL/Strong/P013/Anger"
    empty.mkdir(parents=True)
    assert find_sequences(tmp_path) == sorted([a, b])
    assert find_sequences(tmp_path / "ck") == []
    assert is_sequence_dir(a) and is_sequence_dir(b)
    assert not is_sequence_dir(empty)
    assert not is_sequence_dir(tmp_path / "oulu/OriginalImg/VL/Strong/P012/Neutral")
    assert not is_sequence_dir(a.parent)


def test_corrupt_frame_raises_when_reached(tmp_path):
    seq = make_seq(tmp_path, names=("000.jpeg", "001.jpeg"))
    data = (seq / "001.jpeg").read_bytes()
    (seq / "001.jpeg").write_bytes(data[: len(data) // 3])
    it = read_oulu_sequence(seq).iter_frames()
    next(it)
    with pytest.raises(InputError, match="001.jpeg: cannot decode image"):
        next(it)


def test_no_images(tmp_path):
    folder = tmp_path / "P012" / "Anger"
    folder.mkdir(parents=True)
    (folder / "Thumbs.db").write_bytes(b"\0" * 10)
    with pytest.raises(InputError, match="no images"):
        read_oulu_sequence(folder)


def test_write_read_round_trip(tmp_path):
    frames = np.stack([smooth(k) for k in range(5)])
    seq = write_oulu_sequence(tmp_path, "P007", "Happiness", frames, light="NI", strength="Dark")
    assert seq == tmp_path / "OriginalImg" / "NI" / "Dark" / "P007" / "Happiness"
    assert sorted(p.name for p in seq.iterdir()) == [f"{k:03d}.jpeg" for k in range(5)]
    assert find_sequences(tmp_path) == [seq]
    s = read_oulu_sequence(seq)
    assert (s.ids.subject, s.ids.session, s.ids.expression, s.ids.label) == \
        ("P007", "NI_Dark", "Happiness", 3)
    got = np.stack(list(s.iter_frames())).astype(int)
    assert np.abs(got - frames).mean() < 2.0  # JPEG q95 on smooth content
    assert np.abs(got - frames).max() <= 16


def test_write_without_session_and_grayscale(tmp_path):
    frames = np.stack([smooth(k)[..., 1] for k in range(2)])
    seq = write_oulu_sequence(tmp_path, "P001", "Sadness", frames, light="", strength="")
    assert seq == tmp_path / "OriginalImg" / "P001" / "Sadness"
    s = read_oulu_sequence(seq)
    assert s.ids.session == ""
    f = next(s.iter_frames())
    assert np.abs(f[..., 0].astype(int) - frames[0]).mean() < 2.0


@pytest.mark.parametrize("kwargs, reason", [
    (dict(subject="S012"), "P012"),
    (dict(subject="P1/../x"), "plain folder name"),
    (dict(emotion="Neutral"), "emotion must be one of"),
    (dict(light="IR"), "light/strength"),
    (dict(light=""), "light/strength"),
    (dict(frames=np.zeros((1, 4, 4), np.int16)), "uint8"),
])
def test_writer_rejects(tmp_path, kwargs, reason):
    args = dict(root=tmp_path, subject="P012", emotion="Anger",
                frames=np.zeros((1, 4, 4), np.uint8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=reason):
        write_oulu_sequence(**args)


def test_registry_routes_oulu_folders(tmp_path):
    seq = make_seq(tmp_path, names=("000.jpeg",))
    assert format_of(seq).name == "oulu"
    assert read_sequence(seq).ids.dataset == "oulu"
