"""BU-3DFE .wrl/.bnd readers and writers, checked on hand-written files."""
import numpy as np
import pytest
from PIL import Image

from data_schema.errors import InputError
from preprocess.io import bu3dfe as U
from preprocess.io.registry import read_scan
from preprocess.scan import Landmarks

# six vertices; a quad (0 1 2 3) and a pentagon (0 3 4 5 1); the last polygon has no -1
WRL = """#VRML V2.0 utf8
# a comment with brackets [ 9 9 9 ] and a point [ list ]
DEF F0001_AN01WH_F3D Transform {
  children [
    Shape {
      appearance Appearance {
        texture ImageTexture { url "F0001_AN01WH_F3D.bmp" }
      }
      geometry IndexedFaceSet {
        coord DEF co Coordinate {
          point [
            0 0 0, 1 0 0,   # first row
            1 1 0,
            0 1 0, -1 1 0
            -1 0 0.5
          ]
        }
        coordIndex [ 0, 1, 2, 3, -1, 0 3 4 5 1 ]
        texCoord DEF tc TextureCoordinate {
          point [ 0 0, 1 0, 1 1, 0 1, 0.5 0.5, 0.25 0.75, 0.1 0.2 ] }
        texCoordIndex [ 0 1 2 3 -1 6 3 4 5 1 -1 ]
      }
    }
  ]
}
"""


def write(tmp_path, text, name="F0001_AN01WH_F3D.wrl"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_wrl_hand_made(tmp_path):
    m = U.read_wrl(write(tmp_path, WRL))
    np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                                               [-1, 1, 0], [-1, 0, 0.5]])
    np.testing.assert_array_equal(m.polygons, [0, 1, 2, 3, 0, 3, 4, 5, 1])
    np.testing.assert_array_equal(m.offsets, [0, 4, 9])
    assert m.uv.shape == (7, 2) and m.texture_url == "F0001_AN01WH_F3D.bmp"
    np.testing.assert_array_equal(m.poly_uv, [0, 1, 2, 3, 6, 3, 4, 5, 1])
    assert m.colors is None


def test_wrl_scan_fan_triangles(tmp_path):
    s = U.read_wrl_scan(write(tmp_path, WRL))
    # quad -> 2 fan triangles, pentagon -> 3, all from the polygon's first corner
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5],
                                            [0, 5, 1]])
    np.testing.assert_array_equal(s.face_uv, [[0, 1, 2], [0, 2, 3], [6, 3, 4], [6, 4, 5],
                                              [6, 5, 1]])
    assert s.ids.subject == "F0001" and s.ids.expression == "AN" and s.ids.session == "01"
    assert s.ids.label == 0
    assert s.texture is None and "not found" in s.extra["warnings"][0]


def test_wrl_scan_bmp_texture(tmp_path):
    img = np.zeros((3, 4, 3), np.uint8)
    img[0, 0] = (255, 0, 0)
    img[2, 3] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / "F0001_AN01WH_F3D.bmp")
    s = read_scan(write(tmp_path, WRL))
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "F0001_AN01WH_F3D.bmp"


@pytest.mark.parametrize("url, reason", [("../x.bmp", "escapes"), ("/etc/passwd", "absolute")])
def test_texture_url_escaping(tmp_path, url, reason):
    with pytest.raises(InputError, match=reason):
        U.read_wrl_scan(write(tmp_path, WRL.replace("F0001_AN01WH_F3D.bmp", url)))


def test_per_vertex_colours(tmp_path):
    text = """#VRML V2.0 utf8
Shape { geometry IndexedFaceSet {
  coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }
  coordIndex [ 0 1 2 -1 ]
  color Color { color [ 1 0 0, 0 0.5 0, 0 0 1 ] }
} }
"""
    m = U.read_wrl(write(tmp_path, text))
    np.testing.assert_array_equal(m.colors, [[255, 0, 0], [0, 128, 0], [0, 0, 255]])
    assert m.uv is None and m.texture_url == ""
    with pytest.raises(InputError, match="2 colours for 3 vertices"):
        U.read_wrl(write(tmp_path, text.replace("0 0 1 ]", "]")))


@pytest.mark.parametrize("old, new, reason", [
    ("#VRML V2.0 utf8", "#VRML V1.0 ascii", "not a VRML 2.0"),
    ("0 3 4 5 1 ]", "0 3 4 5 6 ]", "index 6 out of range"),
    ("0 3 4 5 1 ]", "0 3 -1 ]", "polygon 1 has 2 vertices"),
    ("-1 0 0.5", "-1 0 nan", "NaN"),
    ("-1 0 0.5", "-1 0 0.5 7", "not a multiple of 3"),
    ("0, 1, 2, 3, -1", "0, 1, 2.5, 3, -1", "not an integer"),
    ("0, 1, 2, 3, -1", "0, 1, -2, 3, -1", "negative index"),
    ("6 3 4 5 1 -1", "6 3 4 5 -1", "texCoordIndex polygons do not match"),
    ("coordIndex [", "coordIdx [", "no coordIndex"),
    ("1 1 0,", "1 1 zero,", "'zero' is not a number"),
])
def test_wrl_bad_inputs(tmp_path, old, new, reason):
    assert old in WRL
    with pytest.raises(InputError, match=reason):
        U.read_wrl(write(tmp_path, WRL.replace(old, new, 1)))


def test_wrl_with_two_meshes_is_refused(tmp_path):
    shape = WRL.split("DEF F0001_AN01WH_F3D", 1)[1]
    with pytest.raises(InputError, match="only one IndexedFaceSet"):
        U.read_wrl(write(tmp_path, WRL + shape))


def test_wrl_empty_and_unclosed(tmp_path):
    with pytest.raises(InputError, match="empty file"):
        U.read_wrl(write(tmp_path, ""))
    with pytest.raises(InputError, match="not closed"):
        U.read_wrl(write(tmp_path, WRL.split("coordIndex")[0].replace("]", "")))


def bnd_text(n=83):
    """n lines "i  i/2  -i  2.25 i"."""
    return "\n".join(f"{i} {i * 0.5} {-i} {i * 2.25}" for i in range(n)) + "\n"


def test_read_bnd(tmp_path):
    p = tmp_path / "F0001_AN01WH_F3D.bnd"
    p.write_text("BU-3DFE landmarks\nfile header\n" + bnd_text())
    lm = U.read_bnd(p)
    assert lm.points.shape == (83, 3) and lm.provenance == "file:bnd"
    np.testing.assert_array_equal(lm.vertex_index, np.arange(83))
    np.testing.assert_array_equal(lm.points[2], [1.0, -2, 4.5])
    assert lm.names[0] == "bnd_0" and lm.names[-1] == "bnd_82"


@pytest.mark.parametrize("text, reason", [
    (bnd_text(82), "wrong landmark count: 82"),
    (bnd_text().replace("1 0.5 -1 2.25", "1 0.5 -1"), "not 'index x y z'"),
    (bnd_text().replace("1 0.5 -1 2.25", "1 nan -1 2"), "NaN"),
    (bnd_text().replace("1 0.5 -1 2.25", "1.5 0.5 -1 2"), "not an integer"),
])
def test_bnd_bad_inputs(tmp_path, text, reason):
    p = tmp_path / "a.bnd"
    p.write_text(text)
    with pytest.raises(InputError, match=reason):
        U.read_bnd(p)


def small_mesh_with_bnd(tmp_path, bnd_name, max_index=5):
    p = write(tmp_path, WRL)
    lines = [f"{i % (max_index + 1)} 0 0 0" for i in range(83)]
    (tmp_path / bnd_name).write_text("\n".join(lines))
    return p


@pytest.mark.parametrize("bnd_name", ["F0001_AN01WH_F3D.bnd", "F0001_AN01WH.bnd"])
def test_scan_finds_bnd_under_both_names(tmp_path, bnd_name):
    s = U.read_wrl_scan(small_mesh_with_bnd(tmp_path, bnd_name))
    assert s.landmarks is not None and s.landmarks.vertex_index.max() == 5


def test_scan_bnd_index_out_of_range(tmp_path):
    with pytest.raises(InputError, match="vertex index 6 out of range"):
        U.read_wrl_scan(small_mesh_with_bnd(tmp_path, "F0001_AN01WH_F3D.bnd", max_index=6))


def test_write_wrl_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    verts = rng.normal(size=(7, 3)) * 40
    polys = [[0, 1, 2], [0, 2, 3, 4], [4, 5, 6, 0, 1, 3]]
    uv = rng.random((9, 2))
    poly_uv = [[8, 1, 2], [0, 2, 3, 4], [4, 5, 6, 7, 1, 3]]
    colors = rng.integers(0, 256, (7, 3)).astype(np.uint8)
    p = tmp_path / "M0002_SU04BL_F3D.wrl"
    U.write_wrl(p, verts, polys, uv=uv, poly_uv=poly_uv, colors=colors,
                texture_name="M0002_SU04BL_F3D.bmp")
    m = U.read_wrl(p)
    np.testing.assert_allclose(m.vertices, verts, atol=1e-6)
    np.testing.assert_array_equal(m.polygons, sum(polys, []))
    np.testing.assert_array_equal(m.offsets, [0, 3, 7, 13])
    np.testing.assert_allclose(m.uv, uv, atol=1e-6)
    np.testing.assert_array_equal(m.poly_uv, sum(poly_uv, []))
    np.testing.assert_array_equal(m.colors, colors)
    assert m.texture_url == "M0002_SU04BL_F3D.bmp"
    lm = Landmarks(rng.normal(size=(83, 3)), tuple(f"bnd_{i}" for i in range(83)), "x",
                   vertex_index=np.arange(83) % 7)
    U.write_bnd(tmp_path / "M0002_SU04BL_F3D.bnd", lm)
    back = U.read_bnd(tmp_path / "M0002_SU04BL_F3D.bnd")
    np.testing.assert_array_equal(back.vertex_index, lm.vertex_index)
    np.testing.assert_allclose(back.points, lm.points, atol=1e-6)
    s = U.read_wrl_scan(p)
    assert s.landmarks is not None and len(s.faces) == 1 + 2 + 4


@pytest.mark.parametrize("name, ids", [
    ("F0001_AN01WH_F3D.wrl", ("F0001", "01", "AN", 0)),
    ("M0044_NE00AE_F3D.wrl", ("M0044", "00", "NE", 6)),
    ("F0010_SU04LA_RAW.wrl", ("F0010", "04", "SU", 5)),
    ("F0001_HA03WH.bnd", ("F0001", "03", "HA", 3)),
])
def test_parse_name(name, ids):
    i = U.parse_bu3dfe_name(name)
    assert (i.subject, i.session, i.expression, i.label) == ids and i.dataset == "bu3dfe"


@pytest.mark.parametrize("name, reason", [("face.wrl", "pattern"),
                                          ("F0001_XX01WH_F3D.wrl", "unknown BU-3DFE expression")])
def test_parse_name_rejects(name, reason):
    with pytest.raises(InputError, match=reason):
        U.parse_bu3dfe_name(name)
