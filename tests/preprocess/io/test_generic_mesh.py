"""Generic .ply/.obj scans (trimesh for PLY, the FaceScape OBJ reader for OBJ) and the
generic ids of files named outside their dataset's pattern, on hand-written files."""
import numpy as np
import pytest
from PIL import Image

from data_schema.errors import InputError
from preprocess.io._text import NamePatternError
from preprocess.io.generic_mesh import ids_or_generic, parse_generic_name, read_mesh_scan
from preprocess.io.registry import read_scan

PLY = """ply
format ascii 1.0
element vertex 4
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
element face 2
property list uchar int vertex_indices
end_header
0 0 0 255 0 0
1 0 0 0 255 0
1 1 0 0 0 255
0 1 0 10 20 30
3 0 1 2
3 0 2 3
"""


def test_ascii_ply_with_colours(tmp_path):
    d = tmp_path / "subj7"
    d.mkdir()
    p = d / "take2.ply"
    p.write_text(PLY)
    s = read_scan(p)
    np.testing.assert_array_equal(s.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(s.colors, [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]])
    assert (s.ids.dataset, s.ids.subject, s.ids.session, s.ids.label) == \
        ("generic", "subj7", "take2", -1)


# vertex 2 is used with two texture coordinates (a seam): it must stay one vertex
OBJ = ("mtllib head.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\n"
       "vt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\nvt 0.5 0.5\n"
       "usemtl skin\nf 1/1 2/2 3/3\nf 2/5 4/4 3/3\n")


def textured_obj(tmp_path, obj=OBJ, mtl="newmtl skin\nmap_Kd head.png\n", image=True):
    d = tmp_path / "subj3"
    d.mkdir()
    (d / "head.obj").write_text(obj)
    if mtl is not None:
        (d / "head.mtl").write_text(mtl)
    img = np.zeros((2, 4, 3), np.uint8)
    img[0, 3] = (1, 2, 3)
    if image:
        Image.fromarray(img).save(d / "head.png")
    return d / "head.obj", img


def test_obj_keeps_vertex_order_and_picks_up_its_texture(tmp_path):
    p, img = textured_obj(tmp_path)
    s = read_scan(p)  # through the registry: head.obj is not a FaceScape name
    assert (s.ids.dataset, s.ids.subject, s.ids.session, s.ids.label) == \
        ("generic", "subj3", "head", -1)
    np.testing.assert_array_equal(s.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [1, 3, 2]])
    np.testing.assert_array_equal(s.face_uv, [[0, 1, 2], [4, 3, 2]])
    np.testing.assert_array_equal(s.uv, [[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]])
    np.testing.assert_array_equal(s.texture, img)
    assert s.texture_name == "head.png" and s.colors is None
    assert s.extra["warnings"] == []


@pytest.mark.parametrize("obj, mtl, image, warning", [
    (OBJ.replace("mtllib head.mtl\n", ""), None, True, "no mtllib: texture=None"),
    (OBJ, None, True, "material file 'head.mtl' not found: texture=None"),
    (OBJ, "newmtl skin\nKd 1 1 1\n", True, "no texture named in the file: texture=None"),
    (OBJ, "newmtl skin\nmap_Kd head.png\n", False,
     "texture 'head.png' not found beside the scan: texture=None"),
])
def test_obj_texture_missing_pieces_are_warnings(tmp_path, obj, mtl, image, warning):
    p, _ = textured_obj(tmp_path, obj, mtl, image)
    s = read_mesh_scan(p)
    assert s.texture is None and s.extra["warnings"] == [warning]
    assert s.uv.shape == (5, 2) and s.face_uv.shape == (2, 3)  # the corners are kept
    assert s.texture_name == ("head.png" if "map_Kd" in (mtl or "") else "")


def test_obj_texture_without_vt_corners_is_not_loaded(tmp_path):
    obj = "mtllib head.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    p, _ = textured_obj(tmp_path, obj, image=False)
    (p.parent / "head.png").write_bytes(b"not an image")  # never opened
    s = read_mesh_scan(p)
    assert s.texture is None and s.uv is None and s.face_uv is None
    assert s.texture_name == "head.png"
    assert s.extra["warnings"] == ["texture 'head.png' named but the faces have no texture "
                                   "coordinates (vt): texture=None"]


@pytest.mark.parametrize("obj, mtl, reason", [
    (OBJ.replace("mtllib head.mtl", "mtllib ../../evil.mtl"), None, "escapes"),
    (OBJ, "map_Kd ../x.png\n", "escapes"),
    (OBJ, "map_Kd /etc/passwd\n", "absolute"),
    # the folder rule holds even for a texture the faces cannot use
    ("mtllib head.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "map_Kd ../x.png\n", "escapes"),
])
def test_obj_texture_names_escaping_the_folder(tmp_path, obj, mtl, reason):
    p, _ = textured_obj(tmp_path, obj, mtl)
    with pytest.raises(InputError, match=reason):
        read_mesh_scan(p)


def test_obj_unreadable_texture_is_an_error(tmp_path):
    p, _ = textured_obj(tmp_path, image=False)
    (p.parent / "head.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="unreadable image"):
        read_mesh_scan(p)


def test_ply_has_no_texture(tmp_path):
    p = tmp_path / "a.ply"
    p.write_text(PLY)
    s = read_mesh_scan(p)
    assert s.texture is None and s.uv is None and s.texture_name == ""


@pytest.mark.parametrize("name, session", [
    ("take2.ply", "take2"), ("a.abs.gz", "a"), ("A.ABS.GZ", "A"), ("x.y.abs.gz", "x.y"),
    ("scan.bnt", "scan"), ("001-001.wrl", "001-001"),
])
def test_parse_generic_name(tmp_path, name, session):
    ids = parse_generic_name(tmp_path / "subjX" / name)
    assert (ids.dataset, ids.subject, ids.session, ids.expression, ids.label) == \
        ("generic", "subjX", session, "", -1)
    assert ids.source == str(tmp_path / "subjX" / name)


def test_ids_or_generic(tmp_path):
    path = tmp_path / "subjX" / "scan.wrl"
    ids = parse_generic_name(tmp_path / "other" / "x.ply")

    def pattern(p):
        raise NamePatternError(p, "file name does not follow the Test pattern")

    def wrong_code(p):
        raise InputError(p, "unknown Test code 'ZZ'")

    warnings = ["earlier"]
    got = ids_or_generic(path, pattern, warnings)
    assert (got.dataset, got.subject, got.session, got.label) == ("generic", "subjX", "scan", -1)
    assert warnings == ["earlier", "file name does not follow the Test pattern: read as a "
                        "generic scan (dataset 'generic', subject 'subjX', session 'scan', "
                        "no label)"]
    warnings = []
    assert ids_or_generic(path, lambda p: ids, warnings) is ids and warnings == []
    with pytest.raises(InputError, match="unknown Test code") as e:
        ids_or_generic(path, wrong_code, warnings)
    assert not isinstance(e.value, NamePatternError) and warnings == []
    assert issubclass(NamePatternError, InputError)


def test_multi_material_obj_stays_one_mesh_in_file_order(tmp_path):
    p = tmp_path / "two.obj"
    p.write_text("o a\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m1\nf 1 2 3\n"
                 "o b\nv 5 0 0\nv 6 0 0\nv 5 1 0\nusemtl m2\nf 4 5 6\n")
    s = read_mesh_scan(p)
    assert s.vertices.shape == (6, 3)
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("name, data, reason", [
    ("a.ply", b"", "empty file"),
    ("a.ply", b"this is not a ply file at all\n", "not a PLY file"),
    ("a.ply", PLY.replace("1 1 0 0 0 255", "1 nan 0 0 0 255").encode(), "NaN"),
    ("a.ply", PLY.replace("element face 2", "element face 0").rsplit("3 0 1 2", 1)[0].encode(),
     "no faces"),
    ("a.obj", b"# nothing here\n", "no vertices"),
    ("a.stl", b"solid x\n", "not a .ply or .obj"),
])
def test_bad_inputs(tmp_path, name, data, reason):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(InputError, match=reason):
        read_mesh_scan(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_mesh_scan(tmp_path / "nope.ply")


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_a_scan_in_metres_is_scaled_to_mm(tmp_path, suffix):
    """A 0.2-unit wide face cannot be in mm (a face is 100-300 mm): read as metres."""
    import trimesh

    v = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.15, 0.05], [5.0, 5.0, 5.0]])
    f = np.array([[0, 1, 2]])          # vertex 3 is used by no face: not counted
    p = tmp_path / f"face{suffix}"
    trimesh.Trimesh(v, f, process=False).export(p)
    s = read_mesh_scan(p)
    np.testing.assert_allclose(s.vertices[:3], v[:3] * 1000.0)
    assert any("metres" in w for w in s.extra["warnings"])
    big = tmp_path / f"mm{suffix}"
    trimesh.Trimesh(v * 1000.0, f, process=False).export(big)
    s = read_mesh_scan(big)
    np.testing.assert_allclose(s.vertices[:3], v[:3] * 1000.0)
    assert not any("metres" in w for w in s.extra["warnings"])
