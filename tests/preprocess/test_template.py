"""Rigid GPA and the dataset template, checked against a known mean shape under planted
random rigid transforms (truth from the transforms, tolerances from the noise)."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_schema.errors import ConfigError, InputError
from preprocess.gpa import gpa
from preprocess.landmark_names import IBUG_MIRROR, IBUG_NAMES
from preprocess.registration import apply_rigid, fit_rigid
from preprocess.template import (Template, build_template, ibug_array, load_template, symmetrize,
                                 write_template)

MIRROR_X = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def truth():
    """A face-like, asymmetric 68-point shape (mm): the default template, perturbed."""
    rng = np.random.default_rng(7)
    return load_template().points + rng.normal(0, 3.0, (68, 3))


def planted(shape, n, sigma, seed):
    """n copies of shape (P, 3), each with N(0, sigma) noise per coordinate, then a
    random rotation and a translation of up to 200 mm: sets (n, P, 3), R (n, 3, 3), t."""
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=rng).as_matrix()
    t = rng.uniform(-200, 200, (n, 3))
    sets = np.stack([apply_rigid(shape + rng.normal(0, sigma, shape.shape), R[i], t[i]) for i in range(n)])
    return sets, R, t


def residual(mean, target):
    """RMS distance (mm) between two shapes after the best rigid fit, over the points
    both have."""
    both = ~(np.isnan(mean[:, 0]) | np.isnan(target[:, 0]))
    return fit_rigid(mean[both], target[both]).rmse


def test_gpa_noise_free_recovers_the_shape_and_the_planted_poses(truth):
    sets, R, _ = planted(truth, 12, 0.0, seed=1)
    res = gpa(sets)
    assert res.converged and res.iterations >= 1
    assert residual(res.mean, truth) < 1e-8
    assert np.nanmax(res.spread_mm) < 1e-8
    # R_i undoes the planted R_i up to one common rotation G (the gauge): R_i @ R_true_i = G
    G = res.R[0] @ R[0]
    for i in range(len(sets)):
        np.testing.assert_allclose(res.R[i] @ R[i], G, atol=1e-9)
    assert (res.count == 12).all() and not res.excluded


def test_gpa_mean_error_and_spread_follow_the_noise(truth):
    n, sigma = 40, 0.5
    sets, _, _ = planted(truth, n, sigma, seed=2)
    res = gpa(sets)
    assert res.converged
    # the mean of n sets with isotropic noise sigma per coordinate is off by
    # sigma * sqrt(3 / n) RMS per point (3-D); 1.5x leaves room for chance
    assert residual(res.mean, truth) < 1.5 * sigma * np.sqrt(3 / n)
    # each set scatters about the mean by sigma * sqrt(3) (less the few degrees of
    # freedom the fits absorb)
    assert np.mean(res.spread_mm) == pytest.approx(sigma * np.sqrt(3), rel=0.15)


def test_gpa_with_missing_points(truth):
    n, sigma = 40, 0.5
    sets, _, _ = planted(truth, n, sigma, seed=3)
    rng = np.random.default_rng(4)
    sets[rng.random(sets.shape[:2]) < 0.3] = np.nan     # each set lacks ~30% of its points
    sets[1:, 5] = np.nan                                 # ibug_5: one set only
    sets[:, 60] = np.nan                                 # ibug_60: no set
    res = gpa(sets)
    assert res.converged
    have = ~np.isnan(sets[..., 0])
    np.testing.assert_array_equal(res.count, have.sum(axis=0))
    assert np.isnan(res.mean[60]).all() and np.isnan(res.spread_mm[60])
    assert res.spread_mm[5] == 0.0                      # one set: nothing to scatter about
    # each point is the mean of count_p sets: expected RMS sigma * sqrt(3 * mean(1 / count))
    ok = res.count > 0
    expected = sigma * np.sqrt(3 * np.mean(1.0 / res.count[ok]))
    assert residual(res.mean, truth) < 1.5 * expected
    # aligned sets have exactly the missing pattern of the input
    np.testing.assert_array_equal(np.isnan(res.aligned[..., 0]), ~have)


def test_gpa_noise_free_with_missing_points_is_exact(truth):
    sets, _, _ = planted(truth, 6, 0.0, seed=5)
    sets[0, :30] = np.nan
    sets[1, 30:] = np.nan
    sets[2, ::2] = np.nan
    res = gpa(sets)
    assert residual(res.mean, truth) < 1e-8


def test_gpa_excludes_a_set_that_cannot_be_posed(truth):
    sets, _, _ = planted(truth, 5, 0.0, seed=6)
    sets[3, 2:] = np.nan                                 # 2 points left: no rigid fit
    res = gpa(sets)
    assert list(res.excluded) == [3] and "3" in res.excluded[3]
    assert res.used.tolist() == [True, True, True, False, True]
    assert np.isnan(res.aligned[3]).all()
    assert residual(res.mean, truth) < 1e-8
    with pytest.raises(InputError):
        gpa(sets[:1])
    with pytest.raises(InputError):
        gpa(np.zeros((3, 68, 2)))


def test_symmetrize_is_mirror_symmetric(truth):
    out = symmetrize(truth)
    np.testing.assert_allclose(out[list(IBUG_MIRROR)] * MIRROR_X, out, atol=1e-12)
    # a symmetric shape is its own symmetrisation
    np.testing.assert_allclose(symmetrize(out), out, atol=1e-12)


def default_array():
    ref = load_template()
    return ibug_array(ref.points, ref.names)


def test_build_template_fixes_the_frame_to_the_reference():
    """Sets = the (symmetric, nose-at-origin) default under random poses: whatever the
    poses, the built template is the default itself, in its frame."""
    ref = load_template()
    sets, _, _ = planted(default_array(), 8, 0.0, seed=8)
    b = build_template(sets, ref, provenance="p")
    assert b.template.names == IBUG_NAMES and b.template.provenance == "p"
    np.testing.assert_allclose(b.template.points, ref.points, atol=2e-6)   # JSON rounding: 1e-6
    assert b.origin == "ibug_30" and not b.mirrored and not b.dropped
    assert b.frame_fit.rmse < 1e-6
    assert set(b.spread_mm) == set(IBUG_NAMES) and max(b.spread_mm.values()) < 1e-6
    assert set(b.count.values()) == {8}


def test_build_template_noise_tolerance_and_symmetry():
    n, sigma = 30, 0.5
    sets, _, _ = planted(default_array(), n, sigma, seed=9)
    b = build_template(sets, load_template())
    p = b.template.points
    np.testing.assert_allclose(p[list(IBUG_MIRROR)] * MIRROR_X, p, atol=1e-6)
    np.testing.assert_array_equal(b.template.point("ibug_30"), [0.0, 0.0, 0.0])
    # the nose-tip shift adds the nose tip's own error: 2x the per-point bound
    err = np.sqrt(np.mean(np.sum((p - load_template().points) ** 2, axis=1)))
    assert err < 2 * 1.5 * sigma * np.sqrt(3 / n)


def test_build_template_fills_a_one_sided_point_from_its_mirror_and_drops_two_sided():
    ref = load_template()
    sets, _, _ = planted(default_array(), 6, 0.0, seed=10)
    sets[:, 36] = np.nan            # right eye outer corner: its mirror 45 is there
    sets[:, [1, 15]] = np.nan       # a jaw pair: both sides missing
    sets[:, 8] = np.nan             # chin: on the midline, its own mirror
    b = build_template(sets, ref)
    assert b.mirrored == ("ibug_36",)
    assert b.dropped == ("ibug_1", "ibug_8", "ibug_15")
    assert len(b.template.names) == 65 and "ibug_8" not in b.template.names
    np.testing.assert_allclose(b.template.point("ibug_36"), ref.point("ibug_36"), atol=2e-6)
    keep = [ref.names.index(n) for n in b.template.names]
    np.testing.assert_allclose(b.template.points, ref.points[keep], atol=2e-6)
    assert b.spread_mm["ibug_36"] == b.spread_mm["ibug_45"] and b.count["ibug_36"] == 6


def test_build_template_without_a_nose_tip_keeps_the_reference_origin():
    """BU-3DFE files have no ibug_30: the origin stays where the reference's nose tip
    falls after the frame fit."""
    ref = load_template()
    sets, _, _ = planted(default_array(), 5, 0.0, seed=11)
    sets[:, 30] = np.nan
    b = build_template(sets, ref)
    assert b.origin == "reference" and "ibug_30" in b.dropped
    keep = [ref.names.index(n) for n in b.template.names]
    np.testing.assert_allclose(b.template.points, ref.points[keep], atol=2e-6)


def test_build_template_rejects_bad_shapes():
    with pytest.raises(InputError):
        build_template(np.zeros((4, 51, 3)), load_template())


def test_ibug_array_maps_vocabularies_and_rejects_duplicates():
    pts = np.arange(12.0).reshape(4, 3)
    a = ibug_array(pts, ["ibug_3", "Nose tip", "bnd_0", "Nose saddle left"])
    assert np.isnan(a[:, 0]).sum() == 68 - 3
    np.testing.assert_array_equal(a[3], pts[0])
    np.testing.assert_array_equal(a[30], pts[1])
    np.testing.assert_array_equal(a[36], pts[2])        # bnd_0: right eye outer corner
    with pytest.raises(InputError, match="ibug_30"):
        ibug_array(pts[:2], ["ibug_30", "Nose tip"])
    with pytest.raises(InputError):
        ibug_array(pts, ["ibug_1"])
    assert np.isnan(ibug_array(np.zeros((0, 3)), [])).all()


def test_write_then_load_round_trip_with_an_extra_field(tmp_path):
    names = ("ibug_27", "ibug_30", "ibug_36", "ibug_45")
    tpl = Template(np.array([[0, 30.0, -20], [0, 0, 0], [-45.5, 35, -30], [45.5, 35, -30]]), names, "test")
    path = tmp_path / "t.json"
    write_template(path, tpl, {"build": {"n_items": 3, "items": ["a", "b", "c"]}})
    doc = json.loads(path.read_text())
    assert doc["build"]["n_items"] == 3 and doc["units"] == "mm"
    back = load_template(path)
    assert back.names == names and back.provenance == "test"
    np.testing.assert_array_equal(back.points, tpl.points)
    assert not back.points.flags.writeable


def test_load_template_default_is_cached_and_bad_files_are_config_errors(tmp_path):
    assert load_template() is load_template(None)
    assert len(load_template().names) == 68
    with pytest.raises(ConfigError, match="cannot read"):
        load_template(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"names": ["ibug_1", "nose"], "points": [[0,0,0],[1,1,1]], "provenance": ""}')
    with pytest.raises(ConfigError, match="iBUG"):
        load_template(bad)
    bad.write_text("not json")
    with pytest.raises(ConfigError):
        load_template(bad)
