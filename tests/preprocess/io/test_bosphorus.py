"""Bosphorus .bnt/.lm3/.lm2 readers and writers, checked on hand-built files."""
import struct
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from data_schema.errors import InputError
from preprocess.io import bosphorus as B
from preprocess.io.registry import read_scan
from preprocess.scan import Landmarks

ZMIN = -1e9


def bnt_bytes(nrows, ncols, planes, name=b"bs000_E_HAPPY_0.png", zmin=ZMIN, n=None):
    """A .bnt file: header + the five planes exactly as given (file order)."""
    flat = [v for p in planes for v in p]
    n = len(flat) if n is None else n
    return (struct.pack("<HHdH", nrows, ncols, zmin, len(name)) + name
            + struct.pack("<I", n) + struct.pack(f"<{len(flat)}d", *flat))


# 2 x 3 grid.  Plane value k is stored at bottom-up row k // 3, column k % 3, so the
# first three values of every plane are the BOTTOM row (top-down row 1).
X = [10, 11, 12, 20, 21, 22]
Y = [-5, -5, -5, 5, 5, 5]
Z = [ZMIN, 1, 2, 3, 4, 5]          # bottom-left cell missing
U = [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
V = [0.9, 0.9, 0.9, 0.1, 0.1, 0.1]  # v top-down in the file: the top row is near 0


def write_tiny(tmp_path, stem="bs000_E_HAPPY_0", **kw):
    p = tmp_path / f"{stem}.bnt"
    p.write_bytes(bnt_bytes(2, 3, [X, Y, Z, U, V], **kw))
    return p


def test_bnt_layout_bottom_up_rows_plane_after_plane(tmp_path):
    g = B.read_bnt(write_tiny(tmp_path))
    assert g.xyz.shape == (2, 3, 3) and g.uv.shape == (2, 3, 2)
    np.testing.assert_array_equal(g.xyz[..., 0], [[20, 21, 22], [10, 11, 12]])
    np.testing.assert_array_equal(g.xyz[..., 1], [[5, 5, 5], [-5, -5, -5]])
    np.testing.assert_array_equal(g.xyz[0, :, 2], [3, 4, 5])
    np.testing.assert_array_equal(g.valid, [[True, True, True], [False, True, True]])
    np.testing.assert_array_equal(g.uv[0, :, 1], [0.1, 0.1, 0.1])
    assert g.zmin == ZMIN and g.texture_name == "bs000_E_HAPPY_0.png"


def test_bnt_scan_vertices_faces_uv(tmp_path):
    s = B.read_bnt_scan(write_tiny(tmp_path))
    # valid cells in row-major order of the top-down grid: (0,0) (0,1) (0,2) (1,1) (1,2)
    np.testing.assert_array_equal(s.grid_index, [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(s.vertices, [[20, 5, 3], [21, 5, 4], [22, 5, 5],
                                               [11, -5, 1], [12, -5, 2]])
    assert s.grid_shape == (2, 3)
    # left cell has a missing corner shared by both triangles; right cell gives two
    np.testing.assert_array_equal(s.faces, [[1, 3, 2], [2, 3, 4]])
    np.testing.assert_array_equal(s.face_uv, s.faces)
    # v flipped to the Scan's v-up convention
    np.testing.assert_allclose(s.uv, [[0, 0.9], [0.5, 0.9], [1, 0.9], [0.5, 0.1], [1, 0.1]])
    assert s.ids.subject == "bs000" and s.ids.expression == "HAPPY" and s.ids.label == 3
    # face normals point to +z (towards the scanner)
    v = s.vertices
    n = np.cross(v[s.faces[:, 1]] - v[s.faces[:, 0]], v[s.faces[:, 2]] - v[s.faces[:, 0]])
    assert (n[:, 2] > 0).all()


def test_missing_texture_is_a_warning_and_present_texture_is_loaded(tmp_path):
    p = write_tiny(tmp_path)
    s = B.read_bnt_scan(p)
    assert s.texture is None
    assert any("bs000_E_HAPPY_0.png" in w and "not found" in w for w in s.extra["warnings"])
    img = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    Image.fromarray(img).save(tmp_path / "bs000_E_HAPPY_0.png")
    s = B.read_bnt_scan(p)
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "bs000_E_HAPPY_0.png" and s.extra["warnings"] == []


@pytest.mark.parametrize("name, reason", [(b"../x.png", "escapes"),
                                          (b"/etc/passwd", "absolute"),
                                          (b"C:\\tex\\x.png", "absolute")])
def test_texture_path_escaping_the_folder(tmp_path, name, reason):
    p = write_tiny(tmp_path, name=name)
    with pytest.raises(InputError, match=reason):
        B.read_bnt_scan(p)


def test_bnt_bad_inputs(tmp_path):
    p = tmp_path / "bs000_N_N_0.bnt"
    good = bnt_bytes(2, 3, [X, Y, Z, U, V])
    cases = [
        (b"", "empty file"),
        (good[:5], "truncated header"),
        (good[:-1], "truncated"),
        (good + b"\0" * 8, "trailing bytes"),
        (bnt_bytes(2, 3, [X, Y, Z, U, V], n=29), "N = 29"),
        (bnt_bytes(0, 3, []), "empty grid"),
        (bnt_bytes(2, 3, [X, Y, [np.nan, 1, 2, 3, 4, 5], U, V]), "NaN"),
        (bnt_bytes(2, 3, [X, Y, Z, U, V], zmin=np.inf), "zmin is not finite"),
    ]
    for data, reason in cases:
        p.write_bytes(data)
        with pytest.raises(InputError, match=reason):
            B.read_bnt(p)


def test_header_promising_gigabytes_fails_fast(tmp_path):
    p = tmp_path / "bs000_N_N_0.bnt"
    p.write_bytes(struct.pack("<HHdH", 65535, 65535, ZMIN, 4) + b"x.pn"
                  + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 78)
    assert p.stat().st_size == 100
    tracemalloc.start()
    with pytest.raises(InputError, match="truncated: header promises a 65535x65535 grid"):
        B.read_bnt(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, "the header's size is checked before anything is allocated"


def test_missing_file_and_no_valid_point(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        B.read_bnt(tmp_path / "bs000_N_N_0.bnt")
    p = tmp_path / "bs000_N_N_0.bnt"
    p.write_bytes(bnt_bytes(2, 3, [X, Y, [ZMIN] * 6, U, V]))
    with pytest.raises(InputError, match="no valid point"):
        B.read_bnt_scan(p)


def test_write_bnt_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(4, 5, 3)) * 50
    valid = rng.random((4, 5)) > 0.3
    uv = rng.random((4, 5, 2))
    p = tmp_path / "bs001_E_FEAR_0.bnt"
    B.write_bnt(p, xyz, valid, uv, "bs001_E_FEAR_0.png")
    g = B.read_bnt(p)
    np.testing.assert_array_equal(g.valid, valid)
    np.testing.assert_array_equal(g.xyz[valid], xyz[valid])
    assert (g.xyz[~valid] == -1e9).all()  # x = y = z = zmin in invalid cells
    np.testing.assert_array_equal(g.uv, uv)
    assert g.texture_name == "bs001_E_FEAR_0.png"
    # the writer follows the same byte layout as the hand-built file
    q = tmp_path / "bs000_E_HAPPY_0.bnt"
    xyz2 = np.stack([[[20, 21, 22], [10, 11, 12]], [[5, 5, 5], [-5, -5, -5]],
                     [[3, 4, 5], [ZMIN, 1, 2]]], axis=-1).astype(float)
    uv2 = np.stack([[[0, .5, 1], [0, .5, 1]], [[.1, .1, .1], [.9, .9, .9]]], axis=-1)
    B.write_bnt(q, xyz2, xyz2[..., 2] != ZMIN, uv2, "bs000_E_HAPPY_0.png")
    x_written = list(X)
    x_written[0] = ZMIN  # writer stores x = zmin in the missing cell
    assert q.read_bytes() == bnt_bytes(2, 3, [x_written, [ZMIN] + Y[1:], Z, U, V])


LM3 = ("# 3D Landmark File\r\n#\r\n# some info line\r\n\r\n3 landmarks:\r\n"
       "Outer left eyebrow\r\n-48.5 22.25 50\r\n\r\nNose tip\r\n0 -1.5 100.125\r\n"
       "Chin middle\r\n1 -70 80\r\n")


def test_read_lm3(tmp_path):
    p = tmp_path / "a.lm3"
    p.write_bytes(LM3.encode())
    lm = B.read_lm3(p)
    assert lm.names == ("Outer left eyebrow", "Nose tip", "Chin middle")
    assert lm.provenance == "file:lm3" and lm.vertex_index is None
    np.testing.assert_array_equal(lm.points, [[-48.5, 22.25, 50], [0, -1.5, 100.125],
                                              [1, -70, 80]])


@pytest.mark.parametrize("text, reason", [
    (LM3.replace("3 landmarks", "4 landmarks"), "wrong landmark count"),
    (LM3.replace("Nose tip", "Nose bridge"), "unknown landmark label 'Nose bridge'"),
    (LM3.replace("0 -1.5 100.125", "0 nan 100"), "NaN"),
    (LM3.replace("0 -1.5 100.125", "0 -1.5"), "expected 3 numbers"),
    (LM3 + "Left ear lobe\n", "no coordinate line"),
    (LM3.replace("# 3D Landmark File", "hello"), "not a 3D landmark file"),
    (LM3.replace("3 landmarks:", ""), "count line"),
    (LM3.replace("Chin middle", "Nose tip"), "duplicate"),
    ("", "empty file"),
])
def test_lm3_bad_inputs(tmp_path, text, reason):
    p = tmp_path / "a.lm3"
    p.write_text(text)
    with pytest.raises(InputError, match=reason):
        B.read_lm3(p)


LM2 = ("# 2D Landmark File\n2 landmarks\nLabels:\nNose tip\nLeft mouth corner\n\n"
       "2D Image coordinates:\n512 640\n400.5 800\n")


def test_read_lm2_and_bad_count(tmp_path):
    p = tmp_path / "a.lm2"
    p.write_text(LM2)
    lm = B.read_lm2(p)
    assert lm.names == ("Nose tip", "Left mouth corner") and lm.provenance == "file:lm2"
    np.testing.assert_array_equal(lm.points, [[512, 640], [400.5, 800]])
    p.write_text(LM2.replace("2 landmarks", "3 landmarks"))
    with pytest.raises(InputError, match="wrong landmark count"):
        B.read_lm2(p)
    p.write_text(LM2.replace("Nose tip", "Nose"))
    with pytest.raises(InputError, match="unknown landmark label 'Nose'"):
        B.read_lm2(p)


def test_landmark_writers_round_trip(tmp_path):
    pts = np.array([[1.25, -2.5, 3.0], [4.0, 5.125, -6.0]])
    lm = Landmarks(pts, ("Nose tip", "Right ear lobe"), "synthetic")
    B.write_lm3(tmp_path / "a.lm3", lm)
    back = B.read_lm3(tmp_path / "a.lm3")
    assert back.names == lm.names
    np.testing.assert_allclose(back.points, pts, atol=1e-6)
    lm2 = Landmarks(pts[:, :2], lm.names, "synthetic")
    B.write_lm2(tmp_path / "a.lm2", lm2)
    np.testing.assert_allclose(B.read_lm2(tmp_path / "a.lm2").points, pts[:, :2], atol=1e-6)


def test_scan_picks_up_landmarks_beside_it(tmp_path):
    p = write_tiny(tmp_path)
    (tmp_path / "bs000_E_HAPPY_0.lm3").write_text(LM3)
    (tmp_path / "bs000_E_HAPPY_0.lm2").write_text(LM2)
    s = read_scan(p)  # through the registry
    assert s.landmarks.provenance == "file:lm3" and len(s.landmarks.names) == 3
    assert s.landmarks2d.points.shape == (2, 2)


def test_landmark_list_has_24_labels():
    assert len(B.BOSPHORUS_LANDMARKS) == 24 == len(set(B.BOSPHORUS_LANDMARKS))
    assert B.BOSPHORUS_LANDMARKS[13] == "Nose tip"
    assert B.BOSPHORUS_LANDMARKS[-1] == "Right ear lobe"


@pytest.mark.parametrize("name, subject, session, expression, label", [
    ("bs000_E_HAPPY_0.bnt", "bs000", "0", "HAPPY", 3),
    ("bs001_N_N_2.bnt", "bs001", "2", "NEUTRAL", 6),
    ("bs000_E_ANGER_0.lm3", "bs000", "0", "ANGER", 0),
    ("bs000_LFAU_12_0.bnt", "bs000", "0", "LFAU_12", -1),
    ("bs000_CAU_A22A25_0.bnt", "bs000", "0", "CAU_A22A25", -1),
    ("bs104_YR_R10_0.bnt", "bs104", "0", "YR_R10", -1),
    ("bs010_O_GLASSES_0.bnt", "bs010", "0", "O_GLASSES", -1),
])
def test_parse_name(name, subject, session, expression, label):
    ids = B.parse_bosphorus_name(name)
    assert (ids.dataset, ids.subject, ids.session, ids.expression, ids.label) == \
        ("bosphorus", subject, session, expression, label)


@pytest.mark.parametrize("name, reason", [("face.bnt", "pattern"),
                                          ("bs000_Q_X_0.bnt", "unknown Bosphorus expression class"),
                                          ("bs000_E_JOY_0.bnt", "unknown Bosphorus emotion")])
def test_parse_name_rejects(name, reason):
    with pytest.raises(InputError, match=reason):
        B.parse_bosphorus_name(name)


def test_texture_uv_lands_on_the_lm2_pixel_of_the_same_landmark(tmp_path):
    """Real-file fact, from LIZHANGYAN/fileread data/bs000_CAU_A22A25_0.{bnt,lm3,lm2,png}:
    every lm3 point is a grid vertex, and that vertex's uv (v-up) turned into pixels as
    (u W, (1 - v) H) lands on the lm2 point of the same label (mean 2.4 px, max 4.2 px
    over 22 labels, on a 1116 x 1398 texture with about 6 px per grid cell).  Here: the
    top-right cell (file uv (1.0, 0.1)) on a 4 x 10 texture is pixel (4, 1)."""
    p = write_tiny(tmp_path)
    Image.fromarray(np.zeros((10, 4, 3), np.uint8)).save(tmp_path / "bs000_E_HAPPY_0.png")
    B.write_lm3(tmp_path / "bs000_E_HAPPY_0.lm3",
                Landmarks(np.array([[22.0, 5.0, 5.0]]), ("Nose tip",), "test"))
    B.write_lm2(tmp_path / "bs000_E_HAPPY_0.lm2",
                Landmarks(np.array([[4.0, 1.0]]), ("Nose tip",), "test"))
    s = B.read_bnt_scan(p)
    i = int(np.argmin(np.linalg.norm(s.vertices - s.landmarks.points[0], axis=1)))
    h, w = s.texture.shape[:2]
    pixel = (s.uv[i, 0] * w, (1.0 - s.uv[i, 1]) * h)
    np.testing.assert_allclose(pixel, s.landmarks2d.points[0])


def test_left_labels_lie_at_negative_x_on_the_image_left(tmp_path):
    """Real-file fact, from LIZHANGYAN/fileread data/bs000_CAU_A22A25_0.lm3/.lm2: in the
    scan's frame (nose tip z = 48 mm, the largest z; +y up) "Outer left eyebrow" is at
    x = -90.3 mm and "Outer right eyebrow" at x = +33.3 mm, and on the texture the
    "left" one is at pixel x = 78 of 1116: "left" = image left = the subject's right.
    The reader keeps the file's labels and coordinates as they are."""
    (tmp_path / "bs000_E_HAPPY_0.lm3").write_text(
        "# 3D Landmark File\n\n3 landmarks:\nOuter left eyebrow\n-90.275 13.1 -6.515\n"
        "Outer right eyebrow\n33.268 14.075 -10.069\nNose tip\n-25.335 -23.994 48.096\n")
    lm = B.read_lm3(tmp_path / "bs000_E_HAPPY_0.lm3")
    x = dict(zip(lm.names, lm.points[:, 0]))
    assert x["Outer left eyebrow"] < x["Nose tip"] < x["Outer right eyebrow"]


def test_name_outside_the_pattern_is_read_as_generic_with_a_warning(tmp_path):
    d = tmp_path / "subject9"
    d.mkdir()
    p = write_tiny(d, stem="face_scan")
    B.write_lm3(d / "face_scan.lm3", Landmarks(np.array([[21.0, 5.0, 4.0]]), ("Nose tip",), "t"))
    s = read_scan(p)
    assert (s.ids.dataset, s.ids.subject, s.ids.session, s.ids.label) == \
        ("generic", "subject9", "face_scan", -1)
    assert s.landmarks.names == ("Nose tip",) and s.vertices.shape == (5, 3)
    assert any("Bosphorus pattern" in w and "generic" in w for w in s.extra["warnings"])


@pytest.mark.parametrize("name, reason", [("bs000_Q_X_0", "unknown Bosphorus expression class"),
                                          ("bs000_E_JOY_0", "unknown Bosphorus emotion")])
def test_name_in_the_pattern_with_a_wrong_code_stays_an_error(tmp_path, name, reason):
    with pytest.raises(InputError, match=reason):
        B.read_bnt_scan(write_tiny(tmp_path, stem=name))


def test_renamed_scan_falls_back_to_the_png_of_its_own_stem(tmp_path):
    """Real-file fact, from LIZHANGYAN/fileread data/bs000_CAU_A22A25_0.bnt: the header
    names the texture after the scan's own stem ('bs000_CAU_A22A25_0.png'), so a renamed
    scan names a file that is not there; the .png of its new stem is used, with a note."""
    p = write_tiny(tmp_path)                       # header names bs000_E_HAPPY_0.png
    renamed = p.rename(tmp_path / "scan7.bnt")
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(tmp_path / "scan7.png")
    s = read_scan(renamed)
    assert s.texture is not None and s.texture.shape == (4, 4, 3)
    assert any("'scan7.png'" in w for w in s.extra["warnings"])
    (tmp_path / "bs000_E_HAPPY_0.png").write_bytes((tmp_path / "scan7.png").read_bytes())
    s = read_scan(renamed)                         # the header's own name wins when present
    assert not any("scan7.png" in w for w in s.extra["warnings"])
