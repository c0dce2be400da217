"""The face model, the expression tables and the scan builders against known truths:
hand-stated values, exact mathematics (planes, ellipses) and known rigid transforms."""
import numpy as np
import pytest

from preprocess.synthetic.astronaut import astronaut_landmarks, landmark_provenance
from preprocess.synthetic.expressions import (
    EXPRESSIONS, MIRROR_PAIRS, N_CONTROLS, SmoothField, ellipse_points, ellipse_radius,
)
from preprocess.synthetic.face_model import (
    MM_PER_PX, REFERENCE_BORDER, FaceModel, FaceParams, image_to_reference, lattice,
    random_face_params, reference_landmarks, reference_to_image,
)
from preprocess.synthetic.scans import (
    BOSPHORUS_SAMPLE_LABELS, bosphorus_landmark_material, bosphorus_scan, bu3dfe_scan,
    bu3dfe_topology, facescape_scan, facescape_topology, landmark_positions, rasterize,
    rotation_xyz, texture_box,
)

SUBJECTS = [FaceModel()] + [FaceModel(random_face_params(np.random.default_rng(k))) for k in range(3)]


def test_shipped_landmarks_are_the_dlib_points():
    L = astronaut_landmarks()
    assert L.shape == (68, 2)
    # a few of the points dlib gave (iBUG order): jaw start, nose tip, mouth corners, last
    assert L[0].tolist() == [179, 104]
    assert L[30].tolist() == [225, 127]
    assert L[48].tolist() == [201, 139] and L[54].tolist() == [246, 141]
    assert L[67].tolist() == [217, 150]
    prov = landmark_provenance()
    assert prov["date"] == "2026-11-21" and "dlib" in prov["tool"] and "by eye" in prov["checked"]


def test_image_to_model_mapping():
    L = reference_landmarks()
    np.testing.assert_allclose(L[30], [0.0, 0.0], atol=1e-12)            # tip at the origin
    eyes = np.linalg.norm(L[45] - L[36])
    assert 85.0 < eyes < 95.0                                             # ~90 mm apart
    px = astronaut_landmarks()
    assert eyes == pytest.approx(MM_PER_PX * np.linalg.norm(px[45] - px[36]))
    right, left = L[36:42].mean(0), L[42:48].mean(0)
    assert right[1] == pytest.approx(left[1], abs=1e-9)                  # eyes levelled
    assert right[0] < 0 < left[0] and L[8][1] < 0 < L[27][1]              # x right, y up
    np.testing.assert_allclose(reference_to_image(image_to_reference(astronaut_landmarks())),
                               astronaut_landmarks(), atol=1e-9)


@pytest.mark.parametrize("model", SUBJECTS, ids=["reference", "s0", "s1", "s2"])
def test_nose_tip_is_the_most_protruding_point(model):
    m = lattice(1.5).points * model.scale
    for name in EXPRESSIONS:
        p = model.surface(m, name, 1.0)
        tip = model.nose_tip(name, 1.0)
        top = p[np.argmax(p[:, 2])]
        assert np.linalg.norm(top[:2] - tip[:2]) < 1.5, name     # within one node
        assert top[2] - tip[2] < 0.05, name
    # the nose stands out of the dome by about nose_protrusion (20-25 mm)
    assert abs(model.nose_tip()[2] - model.params.dome_depth - model.params.nose_protrusion) < 3.0


def test_nose_tip_is_the_max_vertex_of_the_facescape_meshes():
    _, _, idx = facescape_topology(5.0)
    for model in SUBJECTS:
        for name in ("neutral", "happy", "surprise", "disgust", "lip_puckerer", "cheek_blowing"):
            s = facescape_scan(model, name, 1.0)
            assert int(np.argmax(s.vertices[:, 2])) == idx[30], name


def test_expression_table_holds_the_written_values():
    d = {n: e.landmark_displacement for n, e in EXPRESSIONS.items()}
    assert d["neutral"].shape == (68, 3) and not d["neutral"].any()
    np.testing.assert_allclose(d["surprise"][8], [0, -10, 0])      # jaw drop: chin down 10 mm
    np.testing.assert_allclose(d["surprise"][19], [0, 9, 1])       # brows up
    np.testing.assert_allclose(d["happy"][54], [6, 6, -2])         # left corner up and out (+x)
    np.testing.assert_allclose(d["happy"][48], [-6, 6, -2])        # right corner out is -x
    np.testing.assert_allclose(d["anger"][21], [4, -6, 1])         # inner brow down, to the middle
    np.testing.assert_allclose(d["sadness"][48], [-0.5, -4 - 0.7, 0])  # corners down, chin up
    np.testing.assert_allclose(d["jaw_left"][8], [6, 0, 0])        # subject's left = +x
    np.testing.assert_allclose(d["jaw_right"][8], [-6, 0, 0])
    assert d["contempt"][48][1] == 0 and d["contempt"][54][1] > 0   # one corner up only


def test_symmetric_expressions_are_mirror_images():
    one_sided = {"contempt", "jaw_left", "jaw_right", "mouth_left", "mouth_right"}
    flip = np.array([-1.0, 1.0, 1.0])
    for name, e in EXPRESSIONS.items():
        if name in one_sided:
            continue
        for r, l in MIRROR_PAIRS:
            np.testing.assert_allclose(e.displacement[l], e.displacement[r] * flip, err_msg=name)


@pytest.mark.parametrize("model", SUBJECTS[:2], ids=["reference", "s0"])
def test_displacement_at_landmarks_equals_the_table_times_intensity(model):
    for name, e in EXPRESSIONS.items():
        for intensity in (0.5, 1.0):
            moved = model.surface(model.landmarks_m, name, intensity)
            still = model.surface(model.landmarks_m, "neutral")
            np.testing.assert_allclose(moved - still, intensity * e.landmark_displacement,
                                       atol=1e-8, err_msg=name)
            np.testing.assert_allclose(model.landmarks3d(name, intensity), moved, atol=1e-8)


def test_smooth_field_interpolates_and_vanishes_on_and_beyond_the_border():
    border = (0.0, 0.0, 50.0, 40.0)
    centers = np.array([[0.0, 0.0], [10.0, 5.0], [-20.0, -10.0]])
    values = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5], [4.0, 0.0, 0.0]])
    f = SmoothField(centers, values, border, n_anchors=32)
    np.testing.assert_allclose(f(centers), values, atol=1e-9)
    np.testing.assert_allclose(f(ellipse_points(border, 32)), 0.0, atol=1e-9)
    far = ellipse_points((0.0, 0.0, 50.0 * 1.3, 40.0 * 1.3), 16)
    assert not f(far).any()
    with pytest.raises(ValueError, match="outside the face border"):
        SmoothField(np.array([[60.0, 0.0]]), np.ones((1, 3)), border)


def test_lattice_covers_the_border_ellipse():
    lat = lattice(4.0, 0.5)
    rho = ellipse_radius(lat.points, REFERENCE_BORDER)
    np.testing.assert_allclose(rho[lat.border], 1.0, atol=1e-12)
    assert rho.max() <= 1.0 + 1e-12
    t = lat.triangles()
    p = lat.points
    # shoelace by hand (not the module's helper)
    area = 0.5 * ((p[t[:, 1], 0] - p[t[:, 0], 0]) * (p[t[:, 2], 1] - p[t[:, 0], 1])
                  - (p[t[:, 1], 1] - p[t[:, 0], 1]) * (p[t[:, 2], 0] - p[t[:, 0], 0]))
    assert (area > 0).all()                                         # counter-clockwise from +Z
    # the ellipse's area, up to the polygon's shortfall
    assert area.sum() == pytest.approx(np.pi * REFERENCE_BORDER[2] * REFERENCE_BORDER[3], rel=0.01)


def test_rasterize_a_known_plane_and_occlusion():
    # a square of two triangles on the plane z = 2x + 3y + 5 over [0, 10] x [0, 10]
    v = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], float)
    v[:, 2] = 2 * v[:, 0] + 3 * v[:, 1] + 5
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    attr = v[:, :2].copy()
    ras = rasterize(v, tris, attr, x0=0.5, y_top=9.5, spacing=1.0, shape=(10, 10), min_facing=0.0)
    assert ras.valid.all()
    X, Y = np.meshgrid(0.5 + np.arange(10), 9.5 - np.arange(10))
    np.testing.assert_allclose(ras.z, 2 * X + 3 * Y + 5, atol=1e-9)
    np.testing.assert_allclose(ras.attributes[..., 0], X, atol=1e-9)
    # a parallel square 1 mm in front hides it; turned away (clockwise), it is not seen
    front = v + [0, 0, 1.0]
    both = np.vstack([v, front])
    ras = rasterize(both, np.vstack([tris, tris + 4]), np.zeros((8, 1)), 0.5, 9.5, 1.0, (10, 10), 0.0)
    np.testing.assert_allclose(ras.z, 2 * X + 3 * Y + 6, atol=1e-9)
    ras = rasterize(v, tris[:, ::-1], attr, 0.5, 9.5, 1.0, (10, 10))
    assert not ras.valid.any()


def test_range_scan_pose_landmarks_and_noise():
    model = SUBJECTS[1]
    rng = np.random.default_rng(5)
    s = bosphorus_scan(model, "happy", 0.9, rng, (160, 128), 1.2, 0.15, 3, 0.001, 8.0)
    R, t = s.pose.R, s.pose.t
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.all(np.abs(s.pose.angles_deg) <= 8.0)
    np.testing.assert_allclose(R, rotation_xyz(s.pose.angles_deg))
    # posed landmarks = R p + t of the unposed ones
    labels, m, sources = bosphorus_landmark_material(model)
    unposed = landmark_positions(model, m, sources, "happy", 0.9)
    np.testing.assert_allclose(s.landmarks, unposed @ R.T + t, atol=1e-9)
    assert s.labels == BOSPHORUS_SAMPLE_LABELS and len(labels) == 22
    np.testing.assert_allclose(s.nose_tip, R @ model.nose_tip("happy", 0.9) + t, atol=1e-9)
    np.testing.assert_allclose(s.landmarks[labels.index("Nose tip")], s.nose_tip, atol=1e-9)
    # the grid is centred on the nose tip; cells are regular in x, y
    assert s.x0 + 0.5 * 127 * 1.2 == pytest.approx(s.nose_tip[0])
    rr, cc = np.nonzero(s.valid)
    np.testing.assert_allclose(s.xyz[rr, cc, 0], s.x0 + 1.2 * cc, atol=1e-5)
    np.testing.assert_allclose(s.xyz[rr, cc, 1], s.y_top - 1.2 * rr, atol=1e-5)
    # every 3-D landmark lies on the scanned surface (bilinear depth at its x, y)
    c = (s.landmarks[:, 0] - s.x0) / 1.2
    r = (s.y_top - s.landmarks[:, 1]) / 1.2
    spikes = np.zeros(s.valid.size, bool)
    spikes[s.outliers] = True
    spikes = spikes.reshape(s.valid.shape)
    checked = 0
    for k in range(len(labels)):
        r0, c0 = int(np.floor(r[k])), int(np.floor(c[k]))
        cell = (slice(r0, r0 + 2), slice(c0, c0 + 2))
        if not s.valid[cell].all() or spikes[cell].any():
            continue                                    # a planted hole or spike
        fr, fc = r[k] - r0, c[k] - c0
        z = s.xyz[..., 2][cell]
        zi = (z[0, 0] * (1 - fr) * (1 - fc) + z[0, 1] * (1 - fr) * fc
              + z[1, 0] * fr * (1 - fc) + z[1, 1] * fr * fc)
        assert abs(zi - s.landmarks[k, 2]) < 0.6, labels[k]   # noise 0.15 mm + sampling
        checked += 1
    assert checked >= 18
    # noise: the scanned depth around the cheeks scatters by about noise_mm around a smooth fit
    z = s.xyz[..., 2]
    lap = z[1:-1, 1:-1] - 0.25 * (z[:-2, 1:-1] + z[2:, 1:-1] + z[1:-1, :-2] + z[1:-1, 2:])
    ok = s.valid[1:-1, 1:-1] & s.valid[:-2, 1:-1] & s.valid[2:, 1:-1] & s.valid[1:-1, :-2] & s.valid[1:-1, 2:]
    lap = lap[ok]
    lap = lap[np.abs(lap) < 1.0]                        # drop spikes and the steep rim
    # std of the 5-point Laplacian of white noise is sigma * sqrt(1 + 4/16)
    assert 0.13 * np.sqrt(1.25) < lap.std() < 0.25 * np.sqrt(1.25)
    # holes and spikes as planted, none on the nose tip
    assert len(s.holes) == 3
    assert len(s.outliers) == round(0.001 * s.valid.sum()) > 5      # spikes stay valid cells
    tip_cell = (int(round((s.y_top - s.nose_tip[1]) / 1.2)), int(round((s.nose_tip[0] - s.x0) / 1.2)))
    assert s.valid[tip_cell]
    assert abs(s.xyz[tip_cell][2] - s.nose_tip[2]) < 1.0


def test_bu3dfe_polygons_mix_triangles_and_quads_and_landmarks_are_vertices():
    _, polys, _ = bu3dfe_topology(5.0)
    sizes = {len(p) for p in polys}
    assert sizes == {3, 4}
    n3 = sum(len(p) == 3 for p in polys)
    assert 0.2 * len(polys) < n3 < 0.5 * len(polys)
    s = bu3dfe_scan(SUBJECTS[2], "surprise", 1.0, np.random.default_rng(1), 0.15, 8.0)
    assert s.landmarks.shape == (83, 3)
    np.testing.assert_array_equal(s.landmarks, s.vertices[s.landmark_index])
    assert np.all(np.abs(s.pose.angles_deg) <= 4.0)
    # the wings 37 and 42 flank the nose tip
    mid = 0.5 * (s.landmarks[37] + s.landmarks[42])
    assert np.linalg.norm(mid[:2] - s.nose_tip[:2]) < 12.0


def test_facescape_topology_is_shared_and_landmarks_are_exact():
    pts, _, idx = facescape_topology(5.0)
    assert len(np.unique(idx)) == 68
    a = facescape_scan(SUBJECTS[1], "neutral", 1.0)
    b = facescape_scan(SUBJECTS[2], "mouth_stretch", 0.9)
    np.testing.assert_array_equal(a.triangles, b.triangles)
    assert len(a.vertices) == len(b.vertices) == len(pts)
    np.testing.assert_allclose(b.vertices[idx[17:]], SUBJECTS[2].landmarks3d("mouth_stretch", 0.9)[17:],
                               atol=1e-6)
    # contour landmarks are the nearest vertices: a few mm away in the image plane (more
    # in depth on the steep sides of the face)
    d = b.vertices[idx[:17]] - SUBJECTS[2].landmarks3d("mouth_stretch", 0.9)[:17]
    assert np.linalg.norm(d[:, :2], axis=1).max() < 6.0


def test_texture_coordinates_point_at_the_landmark_pixels():
    from preprocess.synthetic.scans import texture_pixels, texture_uv

    x0, y0, x1, y1 = texture_box()
    model = SUBJECTS[3]
    px = texture_pixels(model, model.landmarks_m)
    np.testing.assert_allclose(px, astronaut_landmarks() - [x0, y0], atol=1e-9)
    uv = texture_uv(model, model.landmarks_m[30:31])[0]
    assert uv[0] == pytest.approx((225 - x0 + 0.5) / (x1 - x0))
    assert uv[1] == pytest.approx(1 - (127 - y0 + 0.5) / (y1 - y0))


def test_face_params_defaults_and_ranges():
    p = FaceParams()
    assert p.width == 1.0 and p.nose_protrusion == 22.0
    for k in range(20):
        q = random_face_params(np.random.default_rng(k))
        assert 0.94 <= q.width <= 1.05 and 20.0 <= q.nose_protrusion <= 25.0
        assert all(0.9 <= g <= 1.1 for g in q.skin_gain)
    assert N_CONTROLS == 75
