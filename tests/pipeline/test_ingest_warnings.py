"""Reader warnings (``scan.extra["warnings"]``) through ingest: kept per item in the
raw_mesh ``warnings`` dataset and printed to stderr for the items written in the run.
(A pipeline test; it lives beside the reader tests it depends on.)"""
from pathlib import Path

import numpy as np

from data_schema.params import IngestParams
from data_schema.store import Store
from pipeline.records import item_meta, scan_record
from pipeline.stages.ingest import MAX_WARNINGS_SHOWN, print_warnings, run_ingest
from preprocess.io.bu3dfe import read_wrl_scan
from tests.preprocess.io.test_bu3dfe import POLYWORKS

GENERIC = ("file name does not follow the BU-3DFE pattern F0001_AN01WH_F3D: read as a generic "
           "scan (dataset 'generic', subject 'POL001', session '001-001', no label)")


def tiny_raw(tmp_path) -> Path:
    raw = tmp_path / "raw"
    d = raw / "POL001"
    d.mkdir(parents=True)
    (d / "001-001.wrl").write_text(POLYWORKS)           # generic ids + a warning
    (d / "M0044_NE00AE_F3D.wrl").write_text(POLYWORKS)  # BU-3DFE ids, no warning
    return raw


def test_ingest_keeps_and_prints_reader_warnings(tmp_path, capsys):
    raw = tiny_raw(tmp_path)
    res = run_ingest(raw, tmp_path / "m", tmp_path / "f", IngestParams(workers=1))
    assert res.exit_code == 0 and res.n_failed == 0
    mesh = Store(tmp_path / "m", "raw_mesh")
    got = {m.source: (m.dataset, list(mesh.read(m.key)[1]["warnings"])) for m in mesh.metas()}
    assert got == {"POL001/001-001.wrl": ("generic", [GENERIC]),
                   "POL001/M0044_NE00AE_F3D.wrl": ("bu3dfe", [])}
    err = capsys.readouterr().err
    assert "[ingest] 1 scans read with warnings" in err
    assert f"[ingest]   WARNING POL001/001-001.wrl: {GENERIC}" in err
    assert "M0044" not in err.split("items:")[0]

    # a rerun reuses the shard: nothing written, nothing printed
    res = run_ingest(raw, tmp_path / "m", tmp_path / "f", IngestParams(workers=1))
    assert res.exit_code == 0 and res.computed == 0
    assert "WARNING" not in capsys.readouterr().err


def test_scan_record_warnings_dataset(tmp_path):
    raw = tiny_raw(tmp_path)
    path = raw / "POL001" / "001-001.wrl"
    scan = read_wrl_scan(path)
    meta = item_meta(scan.ids, path, raw, "wrl")
    arrays = scan_record(scan, meta).arrays
    assert arrays["warnings"].dtype == object and list(arrays["warnings"]) == [GENERIC]
    scan.extra.clear()  # a scan without the key: an empty dataset
    assert scan_record(scan, meta).arrays["warnings"].shape == (0,)


def test_print_warnings_shows_the_first_few(capsys):
    print_warnings([])
    assert capsys.readouterr().err == ""
    warnings = [(f"s/{i:02d}.wrl", "texture missing") for i in range(MAX_WARNINGS_SHOWN + 2)]
    warnings.append(("s/00.wrl", "a second one"))
    print_warnings(warnings)  # the extra one last: first once sorted
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"[ingest] {MAX_WARNINGS_SHOWN + 2} scans read with warnings")
    assert lines[1] == "[ingest]   WARNING s/00.wrl: a second one"  # sorted
    assert len(lines) == 1 + MAX_WARNINGS_SHOWN + 1
    assert lines[-1] == "[ingest]   ... 3 more"
    assert np.all([" WARNING " in line for line in lines[1:-1]])
