"""FRGC .abs/.abs.gz reader and writer, on hand-written files."""
import gzip
import tracemalloc

import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.io import frgc as FR
from preprocess.io._text import NamePatternError
from preprocess.io.registry import read_scan

# 2 rows x 3 columns, row-major, rows top-down; the point (1, 0) is missing
ABS = ("2 rows\n3 columns\npixels (flag X Y Z):\n"
       "1 1 1 0 1 1 \n"
       "-1.0 0.0 1.0 -999999.000000 0.0 1.0 \n"
       "1.0 1.0 1.0 -999999.000000 0.0 0.0 \n"
       "-50.5 -50 -50.25 -999999.000000 -51 -52 \n")


def test_read_abs_hand_made(tmp_path):
    p = tmp_path / "04200d74.abs"
    p.write_text(ABS)
    g = FR.read_abs(p)
    np.testing.assert_array_equal(g.valid, [[True, True, True], [False, True, True]])
    np.testing.assert_array_equal(g.xyz[0], [[-1, 1, -50.5], [0, 1, -50], [1, 1, -50.25]])
    np.testing.assert_array_equal(g.xyz[1, 2], [1, 0, -52])


def test_read_abs_gz_scan(tmp_path):
    p = tmp_path / "04200d74.abs.gz"
    p.write_bytes(gzip.compress(ABS.replace("\n", "\r\n").encode()))
    s = read_scan(p)  # through the registry
    assert s.ids.dataset == "frgc" and s.ids.subject == "04200" and s.ids.session == "d74"
    assert s.ids.label == -1
    np.testing.assert_array_equal(s.grid_index, [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(s.faces, [[1, 3, 2], [2, 3, 4]])
    assert s.grid_shape == (2, 3) and s.colors is None
    assert any(".ppm" in w for w in s.extra["warnings"])


def test_ppm_colours(tmp_path):
    p = tmp_path / "04200d74.abs"
    p.write_text(ABS)
    pixels = bytes(range(18))  # 3 x 2 RGB image, row-major
    (tmp_path / "04200d74.ppm").write_bytes(b"P6\n3 2\n255\n" + pixels)
    s = FR.read_abs_scan(p)
    rgb = np.frombuffer(pixels, np.uint8).reshape(6, 3)
    np.testing.assert_array_equal(s.colors, rgb[[0, 1, 2, 4, 5]])
    assert s.texture_name == "04200d74.ppm"
    (tmp_path / "04200d74.ppm").write_bytes(b"P6\n2 2\n255\n" + pixels[:12])
    s = FR.read_abs_scan(p)
    assert s.colors is None and "2x2 pixels" in s.extra["warnings"][0]


@pytest.mark.parametrize("text, reason", [
    ("", "empty file"),
    ("2 rows\n3 columns\n", "truncated: no data"),
    (ABS.replace("2 rows", "two rows"), "not an .abs file"),
    (ABS.replace("1 1 1 0 1 1", "1 1 1 0 1"), "flags line has 5 values, expected 2 x 3 = 6"),
    (ABS.replace("-52 \n", "-52 7\n"), "Z line has 7 values"),
    (ABS.replace("1 1 1 0 1 1", "1 1 2 0 1 1"), "flags must be 0 or 1"),
    (ABS.replace("-50.25", "nan"), "NaN"),
    (ABS.replace("-50.25", "abc"), "'abc' is not a number"),
    (ABS.replace("2 rows", "0 rows"), "empty grid"),
    (ABS.replace("2 rows", "100000 rows"), "truncated: header promises 100000 x 3"),
])
def test_abs_bad_inputs(tmp_path, text, reason):
    p = tmp_path / "04200d74.abs"
    p.write_text(text)
    with pytest.raises(InputError, match=reason):
        FR.read_abs(p)


def test_huge_header_fails_fast_plain_and_gz(tmp_path):
    text = ABS.replace("2 rows", "100000 rows").replace("3 columns", "100000 columns")
    for name, data in (("a.abs", text.encode()), ("a.abs.gz", gzip.compress(text.encode()))):
        p = tmp_path / name
        p.write_bytes(data)
        tracemalloc.start()
        with pytest.raises(InputError, match="header promises 100000 x 100000"):
            FR.read_abs(p)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 << 20, "the header's size is checked before anything is allocated"
    p = tmp_path / "b.abs.gz"
    p.write_bytes(gzip.compress(ABS.replace("2 rows", "300 rows").encode()))
    with pytest.raises(InputError, match="truncated: header promises 300 x 3"):
        FR.read_abs(p)


def test_corrupt_and_truncated_gzip(tmp_path):
    p = tmp_path / "04200d74.abs.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage-garbage")
    with pytest.raises(InputError, match="gzip"):
        FR.read_abs(p)
    p.write_bytes(gzip.compress(ABS.encode())[:-12])
    with pytest.raises(InputError, match="gzip"):
        FR.read_abs(p)


def test_data_longer_than_the_grid(tmp_path):
    p = tmp_path / "04200d74.abs"
    p.write_text(ABS + "0 " * 400)
    with pytest.raises(InputError, match="more than 2 x 3 points can fill"):
        FR.read_abs(p)


@pytest.mark.parametrize("gz", [False, True])
def test_write_abs_round_trip(tmp_path, gz):
    rng = np.random.default_rng(4)
    xyz = rng.normal(size=(5, 7, 3)) * 100
    valid = rng.random((5, 7)) > 0.25
    p = tmp_path / ("02463d550.abs.gz" if gz else "02463d550.abs")
    FR.write_abs(p, xyz, valid, gz=gz)
    if gz:
        assert p.read_bytes()[:2] == b"\x1f\x8b"
    g = FR.read_abs(p)
    np.testing.assert_array_equal(g.valid, valid)
    np.testing.assert_allclose(g.xyz[valid], xyz[valid], atol=1e-6)
    assert (g.xyz[~valid] == FR.INVALID).all()
    p2 = tmp_path / "again.abs.gz"
    FR.write_abs(p2, xyz, valid, gz=True)
    FR.write_abs(p, xyz, valid, gz=True)
    assert p2.read_bytes() == p.read_bytes()  # byte-stable gzip (no time stamp)


def test_parse_frgc_name():
    ids = FR.parse_frgc_name("x/04200d74.abs.gz")
    assert (ids.dataset, ids.subject, ids.session, ids.label) == ("frgc", "04200", "d74", -1)
    for name in ("face.abs", "04200.abs", "d74.abs", "04200d74x.abs"):
        with pytest.raises(NamePatternError, match="FRGC pattern"):
            FR.parse_frgc_name(name)


@pytest.mark.parametrize("name, ppm, session", [
    ("face.abs", "face.ppm", "face"),
    ("face.abs.gz", "face.ppm.gz", "face"),
    ("scan.v2.abs", "scan.v2.ppm", "scan.v2"),
])
def test_name_outside_the_pattern_is_read_as_generic_with_its_ppm(tmp_path, name, ppm, session):
    d = tmp_path / "person1"
    d.mkdir()
    p = d / name
    p.write_bytes(gzip.compress(ABS.encode()) if name.endswith(".gz") else ABS.encode())
    pixels = bytes(range(18))
    data = b"P6\n3 2\n255\n" + pixels
    (d / ppm).write_bytes(gzip.compress(data) if ppm.endswith(".gz") else data)
    s = read_scan(p)  # through the registry
    assert (s.ids.dataset, s.ids.subject, s.ids.session, s.ids.label) == \
        ("generic", "person1", session, -1)
    np.testing.assert_array_equal(s.colors, np.frombuffer(pixels, np.uint8).reshape(6, 3)[
        [0, 1, 2, 4, 5]])
    assert s.texture_name == ppm and s.grid_shape == (2, 3)
    assert len(s.extra["warnings"]) == 1
    assert "FRGC pattern" in s.extra["warnings"][0] and "generic" in s.extra["warnings"][0]


def test_generic_abs_without_ppm_has_two_warnings(tmp_path):
    p = tmp_path / "face.abs"
    p.write_text(ABS)
    (tmp_path / "04200d74.ppm").write_bytes(b"P6\n3 2\n255\n" + bytes(18))  # not its stem
    s = FR.read_abs_scan(p)
    assert s.ids.dataset == "generic" and s.colors is None
    assert "FRGC pattern" in s.extra["warnings"][0] and ".ppm" in s.extra["warnings"][1]


def test_no_valid_point(tmp_path):
    p = tmp_path / "04200d74.abs"
    p.write_text(ABS.replace("1 1 1 0 1 1", "0 0 0 0 0 0"))
    with pytest.raises(InputError, match="no valid point"):
        FR.read_abs_scan(p)
