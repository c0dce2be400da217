"""End to end: a reduced embedded sample plus hand-broken files through `ingest`."""
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from data_schema.params import IngestParams
from data_schema.store import Store, read_failures
from pipeline.cli import main
from pipeline.stages.ingest import run_ingest
from preprocess.io import list_items, read_scan



def bnt_header(rows, cols, n=None, name=b"x.png"):
    n = 5 * rows * cols if n is None else n
    return struct.pack("<HHdH", rows, cols, -1e9, len(name)) + name + struct.pack("<I", n)


def plant_bad_files(raw: Path) -> dict[str, str]:
    """Broken inputs and the words their failure message must contain."""
    bad = raw / "bosphorus" / "bs900"
    bad.mkdir(parents=True)
    good = sorted((raw / "bosphorus").rglob("*.bnt"))[0].read_bytes()
    (bad / "bs900_E_HAPPY_0.bnt").write_bytes(good[:40])
    (bad / "bs900_E_ANGER_0.bnt").write_bytes(bnt_header(65535, 65535, n=0xFFFFFFFF) + b"\0" * 64)
    (bad / "bs900_E_FEAR_0.bnt").write_bytes(b"")
    nan = np.full((5, 2, 2), np.nan).tobytes()
    (bad / "bs900_E_SADNESS_0.bnt").write_bytes(bnt_header(2, 2) + nan)
    (raw / "bu3dfe" / "F0900").mkdir(parents=True)
    (raw / "bu3dfe" / "F0900" / "F0900_AN04WH_F3D.wrl").write_text("")
    (raw / "mmi" / "S900_001_happy.avi").write_bytes(b"RIFF\x00\x00garbage" * 10)
    return {
        "bosphorus/bs900/bs900_E_HAPPY_0.bnt": "truncat",
        "bosphorus/bs900/bs900_E_ANGER_0.bnt": "",
        "bosphorus/bs900/bs900_E_FEAR_0.bnt": "empty",
        "bosphorus/bs900/bs900_E_SADNESS_0.bnt": "",
        "bu3dfe/F0900/F0900_AN04WH_F3D.wrl": "",
        "mmi/S900_001_happy.avi": "",
    }


@pytest.fixture(scope="module")
def sample(small_sample):
    return small_sample


def store_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_ingest_records_bad_items_and_keeps_the_rest(sample, tmp_path):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(sample, raw)
    expected_bad = plant_bad_files(raw)
    items = list_items(raw)
    n_scans = sum(it.kind == "scan" for it in items)
    n_seqs = sum(it.kind == "sequence" for it in items)

    res = run_ingest(raw, tmp_path / "m1", tmp_path / "f1", IngestParams(workers=1))
    assert res.exit_code == 0
    fails = {f["item"]: f for f in read_failures(tmp_path / "m1") + read_failures(tmp_path / "f1")}
    assert set(fails) == set(expected_bad)
    for item, word in expected_bad.items():
        assert fails[item]["error"] == "InputError", fails[item]
        assert word.lower() in fails[item]["message"].lower(), fails[item]
        assert Path(item).name in fails[item]["message"], "the message names the file"
    mesh, frames = Store(tmp_path / "m1", "raw_mesh"), Store(tmp_path / "f1", "raw_frames")
    assert len(mesh) == n_scans - 5 and len(frames) == n_seqs - 1

    # what the store holds is what the reader read
    meta = next(m for m in mesh.metas() if m.dataset == "bosphorus")
    _, arrays = mesh.read(meta.key)
    scan = read_scan(raw / meta.source)
    np.testing.assert_array_equal(arrays["vertices"], scan.vertices)
    np.testing.assert_array_equal(arrays["faces"], scan.faces)
    assert list(arrays["landmark_names"]) == list(scan.landmarks.names)

    # two workers (and a rerun) give identical bytes
    res2 = run_ingest(raw, tmp_path / "m2", tmp_path / "f2", IngestParams(workers=2))
    assert res2.exit_code == 0
    assert store_bytes(tmp_path / "m1") == store_bytes(tmp_path / "m2")
    assert store_bytes(tmp_path / "f1") == store_bytes(tmp_path / "f2")

    # failure threshold: a strict threshold turns the same run into a non-zero exit
    res3 = run_ingest(raw, tmp_path / "m3", tmp_path / "f3", IngestParams(workers=1, max_failed_fraction=0.01))
    assert res3.exit_code == 1
    assert (tmp_path / "m3" / "failures.jsonl").exists()


def test_inspect_cli(sample, tmp_path, capsys):
    assert run_ingest(sample, tmp_path / "m", tmp_path / "f", IngestParams(workers=1)).exit_code == 0
    assert main(["inspect", str(tmp_path / "m"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["schema"] == "raw_mesh" and d["n_failures"] == 0
    assert d["items_by_dataset"]["bosphorus"] == 3 * 7
    assert d["items_by_label"]["bosphorus:happy"] == 3
    assert main(["inspect", str(tmp_path / "f")]) == 0
    assert "raw_frames v1" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
