import os
import tempfile

import pytest

from data_schema.params import SynthParams

# The sha256 stat cache of this test run (inherited by stage subprocesses and dask
# workers), never the user's ~/.cache.
os.environ["FERMAPS_HASH_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="fermaps-hash-"), "sha256.sqlite")

# A reduced embedded sample shared by the end-to-end tests (generated once per run).
SMALL = SynthParams(seed=1, bosphorus_subjects=3, bu3dfe_subjects=1, facescape_subjects=1,
                    ckplus_subjects=1, ckplus_sequences_per_subject=1, mmi_videos=1,
                    frames_min=6, frames_max=6, grid_rows=80, grid_cols=64, grid_spacing_mm=2.4)


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory):
    from preprocess.synthetic.sample import write_sample

    raw = tmp_path_factory.mktemp("raw")
    write_sample(raw, SMALL)
    return raw
