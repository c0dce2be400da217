import dataclasses
import os
import tempfile

import pytest

from data_schema.params import ChainParams, Params, SynthParams

# The sha256 stat cache of this test run (inherited by stage subprocesses and dask
# workers), never the user's ~/.cache.
os.environ["FERMAPS_HASH_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="fermaps-hash-"), "sha256.sqlite")

# A reduced embedded sample shared by the end-to-end tests (generated once per run).
SMALL = SynthParams(seed=1, bosphorus_subjects=3, bu3dfe_subjects=1, facescape_subjects=1,
                    ckplus_subjects=1, ckplus_sequences_per_subject=1, mmi_videos=1,
                    frames_min=6, frames_max=6, grid_rows=80, grid_cols=64, grid_spacing_mm=2.4)
def _sample_template_file() -> str:
    """The sample's own landmark template (``preprocess.synthetic.template``) as a file
    for ``register.template``: the synthetic anatomy misses the shipped real-scan
    template by 5-9 mm, as a real dataset with other anatomy would (it would run
    ``fermaps template``)."""
    from preprocess.synthetic.template import sample_template
    from preprocess.template import write_template

    path = os.path.join(tempfile.mkdtemp(prefix="fermaps-template-"), "sample_template.json")
    write_template(path, sample_template())
    return path


#: ``register.template`` of the tests that run the chain on the synthetic sample.
SAMPLE_TEMPLATE = _sample_template_file()
#: Default parameters with the sample's template.
SAMPLE_PARAMS = dataclasses.replace(
    Params(), register=dataclasses.replace(Params().register, template=SAMPLE_TEMPLATE))
#: The stage parameters of ``chain_stores`` (the sample's template, one local worker).
CHAIN_PARAMS = dataclasses.replace(SAMPLE_PARAMS, run=ChainParams(workers=1))
#: (stage, input store, output store) in the order ``chain_stores`` runs them.
CHAIN = (("register", "raw_mesh", "registered_mesh"), ("crop", "registered_mesh", "face_mesh"),
         ("render", "face_mesh", "maps"), ("clean", "maps", "maps_clean"),
         ("masks", "maps_clean", "masks"), ("align_video", "raw_frames", "aligned_frames"))


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory):
    from preprocess.synthetic.sample import write_sample

    raw = tmp_path_factory.mktemp("raw")
    write_sample(raw, SMALL)
    return raw


@pytest.fixture(scope="session")
def chain_stores(small_sample, tmp_path_factory):
    """Every store of the small sample (ingest, then each stage of ``CHAIN`` with
    ``CHAIN_PARAMS``) in one folder; read-only for the tests that share it."""
    from data_schema.params import IngestParams
    from pipeline.stages.ingest import run_ingest
    from pipeline.stages.scan_chain import run_chain_stage

    root = tmp_path_factory.mktemp("stores")
    assert run_ingest(small_sample, root / "raw_mesh", root / "raw_frames", IngestParams(workers=1)).exit_code == 0
    for stage, src, dst in CHAIN:
        res = run_chain_stage(stage, CHAIN_PARAMS, root / src, root / dst)
        assert res.exit_code == 0 and res.n_failed == 0, stage
    return root
