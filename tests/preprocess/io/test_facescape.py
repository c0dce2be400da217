"""FaceScape TU .obj/.mtl/landmark-index readers and writers, on hand-written files."""

import numpy as np
import pytest
from PIL import Image

from data_schema.errors import InputError
from preprocess.io import facescape as FS
from preprocess.io.registry import format_of, read_scan

# 4 vertices, 5 texture coordinates; vertex 2 (1-based) is used with vt 2 and vt 5
# (a texture seam): it must stay ONE vertex.  Second face uses negative indices.
OBJ = """# FaceScape-like model\r
mtllib 1_neutral.mtl\r
v 0 0 0\r
v 1 0 0\r
v 0 1 0\r
v 1 1 0.5   # trailing comment\r
vt 0 0\r
vt 0.5 0\r
vt 0 1\r
vt 1 1\r
vt 1 0\r
vn 0 0 1\r
usemtl material0\r
f 1/1 2/2 3/3\r
f -3/-1 -1/-2 -2/-3\r
"""


def model_dir(tmp_path):
    d = tmp_path / "facescape" / "122" / "models_reg"
    d.mkdir(parents=True)
    return d


def test_read_obj_keeps_vertex_order_across_uv_seam(tmp_path):
    p = tmp_path / "1_neutral.obj"
    p.write_text(OBJ)
    m = FS.read_obj(p)
    np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.5]])
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [1, 3, 2]])
    np.testing.assert_array_equal(m.face_uv, [[0, 1, 2], [4, 3, 2]])
    assert m.uv.shape == (5, 2) and m.mtllib == ("1_neutral.mtl",)
    assert m.materials == ("material0",)


def test_read_obj_corner_forms_and_polygons(tmp_path):
    p = tmp_path / "x.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 2 2\nvn 0 0 1\n"
                 "f 1//1 2//1 3//1 4//1\n"       # quad, v//vn
                 "f 1 3 5\n")                    # plain indices
    m = FS.read_obj(p)
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 4]])
    assert m.uv is None and m.face_uv is None
    p.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 2 2\nvt 0 0\nvt 1 0\nvt 1 1\n"
                 "vn 0 0 1\nf 5/1/1 4/2/1 3/3/1 2/1/1 1/2/1\n")   # pentagon, v/vt/vn
    m = FS.read_obj(p)
    np.testing.assert_array_equal(m.faces, [[4, 3, 2], [4, 2, 1], [4, 1, 0]])
    np.testing.assert_array_equal(m.face_uv, [[0, 1, 2], [0, 2, 0], [0, 0, 1]])


def test_negative_indices_are_relative_to_where_the_face_is(tmp_path):
    p = tmp_path / "rel.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\n"
                 "v 5 0 0\nv 6 0 0\nv 5 1 0\nf -3 -2 -1\nf 1 -1 -2\n")
    np.testing.assert_array_equal(FS.read_obj(p).faces, [[0, 1, 2], [3, 4, 5], [0, 5, 4]])


def test_vertex_colours_in_v_lines(tmp_path):
    p = tmp_path / "c.obj"
    p.write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 0.5\nf 1 2 3\n")
    np.testing.assert_array_equal(FS.read_obj(p).colors, [[255, 0, 0], [0, 255, 0], [0, 0, 128]])


@pytest.mark.parametrize("text, reason", [
    ("", "empty file"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
    ("f 1 2 3\n", "no vertices"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "index 0"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -4 1 2\n", "out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n", "NaN"),
    ("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", "has 2 values"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "fewer than 3 corners"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3\n", "mix corners"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/1 2/1 3/1\n", "no vt lines"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/ 2/1 3/1\n", "malformed face corner"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", "'x' is not an integer"),
])
def test_read_obj_bad_inputs(tmp_path, text, reason):
    p = tmp_path / "bad.obj"
    p.write_text(text)
    with pytest.raises(InputError, match=reason):
        FS.read_obj(p)


def test_read_mtl(tmp_path):
    p = tmp_path / "a.mtl"
    p.write_text("newmtl m\nKd 1 1 1\nmap_Kd -s 1 1 1 -o 0 0 0 tex.jpg\n")
    assert FS.read_mtl(p) == "tex.jpg"
    p.write_text("newmtl m\nmap_Kd my texture.jpg\n")
    assert FS.read_mtl(p) == "my texture.jpg"
    p.write_text("newmtl m\nKd 1 1 1\n")
    assert FS.read_mtl(p) == ""


def test_is_facescape_name_and_registry(tmp_path):
    assert FS.is_facescape_name("1_neutral.obj") and FS.is_facescape_name("20_brow_lower.obj")
    assert FS.is_facescape_name("2_smile.OBJ")
    assert not FS.is_facescape_name("3_smile.obj")       # k does not match the expression
    assert not FS.is_facescape_name("21_neutral.obj")
    assert not FS.is_facescape_name("head.obj")
    assert not FS.is_facescape_name("1_neutral.ply")
    assert format_of(tmp_path / "2_smile.obj").name == "facescape_obj"
    assert format_of(tmp_path / "head.obj").name == "mesh"


def full_model(tmp_path, lm_where="root", lm_kind="txt", indices=None):
    d = model_dir(tmp_path)
    (d / "1_neutral.obj").write_text(OBJ)
    (d / "1_neutral.mtl").write_text("newmtl material0\nmap_Kd 1_neutral.jpg\n")
    img = np.full((4, 6, 3), 7, np.uint8)
    img[0, 0] = (200, 100, 50)
    Image.fromarray(img).save(d / "1_neutral.jpg", quality=100, subsampling=0)
    folder = {"root": d.parent.parent, "subject": d.parent, "model": d}[lm_where]
    idx = np.arange(68) % 4 if indices is None else np.asarray(indices)
    FS.write_landmark_indices(folder / f"landmark_indices.{lm_kind}", idx)
    return d / "1_neutral.obj", idx


@pytest.mark.parametrize("where", ["root", "subject", "model"])
@pytest.mark.parametrize("kind", ["txt", "npz"])
def test_scan_with_texture_and_landmarks(tmp_path, where, kind):
    obj, idx = full_model(tmp_path, where, kind)
    s = read_scan(obj)
    assert s.ids.dataset == "facescape" and s.ids.subject == "122"
    assert s.ids.expression == "neutral" and s.ids.label == 0
    assert s.texture.shape == (4, 6, 3) and s.texture_name == "1_neutral.jpg"
    assert np.abs(s.texture[0, 0].astype(int) - (200, 100, 50)).max() < 20  # JPEG
    assert s.landmarks.provenance == "file:facescape"
    assert s.landmarks.names[0] == "ibug_0" and s.landmarks.names[-1] == "ibug_67"
    np.testing.assert_array_equal(s.landmarks.vertex_index, idx)
    np.testing.assert_array_equal(s.landmarks.points, s.vertices[idx])
    assert s.extra["warnings"] == []


def test_npz_prefers_v16_then_v10(tmp_path):
    obj, _ = full_model(tmp_path)
    root = obj.parent.parent.parent
    (root / "landmark_indices.txt").unlink()
    np.savez(root / "landmark_indices.npz", v10=np.zeros(68, int), v16=np.ones(68, int))
    assert (FS.read_facescape_scan(obj).landmarks.vertex_index == 1).all()
    np.savez(root / "landmark_indices.npz", v10=np.full(68, 2), other=np.zeros(68, int))
    assert (FS.read_facescape_scan(obj).landmarks.vertex_index == 2).all()


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_text(" ".join(["1"] * 67)), "wrong landmark count: 67"),
    (lambda p: p.write_text(" ".join(["4"] * 68)), "out of range"),
    (lambda p: p.write_text(" ".join(["1.5"] * 68)), "not an integer"),
])
def test_landmark_index_bad_txt(tmp_path, make, reason):
    obj, _ = full_model(tmp_path)
    make(obj.parent.parent.parent / "landmark_indices.txt")
    with pytest.raises(InputError, match=reason):
        FS.read_facescape_scan(obj)


def test_landmark_index_bad_npz(tmp_path):
    obj, _ = full_model(tmp_path, lm_kind="npz")
    p = obj.parent.parent.parent / "landmark_indices.npz"
    np.savez(p, v16=np.array([object()] * 68, dtype=object))
    with pytest.raises(InputError, match="unreadable npz"):  # no pickles
        FS.read_facescape_scan(obj)
    np.savez(p, v16=np.zeros(300_000, np.int64))
    with pytest.raises(InputError, match="more than a landmark list"):
        FS.read_facescape_scan(obj)
    p.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match="unreadable npz"):
        FS.read_facescape_scan(obj)


def test_missing_texture_and_landmarks_are_warnings(tmp_path):
    d = model_dir(tmp_path)
    (d / "2_smile.obj").write_text(OBJ.replace("1_neutral", "2_smile"))
    s = FS.read_facescape_scan(d / "2_smile.obj")
    assert s.texture is None and s.landmarks is None
    assert any("2_smile.mtl" in w for w in s.extra["warnings"])
    (d / "2_smile.mtl").write_text("map_Kd 2_smile.jpg\n")
    s = FS.read_facescape_scan(d / "2_smile.obj")
    assert s.texture is None and any("2_smile.jpg" in w for w in s.extra["warnings"])


@pytest.mark.parametrize("mtl_line, reason", [("map_Kd ../../x.jpg", "escapes"),
                                              ("map_Kd /etc/passwd", "absolute")])
def test_texture_escaping_folder(tmp_path, mtl_line, reason):
    obj, _ = full_model(tmp_path)
    (obj.parent / "1_neutral.mtl").write_text(mtl_line + "\n")
    with pytest.raises(InputError, match=reason):
        FS.read_facescape_scan(obj)


def test_mtllib_escaping_folder(tmp_path):
    obj, _ = full_model(tmp_path)
    obj.write_text(OBJ.replace("mtllib 1_neutral.mtl", "mtllib ../../../secret.mtl"))
    with pytest.raises(InputError, match="escapes"):
        FS.read_facescape_scan(obj)


def test_write_obj_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    verts = rng.normal(size=(30, 3)) * 80
    faces = rng.integers(0, 30, (50, 3))
    uv = rng.random((40, 2))
    face_uv = rng.integers(0, 40, (50, 3))
    p = tmp_path / "5_jaw_left.obj"
    FS.write_obj(p, verts, faces, uv=uv, face_uv=face_uv, mtl_name="5_jaw_left.mtl")
    m = FS.read_obj(p)
    np.testing.assert_allclose(m.vertices, verts, atol=1e-6)
    np.testing.assert_array_equal(m.faces, faces)
    np.testing.assert_allclose(m.uv, uv, atol=1e-6)
    np.testing.assert_array_equal(m.face_uv, face_uv)
    assert m.mtllib == ("5_jaw_left.mtl",)
    FS.write_mtl(tmp_path / "5_jaw_left.mtl", "5_jaw_left.jpg")
    assert FS.read_mtl(tmp_path / "5_jaw_left.mtl") == "5_jaw_left.jpg"


def test_obj_texture_helper(tmp_path):
    obj, _ = full_model(tmp_path)
    warnings = ["earlier"]
    texture, name = FS.obj_texture(obj, FS.read_obj(obj), warnings)
    assert texture.shape == (4, 6, 3) and name == "1_neutral.jpg" and warnings == ["earlier"]
    # a mesh without vt corners: the image is named but not loaded
    (obj.parent / "1_neutral.jpg").write_bytes(b"not an image")
    (obj.parent / "flat.obj").write_text("mtllib 1_neutral.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                                         "f 1 2 3\n")
    warnings = []
    texture, name = FS.obj_texture(obj.parent / "flat.obj",
                                   FS.read_obj(obj.parent / "flat.obj"), warnings)
    assert texture is None and name == "1_neutral.jpg"
    assert warnings == ["texture '1_neutral.jpg' named but the faces have no texture "
                        "coordinates (vt): texture=None"]
    with pytest.raises(InputError, match="unreadable image"):
        FS.obj_texture(obj, FS.read_obj(obj), [])


def test_facescape_scan_texture_named_without_vt(tmp_path):
    obj, _ = full_model(tmp_path)
    obj.write_text("mtllib 1_neutral.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\n")
    s = FS.read_facescape_scan(obj)
    assert s.texture is None and s.texture_name == "1_neutral.jpg" and s.landmarks is not None
    assert s.extra["warnings"] == ["texture '1_neutral.jpg' named but the faces have no "
                                   "texture coordinates (vt): texture=None"]
