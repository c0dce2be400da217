"""`fermaps template-surface` and `register.template_surface`: a face surface built from
scans of the reduced sample, read back, and picked by the register step."""
import dataclasses

import numpy as np
import pytest

from data_schema.errors import ConfigError
from pipeline.cli import main
from pipeline.stages.template_surface import surface_digest, surface_for
from preprocess.pose.template_surface import read_template_surface
from tests.conftest import SAMPLE_PARAMS, SAMPLE_TEMPLATE


@pytest.fixture(scope="module")
def built(small_sample, tmp_path_factory):
    scans = sorted((small_sample / "bosphorus").rglob("*_N_N_0.bnt"))[:2]
    out = tmp_path_factory.mktemp("surface") / "surface.npz"
    assert main(["template-surface", "--scans", *map(str, scans), "--out", str(out),
                 "--template", SAMPLE_TEMPLATE]) == 0
    return scans, out


def test_surface_from_scans_is_symmetric_and_names_them(built):
    scans, out = built
    s = read_template_surface(out)
    assert s.n_faces == 2 and len(s.points) > 500
    for scan in scans:
        assert scan.name in s.provenance and "posed by file" in s.provenance
    # mirror pairs: every point's image x -> -x is a point of the surface
    mirrored = {tuple(np.round(p * [-1, 1, 1], 4)) for p in s.points}
    assert mirrored == {tuple(np.round(p, 4)) for p in s.points}
    assert (s.normals[:, 2] > 0).all()


def test_register_picks_the_surface_and_refuses_a_bad_one(built, tmp_path):
    _, out = built
    reg = SAMPLE_PARAMS.register
    assert surface_for(reg) is None and surface_digest(reg) == ""
    mine = dataclasses.replace(reg, template_surface=str(out))
    assert surface_for(mine).n_faces == 2 and len(surface_digest(mine)) == 64
    for bad in (tmp_path / "missing.npz", tmp_path / "garbage.npz"):
        if bad.name == "garbage.npz":
            bad.write_bytes(b"not an npz")
        with pytest.raises(ConfigError, match="register.template_surface"):
            surface_for(dataclasses.replace(reg, template_surface=str(bad)))


def test_no_scan_posed_writes_nothing(tmp_path):
    bad = tmp_path / "bs900_N_N_0.bnt"
    bad.write_bytes(b"\x00" * 10)
    out = tmp_path / "s.npz"
    assert main(["template-surface", "--scans", str(bad), "--out", str(out)]) == 1
    assert not out.exists()
