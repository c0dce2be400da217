"""Arun-SVD registration, the landmark name tables and the template.

Truths: planted rigid transforms (uniform random rotations of every size, the sample's
+-8 degree poses), the first-order covariance of the least-squares rotation under
isotropic noise, the hand-derived best proper rotation for a mirrored set, duplicated
points for integer weights, and iBUG-68 / Bosphorus / BU-3DFE anatomy.
"""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_schema.errors import InputError
from preprocess.io.bosphorus import BOSPHORUS_LANDMARKS
from preprocess.landmark_names import (
    BOSPHORUS_TO_IBUG, BU3DFE_NOSE_TIP_PAIR, BU3DFE_TO_IBUG, IBUG_MIRROR, IBUG_NAMES,
    ibug_index, to_ibug,
)
from preprocess.registration import (
    COLLINEAR_TOL, Registration, apply_rigid, fit_rigid, register_landmarks,
)
from preprocess.template import Template, load_template

# ---------------------------------------------------------------- helpers


def angle_deg(Ra, Rb):
    """Angle (degrees) of the rotation Ra Rb^T: ||Ra - Rb||_F = 2 sqrt(2) sin(angle / 2)
    (exact for rotations and, unlike arccos of the trace, precise near 0)."""
    s = np.linalg.norm(np.asarray(Ra) - np.asarray(Rb)) / (2.0 * np.sqrt(2.0))
    return float(np.degrees(2.0 * np.arcsin(min(s, 1.0))))


def random_rotations(rng, n):
    return Rotation.random(n, random_state=rng).as_matrix()


@pytest.fixture(scope="module")
def tpl():
    return load_template()


# iBUG-68 anatomy, written from the iBUG 300-W annotation scheme (0-based), not from
# the code under test.
IBUG_REGION = {**{k: "jaw" for k in range(17)}, **{k: "brow" for k in range(17, 27)},
               **{k: "nose" for k in range(27, 36)}, **{k: "eye" for k in range(36, 48)},
               **{k: "mouth" for k in range(48, 68)}}
RIGHT_EYE, LEFT_EYE = range(36, 42), range(42, 48)
OUTER_EYE_CORNERS, INNER_EYE_CORNERS = {36, 45}, {39, 42}
MOUTH_CORNERS, NOSE_TIP = {48, 54}, 30
MIDLINE = {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}


# ---------------------------------------------------------------- fit_rigid: exact


def test_uniform_random_rotations_including_large_angles_are_recovered_exactly(tpl):
    rng = np.random.default_rng(0)
    Rs = random_rotations(rng, 300)
    angles = np.degrees(Rotation.from_matrix(Rs).magnitude())
    assert angles.max() > 170 and angles.min() < 45       # the whole range is covered
    worst_R = worst_t = 0.0
    for R in Rs:
        n = int(rng.integers(3, 69))
        src = tpl.points[rng.choice(68, n, replace=False)] + rng.normal(0, 5, (n, 3))
        t = rng.uniform(-200, 200, 3)
        fit = fit_rigid(src, src @ R.T + t)
        worst_R = max(worst_R, angle_deg(fit.R, R))
        worst_t = max(worst_t, np.abs(fit.t - t).max())
        assert fit.n == n and fit.rmse < 1e-9
        assert np.linalg.det(fit.R) == pytest.approx(1.0, abs=1e-12)
    assert worst_R < 0.1 and worst_t < 1e-8
    assert worst_R < 1e-6                                   # measured: 4.9e-13 degrees


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
def test_half_turns_are_recovered(axis):
    # 180 degrees: the case where angle-axis / quaternion shortcuts are ill-posed
    rng = np.random.default_rng(1)
    R = Rotation.from_rotvec(np.pi * np.asarray(axis) / np.linalg.norm(axis)).as_matrix()
    src = rng.normal(0, 30, (10, 3))
    fit = fit_rigid(src, src @ R.T + (1, 2, 3))
    assert angle_deg(fit.R, R) < 1e-6


def test_three_points_are_enough_and_coplanar_sets_give_a_rotation():
    # 3 points are always coplanar: H has rank 2 and the naive V U^T may be a reflection
    rng = np.random.default_rng(2)
    for R in random_rotations(rng, 50):
        src = rng.normal(0, 20, (3, 3))
        fit = fit_rigid(src, src @ R.T)
        assert angle_deg(fit.R, R) < 1e-6 and np.linalg.det(fit.R) > 0
    # many points on one plane (z = 0)
    src = np.column_stack([rng.normal(0, 20, (30, 2)), np.zeros(30)])
    R = random_rotations(rng, 1)[0]
    fit = fit_rigid(src, src @ R.T - 7.0)
    assert angle_deg(fit.R, R) < 1e-6


def test_apply_rigid_and_registration_apply():
    R = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    t = np.array([1.0, -2.0, 3.0])
    p = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    np.testing.assert_allclose(apply_rigid(p, R, t), (R @ p.T).T + t, atol=1e-12)
    np.testing.assert_allclose(apply_rigid(p[0], R, t), R @ p[0] + t, atol=1e-12)
    reg = Registration(R, t, 0.0, ("ibug_0",))
    np.testing.assert_allclose(reg.apply(p), apply_rigid(p, R, t))


# ---------------------------------------------------------------- fit_rigid: noise


def test_rotation_error_under_noise_matches_first_order_theory(tpl):
    """Isotropic noise sigma on the targets: to first order the rotation error vector
    has covariance sigma^2 M^-1 with M = sum_i (|r_i|^2 I - r_i r_i^T) (r_i centred
    source points), so E|dtheta|^2 = sigma^2 tr(M^-1)."""
    rng = np.random.default_rng(3)
    sigma = 1.0
    for idx in (np.arange(68), np.array(sorted(BOSPHORUS_TO_IBUG.values()))):
        src = tpl.points[idx]
        r = src - src.mean(axis=0)
        M = (r * r).sum() * np.eye(3) - r.T @ r
        predicted = sigma ** 2 * np.trace(np.linalg.inv(M))       # rad^2
        err = []
        for R in random_rotations(rng, 1500):
            dst = src @ R.T + rng.uniform(-100, 100, 3) + rng.normal(0, sigma, src.shape)
            err.append(np.radians(angle_deg(fit_rigid(src, dst).R, R)))
        err = np.array(err)
        ratio = np.mean(err ** 2) / predicted
        # measured: 0.994 (68 points) and 0.985 (17 points); the mean of 1500 draws of a
        # 3-dof chi-square-like variable has a relative sd of about 3%
        assert 0.85 < ratio < 1.15, ratio
        # measured worst case over 1500 poses: 0.71 deg (68 points), 1.66 deg (17 points);
        # predicted rms 0.29 and 0.64 deg
        assert np.degrees(err.max()) < 6 * np.degrees(np.sqrt(predicted))


def test_sample_pose_range_with_landmark_noise(tpl):
    # the embedded sample's poses: each angle uniform in +-8 deg, translation +-20/30 mm
    from preprocess.synthetic.scans import random_pose

    rng = np.random.default_rng(4)
    src = tpl.points
    exact, noisy = [], []
    for _ in range(300):
        pose = random_pose(rng, 8.0)
        dst = pose.apply(src)
        exact.append(angle_deg(fit_rigid(src, dst).R, pose.R))
        fit = fit_rigid(src, dst + rng.normal(0, 1.0, dst.shape))
        noisy.append(angle_deg(fit.R, pose.R))
        assert fit.rmse == pytest.approx(np.sqrt(3 * 65 / 68), rel=0.25)  # sigma sqrt(3(N-2)/N)
    assert max(exact) < 0.1
    assert max(noisy) < 1.0          # measured: max 0.61 deg, mean 0.27 deg at sigma 1 mm


# ---------------------------------------------------------------- reflections


def test_mirrored_set_gives_the_best_proper_rotation_not_a_reflection():
    """Targets = the source mirrored in x (x -> -x).  With principal spreads
    a > b > c along x, y, z, tr(R H) over rotations with H = diag(-a, b, c) is largest
    for R = diag(-1, 1, -1): the half turn about y (a + b - c), never the reflection."""
    rng = np.random.default_rng(5)
    src = rng.normal(0, 1, (200, 3)) * (50.0, 20.0, 5.0)
    src = src - src.mean(axis=0)
    # make the axes exactly principal: rotate the set onto its own principal frame
    _, _, Vt = np.linalg.svd(src, full_matrices=False)
    src = src @ Vt.T * np.sign(np.diag(Vt))          # columns in decreasing spread
    dst = src * (-1.0, 1.0, 1.0)
    fit = fit_rigid(src, dst)
    assert np.linalg.det(fit.R) == pytest.approx(1.0)
    np.testing.assert_allclose(fit.R, np.diag([-1.0, 1.0, -1.0]), atol=1e-9)
    # a naive R = V U^T would have been the mirror itself (det -1, rmse 0)
    assert fit.rmse > 1.0


def test_mirrored_set_result_is_a_local_optimum_among_rotations():
    rng = np.random.default_rng(6)
    src = rng.normal(0, 30, (40, 3))
    R0 = random_rotations(rng, 1)[0]
    dst = (src * (1.0, -1.0, 1.0)) @ R0.T + 5.0      # a mirror image, moved
    fit = fit_rigid(src, dst)
    assert np.linalg.det(fit.R) == pytest.approx(1.0)

    def cost(R):
        t = dst.mean(0) - R @ src.mean(0)
        return np.sum((src @ R.T + t - dst) ** 2)

    base = cost(fit.R)
    for dR in Rotation.from_rotvec(rng.normal(0, 0.02, (200, 3))).as_matrix():
        assert cost(dR @ fit.R) >= base - 1e-9


# ---------------------------------------------------------------- weights


def test_zero_weight_ignores_an_outlier():
    rng = np.random.default_rng(7)
    src = rng.normal(0, 30, (12, 3))
    R, t = random_rotations(rng, 1)[0], np.array([3.0, -4.0, 5.0])
    dst = src @ R.T + t
    dst[5] += (80.0, -60.0, 40.0)                     # one gross outlier
    plain = fit_rigid(src, dst)
    assert angle_deg(plain.R, R) > 1.0                # it drags the plain fit
    w = np.ones(12)
    w[5] = 0.0
    fit = fit_rigid(src, dst, w)
    assert angle_deg(fit.R, R) < 1e-6 and np.allclose(fit.t, t)
    assert fit.n == 11 and fit.rmse < 1e-9


def test_integer_weights_equal_duplicated_points_and_scale_does_not_matter():
    rng = np.random.default_rng(8)
    src = rng.normal(0, 30, (8, 3))
    dst = src @ random_rotations(rng, 1)[0].T + rng.normal(0, 3.0, (8, 3))
    w = np.array([1, 3, 1, 2, 5, 1, 1, 4])
    a = fit_rigid(src, dst, w)
    b = fit_rigid(np.repeat(src, w, axis=0), np.repeat(dst, w, axis=0))
    np.testing.assert_allclose(a.R, b.R, atol=1e-12)
    np.testing.assert_allclose(a.t, b.t, atol=1e-10)
    assert a.rmse == pytest.approx(b.rmse)
    c = fit_rigid(src, dst, 7.5 * w)
    np.testing.assert_allclose(a.R, c.R, atol=1e-12)
    # a heavier weight pulls the fit toward that point
    heavy = w.astype(float).copy()
    heavy[2] = 1000.0
    d = fit_rigid(src, dst, heavy)
    res = lambda f: np.linalg.norm(src[2] @ f.R.T + f.t - dst[2])
    assert res(d) < res(a)


# ---------------------------------------------------------------- degenerate input


def test_fewer_than_three_points_raise():
    p = np.array([[0.0, 0, 0], [1, 0, 0]])
    with pytest.raises(InputError, match="needs >= 3"):
        fit_rigid(p, p)
    p3 = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    with pytest.raises(InputError, match="2 point"):
        fit_rigid(p3, p3, weights=[1, 1, 0])
    with pytest.raises(InputError, match="needs >= 3"):
        fit_rigid(np.zeros((0, 3)), np.zeros((0, 3)))


def test_collinear_and_coincident_points_raise():
    line = np.outer(np.linspace(-50, 50, 10), [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="collinear"):
        fit_rigid(line, line + 1.0)
    # near-collinear: 1e-3 mm off a 370 mm line is below the stated tolerance
    bent = line.copy()
    bent[3] += (1e-3, 0, 0)
    with pytest.raises(InputError, match="collinear"):
        fit_rigid(bent, bent)
    # ... 5 mm off is a proper (thin) triangle fan: accepted
    ok = line.copy()
    ok[3] += (5.0, 0, 0)
    assert fit_rigid(ok, ok).rmse < 1e-9
    with pytest.raises(InputError, match="collinear"):
        fit_rigid(np.ones((5, 3)), np.ones((5, 3)))
    # collinear targets make the rotation just as undetermined
    tri = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    with pytest.raises(InputError, match="target landmarks are"):
        fit_rigid(tri, np.array([[0.0, 0, 0], [1, 1, 1], [2, 2, 2]]))
    assert COLLINEAR_TOL == 1e-3


def test_bad_values_raise():
    p = np.random.default_rng(9).normal(0, 10, (5, 3))
    q = p.copy()
    q[2, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        fit_rigid(p, q)
    with pytest.raises(InputError, match="must both be"):
        fit_rigid(p, p[:4])
    with pytest.raises(InputError, match=">= 0"):
        fit_rigid(p, p, weights=[1, 1, -1, 1, 1])
    with pytest.raises(InputError, match="weights must be"):
        fit_rigid(p, p, weights=[1, 1])
    with pytest.raises(InputError) as e:
        fit_rigid(p[:2], p[:2], item="bu3dfe/F0001/NE00")
    assert e.value.path == "bu3dfe/F0001/NE00"


# ---------------------------------------------------------------- register_landmarks


def _posed(points, rng, max_deg=30.0):
    R = Rotation.from_euler("xyz", rng.uniform(-max_deg, max_deg, 3), degrees=True).as_matrix()
    t = rng.uniform(-50, 50, 3)
    return points @ R.T + t, R, t


def test_register_bosphorus_labels(tpl):
    rng = np.random.default_rng(10)
    labels = list(BOSPHORUS_LANDMARKS)                # all 24, 7 without iBUG twin
    pts = np.array([tpl.point(f"ibug_{BOSPHORUS_TO_IBUG[n]}") if n in BOSPHORUS_TO_IBUG
                    else rng.normal(0, 500, 3) for n in labels])   # junk where unmapped
    scan, R, t = _posed(pts, rng)
    reg = register_landmarks(scan, labels, tpl, max_rmse_mm=1.0)
    # template = R_reg scan + t_reg is the inverse of the planted pose
    assert angle_deg(reg.R, R.T) < 1e-6
    np.testing.assert_allclose(reg.t, -R.T @ t, atol=1e-8)
    assert reg.rmse < 1e-9
    assert reg.used_names == tuple(f"ibug_{BOSPHORUS_TO_IBUG[n]}" for n in labels
                                   if n in BOSPHORUS_TO_IBUG)
    np.testing.assert_allclose(reg.apply(scan[13]), tpl.point("ibug_30"), atol=1e-8)


def test_register_bnd_and_ibug_names(tpl):
    rng = np.random.default_rng(11)
    names = [f"bnd_{k}" for k in range(83)]
    pts = np.array([tpl.point(f"ibug_{BU3DFE_TO_IBUG[k]}") if k in BU3DFE_TO_IBUG
                    else rng.normal(0, 500, 3) for k in range(83)])
    scan, R, _ = _posed(pts, rng)
    reg = register_landmarks(scan, names, tpl, max_rmse_mm=1.0)
    assert angle_deg(reg.R, R.T) < 1e-6 and len(reg.used_names) == len(BU3DFE_TO_IBUG)
    scan, R, _ = _posed(tpl.points, rng)
    reg = register_landmarks(scan, IBUG_NAMES, tpl, max_rmse_mm=1.0)
    assert angle_deg(reg.R, R.T) < 1e-6 and reg.used_names == IBUG_NAMES


def test_register_rmse_limit_weights_and_errors(tpl):
    rng = np.random.default_rng(12)
    scan, _, _ = _posed(tpl.points, rng)
    scan = scan + rng.normal(0, 2.0, scan.shape)
    with pytest.raises(InputError, match=r"rmse \d+\.\d\d mm exceeds max_rmse_mm = 1"):
        register_landmarks(scan, IBUG_NAMES, tpl, max_rmse_mm=1.0)
    # expected rmse: sigma sqrt(3 (N - 2) / N) = 3.4 mm
    assert register_landmarks(scan, IBUG_NAMES, tpl, max_rmse_mm=5.0).rmse < 5.0
    # a zero weight drops the point from the fit and from used_names
    w = np.ones(68)
    w[:17] = 0.0
    reg = register_landmarks(scan, IBUG_NAMES, tpl, weights=w, max_rmse_mm=5.0)
    assert reg.used_names == IBUG_NAMES[17:]
    with pytest.raises(InputError, match="two landmarks map to ibug_30"):
        register_landmarks(scan[:4], ["ibug_30", "Nose tip", "ibug_36", "ibug_45"], tpl,
                           max_rmse_mm=5.0)
    with pytest.raises(InputError, match="only 2 landmark"):
        register_landmarks(scan[:3], ["ibug_30", "ibug_36", "Nose saddle left"], tpl,
                           max_rmse_mm=5.0)
    with pytest.raises(InputError, match="landmark points for"):
        register_landmarks(scan, IBUG_NAMES[:10], tpl, max_rmse_mm=5.0)
    nan = scan.copy()
    nan[40] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        register_landmarks(nan, IBUG_NAMES, tpl, max_rmse_mm=5.0)


# ---------------------------------------------------------------- name tables


def test_ibug_index_parsing():
    assert ibug_index("ibug_0") == 0 and ibug_index("ibug_67") == 67
    assert ibug_index("ibug_68") is None and ibug_index("ibug_-1") is None
    assert ibug_index("nose  TIP") == 30 and ibug_index("Nose tip") == 30
    assert ibug_index("Nose saddle left") is None and ibug_index("Left ear lobe") is None
    assert ibug_index("bnd_0") == 36 and ibug_index("bnd_37") is None
    assert ibug_index("bnd_83") is None and ibug_index("whatever") is None
    # Bosphorus "left" = image left = subject's right (real bs000_CAU_A22A25_0.lm3)
    assert to_ibug("Outer left eye corner") == "ibug_36" and to_ibug("bnd_1") is None
    assert IBUG_NAMES[30] == "ibug_30" and len(IBUG_NAMES) == 68


def test_ibug_mirror_table(tpl):
    m = np.array(IBUG_MIRROR)
    assert sorted(m) == list(range(68)) and (m[m] == np.arange(68)).all()
    assert set(np.flatnonzero(m == np.arange(68))) == MIDLINE
    for k in range(68):
        assert IBUG_REGION[k] == IBUG_REGION[m[k]]
    assert m[36] == 45 and m[39] == 42 and m[48] == 54 and m[0] == 16 and m[17] == 26


def side_of(k, tpl):
    x = tpl.point(f"ibug_{k}")[0]
    return "left" if x > 1.0 else "right" if x < -1.0 else "middle"


def test_bosphorus_table_against_anatomy(tpl):
    assert set(BOSPHORUS_TO_IBUG) <= set(BOSPHORUS_LANDMARKS)
    unmapped = set(BOSPHORUS_LANDMARKS) - set(BOSPHORUS_TO_IBUG)
    assert unmapped == {"Nose saddle left", "Nose saddle right", "Left nose peak",
                        "Right nose peak", "Chin middle", "Left ear lobe", "Right ear lobe"}
    for label, k in BOSPHORUS_TO_IBUG.items():
        low = label.lower()
        # Bosphorus "left" = the image's left = the subject's right (-x)
        side = "right" if "left" in low else "left" if "right" in low else "middle"
        assert side_of(k, tpl) == side, label
        if "eyebrow" in low:
            assert IBUG_REGION[k] == "brow", label
        elif "eye corner" in low:
            assert k in (OUTER_EYE_CORNERS if "outer" in low else INNER_EYE_CORNERS), label
            assert k in (LEFT_EYE if side == "left" else RIGHT_EYE), label
        elif "mouth corner" in low:
            assert k in MOUTH_CORNERS, label
        elif "lip" in low:
            assert IBUG_REGION[k] == "mouth" and k in MIDLINE, label
        else:
            assert label == "Nose tip" and k == NOSE_TIP
    g = lambda n: tpl.point(f"ibug_{BOSPHORUS_TO_IBUG[n]}")
    for side in ("left", "right"):
        assert abs(g(f"Outer {side} eye corner")[0]) > abs(g(f"Inner {side} eye corner")[0])
        xs = [abs(g(f"{w} {side} eyebrow")[0]) for w in ("Inner", "Middle", "Outer")]
        assert xs == sorted(xs)
    assert g("Upper lip outer middle")[1] > g("Upper lip inner middle")[1] \
        > g("Lower lip inner middle")[1] > g("Lower lip outer middle")[1]


def test_bu3dfe_table_against_anatomy(tpl):
    # groups of REFERENCE.md; the first eye/brow of each pair is the subject's right
    groups = [(range(8), RIGHT_EYE), (range(8, 16), LEFT_EYE),
              (range(16, 26), range(17, 22)), (range(26, 36), range(22, 27)),
              (range(36, 48), range(27, 36)), (range(48, 68), range(48, 68)),
              (range(68, 83), range(17))]
    for bnd, k in BU3DFE_TO_IBUG.items():
        assert 0 <= bnd < 83
        group = next(g for g in groups if bnd in g[0])
        assert k in group[1], (bnd, k)
    assert {BU3DFE_TO_IBUG[0], BU3DFE_TO_IBUG[4]} == {36, 39}        # right eye corners
    assert {BU3DFE_TO_IBUG[8], BU3DFE_TO_IBUG[12]} == {42, 45}       # left eye corners
    assert BU3DFE_TO_IBUG[48] == 48 and BU3DFE_TO_IBUG[54] == 54     # mouth corners
    assert BU3DFE_TO_IBUG[75] == 8                                   # chin: contour middle
    assert NOSE_TIP not in BU3DFE_TO_IBUG.values()                   # no nose-tip point
    assert len(set(BU3DFE_TO_IBUG.values())) == len(BU3DFE_TO_IBUG)  # one-to-one
    assert set(BU3DFE_NOSE_TIP_PAIR).isdisjoint(BU3DFE_TO_IBUG)


def test_bu3dfe_table_matches_the_sample_layout():
    # the embedded sample places the 83 points by its own definition
    # (synthetic.scans.bu3dfe_landmark_material): each mapped point must sit at its
    # iBUG point; corners and middles that the generator resamples within 3.5 mm
    from preprocess.synthetic.face_model import FaceModel, FaceParams
    from preprocess.synthetic.scans import bu3dfe_landmark_material

    model = FaceModel(FaceParams())
    bnd, ibug = bu3dfe_landmark_material(model), model.landmarks_m
    d = {b: float(np.linalg.norm(bnd[b] - ibug[k])) for b, k in BU3DFE_TO_IBUG.items()}
    assert max(d.values()) < 3.5, d                  # measured: 3.08 mm (bnd 12)
    assert sum(v < 1e-9 for v in d.values()) >= len(d) - 5
    # the stand-in nose tip: the wings' midpoint is within 5 mm of iBUG 30 (in-plane)
    a, b = BU3DFE_NOSE_TIP_PAIR
    assert np.linalg.norm(0.5 * (bnd[a] + bnd[b]) - ibug[30]) < 5.0


# ---------------------------------------------------------------- template


def test_template_anatomy(tpl):
    p = tpl.points
    assert p.shape == (68, 3) and tpl.names == IBUG_NAMES and not p.flags.writeable
    y = lambda ks: p[list(ks), 1].mean()
    assert y(range(17, 27)) > y(range(36, 48)) > p[30, 1] > y(range(48, 68)) > p[8, 1]
    assert p[list(LEFT_EYE), 0].mean() > 20 and p[list(RIGHT_EYE), 0].mean() < -20
    assert p[54, 0] > 0 > p[48, 0] and p[16, 0] > 0 > p[0, 0]
    # nose tip at the origin and the most protruding landmark by far
    np.testing.assert_array_equal(p[30], 0.0)
    assert np.all(np.delete(p[:, 2], 30) < -5.0)
    # mirror symmetric about x = 0 (within 0.01 mm; the derivation symmetrises it)
    mirrored = p[list(IBUG_MIRROR)] * (-1, 1, 1)
    assert np.abs(mirrored - p).max() < 0.01
    assert np.abs(p[sorted(MIDLINE), 0]).max() < 0.01
    # adult proportions (mm): outer eye corners ~90 apart, inner ~30-40, mouth 45-75
    d = lambda a, b: np.linalg.norm(p[a] - p[b])
    assert 80 < d(36, 45) < 105 and 25 < d(39, 42) < 45 and 45 < d(48, 54) < 75
    assert 60 < p[27, 1] - p[8, 1] < 130             # nasion to chin


def test_stored_template_comes_from_real_scans(tpl):
    # issue 13: the shipped default is built from real public scans, not the sample model
    assert "face_model" not in tpl.provenance
    for name in ("bs000_CAU_A22A25_0.bnt", "bs000_CAU_A26A12lw_0.bnt", "001-001.wrl"):
        assert name in tpl.provenance


def test_template_validates_shape():
    with pytest.raises(ValueError):
        Template(np.zeros((3, 3)), ("a", "b"))
