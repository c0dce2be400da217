from pathlib import Path

import pytest

from data_schema.errors import FermapsError
from data_schema.params import Params, SynthParams, load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[2]


def test_repo_params_load_and_are_typed():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert isinstance(p.synth.frame_size, tuple) and len(p.synth.frame_size) == 2
    assert isinstance(p.synth.noise_mm, float)


def test_missing_keys_take_defaults():
    assert params_from_dict({}).synth == SynthParams()
    assert params_from_dict({"synth": {"seed": 3}}).synth.seed == 3


def test_int_accepted_for_float():
    assert params_from_dict({"synth": {"noise_mm": 1}}).synth.noise_mm == 1.0


@pytest.mark.parametrize("raw, match", [
    ({"synth": {"seeed": 1}}, "unknown key.*seeed"),
    ({"sinth": {}}, "unknown section.*sinth"),
    ({"synth": {"seed": "zero"}}, "synth.seed"),
    ({"synth": {"frame_size": [320]}}, "synth.frame_size"),
    ({"synth": {"seed": True}}, "synth.seed"),
    ({"synth": [1, 2]}, "must be a mapping"),
])
def test_bad_params_fail_loudly(raw, match):
    with pytest.raises(FermapsError, match=match):
        params_from_dict(raw)
