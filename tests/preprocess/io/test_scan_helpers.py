"""Shared reader helpers: grid triangulation, fan triangulation, safe asset paths,
numeric tokenising, bounded reading."""
import gzip

import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.io._grid import grid_faces, grid_mesh
from preprocess.io._mesh import fan_triangulate, load_image, polygon_offsets, resolve_asset
from preprocess.io._text import (line_token_counts, parse_numbers, read_bytes, read_text,
                                 wraps_input_errors)


def test_grid_faces_full_and_with_holes():
    full = np.ones((2, 2), bool)
    np.testing.assert_array_equal(grid_faces(full), [[0, 2, 1], [1, 2, 3]])
    # one missing corner leaves the one triangle that avoids it
    valid = np.array([[1, 1], [1, 0]], bool)
    np.testing.assert_array_equal(grid_faces(valid), [[0, 2, 1]])
    valid = np.array([[0, 1], [1, 1]], bool)
    np.testing.assert_array_equal(grid_faces(valid), [[0, 1, 2]])
    assert grid_faces(np.ones((1, 5), bool)).shape == (0, 3)


def test_grid_faces_around_a_hole():
    # 3 x 3 grid, centre missing; vertex ids: row 0 -> 0 1 2, row 1 -> 3 . 4, row 2 -> 5 6 7
    valid = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool)
    f = grid_faces(valid)
    # cell (0,0): a=0 b=1 c=3 d=- -> (0,3,1); cell (0,1): a=1 b=2 c=- d=4 -> none
    # cell (1,0): a=3 b=- c=5 d=6 -> none;    cell (1,1): a=- b=4 c=6 d=7 -> (4,6,7)
    np.testing.assert_array_equal(f, [[0, 3, 1], [4, 6, 7]])


def test_grid_mesh_order():
    xyz = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    valid = np.array([[False, True], [True, True]])
    v, f, gi = grid_mesh(xyz, valid)
    np.testing.assert_array_equal(gi, [1, 2, 3])
    np.testing.assert_array_equal(v, xyz.reshape(-1, 3)[1:])
    np.testing.assert_array_equal(f, [[0, 1, 2]])


def test_fan_triangulate():
    corners = np.array([10, 11, 12, 20, 21, 22, 23, 24])
    off = polygon_offsets(np.array([3, 5]))
    np.testing.assert_array_equal(off, [0, 3, 8])
    np.testing.assert_array_equal(fan_triangulate(corners, off),
                                  [[10, 11, 12], [20, 21, 22], [20, 22, 23], [20, 23, 24]])
    assert fan_triangulate(np.zeros(0, int), np.array([0])).shape == (0, 3)


@pytest.mark.parametrize("name, reason", [
    ("../x.png", "escapes"), ("sub/../../x.png", "escapes"), ("..\\x.png", "escapes"),
    ("/etc/passwd", "absolute"), ("C:\\x.png", "absolute"),
    ("\\\\server\\share\\x.png", "absolute"),
    ("", "invalid"),
])
def test_resolve_asset_rejects(tmp_path, name, reason):
    with pytest.raises(InputError, match=reason):
        resolve_asset(tmp_path / "scan.bnt", name)


def test_resolve_asset_accepts_inside(tmp_path):
    assert resolve_asset(tmp_path / "scan.bnt", "tex.png") == tmp_path / "tex.png"
    assert resolve_asset(tmp_path / "scan.bnt", "sub\\tex.png") == tmp_path / "sub" / "tex.png"


def test_load_image_errors(tmp_path):
    p = tmp_path / "t.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match="unreadable image"):
        load_image(p)
    # a PPM header promising 100000 x 100000 pixels is refused before decoding
    p = tmp_path / "t.ppm"
    p.write_bytes(b"P6\n100000 100000\n255\n" + b"\0" * 30)
    with pytest.raises(InputError, match="pixel limit"):
        load_image(p)


def test_parse_numbers_quirks(tmp_path):
    assert parse_numbers(" \n ", "f", "x").size == 0           # np.fromstring gives [-1.]
    np.testing.assert_array_equal(parse_numbers("1 2\r\n\t3", "f", "x"), [1, 2, 3])
    np.testing.assert_array_equal(parse_numbers("-1 7", "f", "x", np.int64), [-1, 7])
    with pytest.raises(InputError, match="'1.5' is not an integer"):
        parse_numbers("1 1.5", "f", "idx", np.int64)
    with pytest.raises(InputError, match="out of range"):
        parse_numbers("99999999999999999999", "f", "idx", np.int64)
    with pytest.raises(InputError, match="'0x10' is not a number"):
        parse_numbers("1 0x10", "f", "v")


def test_line_token_counts():
    np.testing.assert_array_equal(line_token_counts(["1 2 3", "  4\t5 ", "", "é 1"]), [3, 2, 0, 2])


def test_read_bytes_limits(tmp_path):
    p = tmp_path / "a.txt.gz"
    p.write_bytes(gzip.compress(b"0" * 10_000))
    with pytest.raises(InputError, match="decompresses to more than"):
        read_bytes(p, max_bytes=1000)
    assert read_bytes(p) == b"0" * 10_000
    q = tmp_path / "b.txt"
    q.write_bytes(b"x" * 2000)
    with pytest.raises(InputError, match="more than the 1000 bytes limit"):
        read_bytes(q, max_bytes=1000)
    q.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9")
    assert read_text(q) == "café"
    q.write_bytes(b"caf\xe9")               # Latin-1 fallback
    assert read_text(q) == "café"
    q.write_bytes(b"ab\x00cd")
    with pytest.raises(InputError, match="NUL"):
        read_text(q)


def test_wraps_input_errors():
    @wraps_input_errors
    def reader(path):
        raise KeyError("boom")

    with pytest.raises(InputError, match="x.bin: unreadable \\(KeyError"):
        reader("x.bin")
