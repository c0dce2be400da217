"""Generic .ply/.obj scans through trimesh, on hand-written files."""
import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.io.generic_mesh import read_mesh_scan
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


def test_obj_keeps_vertex_order_and_ignores_materials(tmp_path):
    p = tmp_path / "head.obj"
    # vertex 2 used with two texture coordinates; the mtl names a file outside the folder
    p.write_text("mtllib ../../evil.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\n"
                 "vt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\nvt 0.5 0.5\n"
                 "f 1/1 2/2 3/3\nf 2/5 4/4 3/3\n")
    s = read_mesh_scan(p)
    np.testing.assert_array_equal(s.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(s.faces, [[0, 1, 2], [1, 3, 2]])
    assert s.texture is None and s.colors is None


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
