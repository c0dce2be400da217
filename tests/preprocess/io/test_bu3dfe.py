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


# PolyWorks writes one Shape/IndexedFaceSet per "block"; two tiny textured blocks sharing
# one image: a triangle (3 vertices, 3 uv) and a quad (4 vertices, 4 uv)
BLOCK = """
  Shape {{
    appearance Appearance {{ texture ImageTexture {{ url "{url}" }} }}
    geometry IndexedFaceSet {{
      coord Coordinate {{ point [ {points} ] }}
      coordIndex [ {index} ]
      texCoord TextureCoordinate {{ point [ {uv} ] }}
      texCoordIndex [ {index} ]
    }}
  }}"""
TWO_BLOCKS = ("#VRML V2.0 utf8\n# 2 blocks.\nTransform { children [\n# Block 1"
              + BLOCK.format(url="tex.bmp", points="0 0 0, 1 0 0, 0 1 0", index="0 1 2 -1",
                             uv="0 0, 1 0, 0 1")
              + "\n# Block 2"
              + BLOCK.format(url="tex.bmp", points="5 0 0, 6 0 0, 6 1 0, 5 1 0",
                             index="0 1 2 3 -1", uv="0.5 0.5, 1 0.5, 1 1, 0.5 1")
              + "\n] }\n")


def test_wrl_blocks_are_concatenated_with_shifted_indices(tmp_path):
    m = U.read_wrl(write(tmp_path, TWO_BLOCKS))
    np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0],
                                               [5, 0, 0], [6, 0, 0], [6, 1, 0], [5, 1, 0]])
    np.testing.assert_array_equal(m.polygons, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(m.offsets, [0, 3, 7])
    assert m.offsets.dtype == np.int64
    np.testing.assert_array_equal(m.uv[3:], [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]])
    np.testing.assert_array_equal(m.poly_uv, [0, 1, 2, 3, 4, 5, 6])
    assert m.texture_url == "tex.bmp" and m.colors is None
    s = U.read_wrl_scan(write(tmp_path, TWO_BLOCKS))
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [3, 4, 5], [3, 5, 6]])
    np.testing.assert_array_equal(s.face_uv, [[0, 1, 2], [3, 4, 5], [3, 5, 6]])


def test_wrl_blocks_with_colours_and_the_same_block_twice(tmp_path):
    one = """
  Shape { geometry IndexedFaceSet {
    coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0, 1 1 0 ] }
    coordIndex [ 0 1 2 -1 1 3 2 -1 ]
    color Color { color [ 1 0 0, 0 1 0, 0 0 1, 1 1 1 ] }
  } }"""
    m = U.read_wrl(write(tmp_path, "#VRML V2.0 utf8\n" + one + one + one))
    assert m.vertices.shape == (12, 3) and m.colors.shape == (12, 3)
    np.testing.assert_array_equal(m.vertices[8:], m.vertices[:4])
    np.testing.assert_array_equal(m.colors[4:8], m.colors[:4])
    np.testing.assert_array_equal(m.polygons, [0, 1, 2, 1, 3, 2, 4, 5, 6, 5, 7, 6,
                                               8, 9, 10, 9, 11, 10])
    np.testing.assert_array_equal(m.offsets, [0, 3, 6, 9, 12, 15, 18])
    assert m.uv is None and m.poly_uv is None


def test_wrl_block_indices_stay_local_to_their_block(tmp_path):
    # index 3 is fine in the 4-vertex second block, out of range in the 3-vertex first
    text = TWO_BLOCKS.replace("coordIndex [ 0 1 2 -1 ]", "coordIndex [ 0 1 3 -1 ]")
    with pytest.raises(InputError, match="coordIndex: index 3 out of range"):
        U.read_wrl(write(tmp_path, text))


@pytest.mark.parametrize("old, new, reason", [
    # block 2 without texture coordinates
    ('texCoord TextureCoordinate { point [ 0.5 0.5, 1 0.5, 1 1, 0.5 1 ] }\n'
     '      texCoordIndex [ 0 1 2 3 -1 ]', "", "1 of 2 IndexedFaceSets have texture coordinates"),
    # block 2 coloured, block 1 not
    ("coordIndex [ 0 1 2 3 -1 ]",
     "coordIndex [ 0 1 2 3 -1 ] color Color { color [ 1 0 0, 1 0 0, 1 0 0, 1 0 0 ] }",
     "1 of 2 IndexedFaceSets have colours"),
    # two different images for one set of texture coordinates
    ('url "tex.bmp" } }\n    geometry IndexedFaceSet {\n      coord Coordinate { point [ 5',
     'url "other.bmp" } }\n    geometry IndexedFaceSet {\n      coord Coordinate { point [ 5',
     "2 texture images \\('other.bmp', 'tex.bmp'\\)"),
    # a node with two coordinate lists
    ("coordIndex [ 0 1 2 -1 ]", "coordIndex [ 0 1 2 -1 ] coordIndex [ 0 1 2 -1 ]",
     "2 coordIndex lists in one IndexedFaceSet"),
    # a block without coordinates
    ("coord Coordinate { point [ 5 0 0, 6 0 0, 6 1 0, 5 1 0 ] }", "",
     "no Coordinate"),
])
def test_wrl_bad_blocks(tmp_path, old, new, reason):
    assert TWO_BLOCKS.count(old) == 1
    with pytest.raises(InputError, match=reason):
        U.read_wrl(write(tmp_path, TWO_BLOCKS.replace(old, new)))


def test_wrl_several_urls_without_texture_coordinates_are_ignored(tmp_path):
    text = ('#VRML V2.0 utf8\n'
            'Shape { appearance Appearance { texture ImageTexture { url "a.bmp" } }\n'
            '  geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }\n'
            '  coordIndex [ 0 1 2 ] } }\n'
            'Shape { appearance Appearance { texture ImageTexture { url "b.bmp" } }\n'
            '  geometry IndexedFaceSet { coord Coordinate { point [ 0 0 1, 1 0 1, 0 1 1 ] }\n'
            '  coordIndex [ 0 1 2 ] } }\n')
    m = U.read_wrl(write(tmp_path, text))
    assert m.uv is None and m.vertices.shape == (6, 3)
    np.testing.assert_array_equal(m.polygons, [0, 1, 2, 3, 4, 5])
    s = U.read_wrl_scan(write(tmp_path, text))
    assert s.texture is None and s.extra["warnings"] == []


# The layout of LIZHANGYAN/fileread 001-001.wrl, a few vertices instead of 16783
POLYWORKS = """#VRML V2.0 utf8
# File generated by InnovMetric Software Inc.
# 4 vertices, 2 triangles.
# 1 blocks.
# Input directory: F:\\POL-DB\\001
Transform { children [
\tWorldInfo {
\t\tinfo [ "Input Format: pol"]
\t}
\tViewpoint {
\t\tposition 45.4901 -58.6223 -946.649
\t\torientation 0 0 1 0
\t}
\t# Block 1
\tShape {
\t\tappearance Appearance { material
\t\t\tMaterial {
\t\t\t\tdiffuseColor  0.8 0.8 0.8
\t\t\t\ttransparency 0
\t\t\t}
\t\t}
\t\tgeometry IndexedFaceSet {
\t\t\tcoord
\t\t\tCoordinate {
\t\t\t\tpoint [  -143.705 -200.667 -1644,
\t\t\t\t\t -143.129 -201.525 -1637.29,
\t\t\t\t\t 22.0374 83.8296 -1510.19,
\t\t\t\t\t -26.77 81.912 -1669.63 ]
\t\t\t}
\t\t\tcolorPerVertex TRUE
\t\t\tcolor
\t\t\tColor { color [  0.447059 0.364706 0.239216,
\t\t\t 0.466667 0.380392 0.223529,
\t\t\t 0.454902 0.388235 0.239216,
\t\t\t 0.0901961 0.0901961 0.0901961\t\t\t ]
\t\t\t}
\t\t\tnormal
\t\t\tNormal {
\t\t\t\tvector [  -0.332678 0.931421 0.147584,
\t\t\t\t\t -0.33906 0.929531 0.144946,
\t\t\t\t\t -0.323452 0.935314 0.143409,
\t\t\t\t\t -0.496295 0.833119 0.244138 ]
\t\t\t}
\t\t\tcoordIndex [0, 1, 2, -1,
\t\t\t\t\t1, 3, 2, -1 ]
\t\t}
\t}
] }
# End of file
"""


def test_polyworks_export_reads_with_generic_ids_and_colours(tmp_path):
    """Real-file fact, from LIZHANGYAN/fileread 001-001.wrl: a PolyWorks (InnovMetric)
    VRML 2.0 export named outside the BU-3DFE pattern, with one IndexedFaceSet
    ("# 1 blocks."), a per-vertex ``Color`` node (colorPerVertex TRUE), a ``Normal``
    node, Material/WorldInfo/Viewpoint nodes, no ImageTexture, and coordinates in mm
    with z about -1670..-1510 (the face looks along +Z).  The real file (16783
    vertices, 32416 triangles) reads the same way: generic ids, colours, no texture,
    one warning.  Here the same layout with 4 vertices."""
    d = tmp_path / "001"
    d.mkdir()
    s = read_scan(write(d, POLYWORKS, name="001-001.wrl"))  # through the registry
    assert (s.ids.dataset, s.ids.subject, s.ids.session, s.ids.expression, s.ids.label) == \
        ("generic", "001", "001-001", "", -1)
    np.testing.assert_array_equal(s.vertices[[0, 3]], [[-143.705, -200.667, -1644],
                                                       [-26.77, 81.912, -1669.63]])
    assert s.vertices[:, 2].min() == -1669.63 and s.vertices[:, 2].max() == -1510.19
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [1, 3, 2]])
    np.testing.assert_array_equal(s.colors, [[114, 93, 61], [119, 97, 57], [116, 99, 61],
                                             [23, 23, 23]])
    assert s.uv is None and s.face_uv is None and s.texture is None and s.texture_name == ""
    assert s.landmarks is None
    assert len(s.extra["warnings"]) == 1
    w = s.extra["warnings"][0]
    assert "BU-3DFE pattern" in w and "generic" in w and "'001-001'" in w


def test_indexedfaceset_inside_a_string_is_not_a_block(tmp_path):
    text = POLYWORKS.replace('info [ "Input Format: pol"]',
                             'info [ "Input Format: pol" "1 IndexedFaceSet { }" ]')
    m = U.read_wrl(write(tmp_path, text, name="001-001.wrl"))
    assert m.vertices.shape == (4, 3) and m.colors.shape == (4, 3)


def test_bu3dfe_name_with_a_wrong_code_stays_an_error(tmp_path):
    with pytest.raises(InputError, match="unknown BU-3DFE expression code 'XX'"):
        U.read_wrl_scan(write(tmp_path, WRL, name="F0001_XX01WH_F3D.wrl"))


def test_bu3dfe_name_reads_without_warnings(tmp_path):
    s = U.read_wrl_scan(write(tmp_path, POLYWORKS, name="M0044_NE00AE_F3D.wrl"))
    assert (s.ids.dataset, s.ids.subject, s.ids.label) == ("bu3dfe", "M0044", 6)
    assert s.extra["warnings"] == []


def save_bmp(path, colour=(255, 0, 0)):
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = colour
    Image.fromarray(img).save(path)
    return img


def test_texture_falls_back_to_the_bmp_beside_the_scan(tmp_path):
    img = save_bmp(tmp_path / "F0001_AN01WH_F3D.bmp")
    s = U.read_wrl_scan(write(tmp_path, WRL.replace("F0001_AN01WH_F3D.bmp", "gone.bmp")))
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "F0001_AN01WH_F3D.bmp"
    assert s.extra["warnings"] == ["texture 'gone.bmp' not found beside the scan: using "
                                   "'F0001_AN01WH_F3D.bmp'"]


def test_texture_url_found_wins_over_the_bmp(tmp_path):
    save_bmp(tmp_path / "F0001_AN01WH_F3D.bmp")
    img = save_bmp(tmp_path / "named.bmp", colour=(0, 0, 255))
    s = U.read_wrl_scan(write(tmp_path, WRL.replace("F0001_AN01WH_F3D.bmp", "named.bmp")))
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "named.bmp" and s.extra["warnings"] == []


def test_texture_without_url_uses_the_bmp_silently(tmp_path):
    img = save_bmp(tmp_path / "F0001_AN01WH_F3D.bmp")
    text = WRL.replace('texture ImageTexture { url "F0001_AN01WH_F3D.bmp" }', "")
    assert "ImageTexture" not in text
    s = U.read_wrl_scan(write(tmp_path, text))
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "F0001_AN01WH_F3D.bmp" and s.extra["warnings"] == []


def test_texture_without_url_and_without_bmp(tmp_path):
    text = WRL.replace('texture ImageTexture { url "F0001_AN01WH_F3D.bmp" }', "")
    s = U.read_wrl_scan(write(tmp_path, text))
    assert s.texture is None and s.texture_name == "" and s.uv is not None
    assert s.extra["warnings"] == ["no texture named in the file: texture=None"]
    s = U.read_wrl_scan(write(tmp_path, WRL.replace("F0001_AN01WH_F3D.bmp", "gone.bmp")))
    assert s.texture is None and s.texture_name == "gone.bmp"
    assert s.extra["warnings"] == ["texture 'gone.bmp' not found beside the scan: texture=None"]


def test_bmp_fallback_uses_the_generic_scans_own_stem(tmp_path):
    text = WRL.replace('texture ImageTexture { url "F0001_AN01WH_F3D.bmp" }', "")
    save_bmp(tmp_path / "F0001_AN01WH_F3D.bmp")  # another scan's image: not used
    img = save_bmp(tmp_path / "face.bmp", colour=(0, 255, 0))
    s = U.read_wrl_scan(write(tmp_path, text, name="face.wrl"))
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "face.bmp" and s.ids.dataset == "generic"


@pytest.mark.parametrize("url, reason", [("../x.bmp", "escapes"), ("/etc/passwd", "absolute")])
def test_texture_url_escaping_is_refused_even_with_the_bmp(tmp_path, url, reason):
    save_bmp(tmp_path / "F0001_AN01WH_F3D.bmp")
    with pytest.raises(InputError, match=reason):
        U.read_wrl_scan(write(tmp_path, WRL.replace("F0001_AN01WH_F3D.bmp", url)))


def test_texture_not_loaded_without_texture_coordinates(tmp_path):
    # an unreadable image is never opened when no uv can use it
    (tmp_path / "F0001_AN01WH_F3D.bmp").write_bytes(b"not an image")
    text = WRL.split("texCoord DEF")[0] + "}}]}\n"
    s = U.read_wrl_scan(write(tmp_path, text))
    assert s.uv is None and s.texture is None
    assert s.texture_name == "F0001_AN01WH_F3D.bmp" and s.extra["warnings"] == []
    with pytest.raises(InputError, match="unreadable image"):
        U.read_wrl_scan(write(tmp_path, WRL))


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


# the six vertices of WRL, in file order
WRL_VERTICES = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [-1, 1, 0], [-1, 0, 0.5]])


def write_bnd(path, indices, points):
    path.write_text("".join(f"{i} {x} {y} {z}\n" for i, (x, y, z) in zip(indices, points)))


def test_bnd_indices_read_0_based_when_they_fit(tmp_path):
    p = write(tmp_path, WRL)
    idx = np.arange(83) % 5 + 1                 # 1..5: the 1-based reading is in range too
    write_bnd(tmp_path / "F0001_AN01WH_F3D.bnd", idx, WRL_VERTICES[idx])
    s = U.read_wrl_scan(p)
    np.testing.assert_array_equal(s.landmarks.vertex_index, idx)
    assert not any(".bnd" in w for w in s.extra["warnings"])


def test_bnd_indices_read_1_based_when_strictly_nearer(tmp_path):
    p = write(tmp_path, WRL)
    idx = np.arange(83) % 5                     # written as 1..5: both readings in range
    write_bnd(tmp_path / "F0001_AN01WH_F3D.bnd", idx + 1, WRL_VERTICES[idx])
    s = U.read_wrl_scan(p)
    np.testing.assert_array_equal(s.landmarks.vertex_index, idx)
    np.testing.assert_array_equal(s.landmarks.points, WRL_VERTICES[idx])
    np.testing.assert_array_equal(s.vertices[s.landmarks.vertex_index], s.landmarks.points)
    assert len(s.extra["warnings"]) == 2  # the texture, then the .bnd
    w = s.extra["warnings"][1]
    assert w.startswith("F0001_AN01WH_F3D.bnd: vertex indices read as 1-based") and "0 mm" in w


def test_bnd_indices_1_based_when_0_based_is_out_of_range(tmp_path):
    p = write(tmp_path, WRL)
    idx = np.arange(83) % 6 + 1                 # 1..6: only the 1-based reading fits
    write_bnd(tmp_path / "F0001_AN01WH.bnd", idx, np.full((83, 3), 100.0))
    s = U.read_wrl_scan(p)
    np.testing.assert_array_equal(s.landmarks.vertex_index, idx - 1)
    assert "read as 1-based" in s.extra["warnings"][-1] and "inf mm" in s.extra["warnings"][-1]


def test_bnd_indices_a_tie_stays_0_based(tmp_path):
    p = write(tmp_path, WRL)
    # index 1, point halfway between vertex 0 and vertex 1: both readings 0.5 mm off
    write_bnd(tmp_path / "F0001_AN01WH_F3D.bnd", np.ones(83, int), np.tile([0.5, 0, 0], (83, 1)))
    s = U.read_wrl_scan(p)
    assert (s.landmarks.vertex_index == 1).all()
    assert not any(".bnd" in w for w in s.extra["warnings"])


def test_bnd_index_out_of_range_in_both_readings(tmp_path):
    p = write(tmp_path, WRL)
    idx = np.arange(83) % 8                     # 0 (1-based: -1) and 7 (0-based: > 5)
    write_bnd(tmp_path / "F0001_AN01WH_F3D.bnd", idx, np.zeros((83, 3)))
    with pytest.raises(InputError, match=r"F0001_AN01WH_F3D\.bnd.*vertex index 7 out of "
                                         r"range for F0001_AN01WH_F3D\.wrl \(6 vertices\)"):
        U.read_wrl_scan(p)


def test_bnd_indices_count_the_vertices_of_every_block(tmp_path):
    p = write(tmp_path, TWO_BLOCKS)
    idx = np.arange(83) % 7                     # vertex 6 exists only in block 2
    write_bnd(tmp_path / "F0001_AN01WH_F3D.bnd", idx, U.read_wrl(p).vertices[idx])
    s = U.read_wrl_scan(p)
    np.testing.assert_array_equal(s.landmarks.vertex_index, idx)


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
