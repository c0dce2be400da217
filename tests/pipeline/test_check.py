"""`fermaps check` end to end on two scans of the reduced sample and one broken file:
a row per scan, the failure reported with its step, the tables and previews written."""
import csv
import json
import math

import pytest

from pipeline.cli import main
from pipeline.stages.check import COLUMNS, CheckRow, markdown_table
from tests.conftest import SAMPLE_TEMPLATE


@pytest.fixture(scope="module")
def checked(small_sample, tmp_path_factory):
    scans = sorted((small_sample / "bosphorus").rglob("*.bnt"))[:2]
    out = tmp_path_factory.mktemp("check")
    broken = out / "scans" / "bs900_N_N_0.bnt"
    broken.parent.mkdir()
    broken.write_bytes(scans[0].read_bytes()[:100])  # header cut short: the reader refuses it
    return scans, broken, out


def test_check_reports_every_scan_and_goes_on_after_a_failure(checked, capsys):
    scans, broken, out = checked
    # the sample's own template: its synthetic anatomy misses the shipped real one
    rc = main(["check", str(broken), *map(str, scans), "--out", str(out / "run"),
               "--template", SAMPLE_TEMPLATE])
    printed = capsys.readouterr().out
    assert rc == 1  # one scan gave no maps
    rows = json.loads((out / "run" / "check.json").read_text())
    assert [r["scan"] for r in rows] == [str(broken), *map(str, scans)]

    bad = rows[0]
    assert bad["status"] == "read" and bad["error"].startswith("InputError: ") and str(broken) in bad["error"]
    assert bad["asymmetry_mm"] is None and bad["rmse_mm"] is None

    for r in rows[1:]:
        assert r["status"] == "ok" and r["error"] == ""
        assert r["method"]
        assert 0 <= r["rmse_mm"] <= 6.0  # the default max_rmse_mm
        # the sample's faces are frontal after registration, nose at the centre
        # (the acceptance bounds for real scans)
        assert 0 <= r["asymmetry_mm"] <= 4.0
        assert 0 <= r["nose_offset_px"] <= 4.0
        assert 0.4 <= r["valid_fraction"] <= 1.0
        assert 0 < r["si_roughness"] < 1.0  # shape index in [0, 1]

    with open(out / "run" / "check.tsv", newline="") as fh:
        tsv = list(csv.reader(fh, delimiter="\t"))
    assert tuple(tsv[0]) == COLUMNS and len(tsv) == 4
    assert math.isclose(float(tsv[2][COLUMNS.index("asymmetry_mm")]), rows[1]["asymmetry_mm"])
    assert tsv[1][COLUMNS.index("asymmetry_mm")] == ""

    previews = sorted(p.name for p in (out / "run" / "previews").iterdir())
    assert previews == sorted(f"{s.name}.png" for s in scans)  # none for the broken file

    lines = printed.splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert sum(line.startswith("| ") for line in lines) == 1 + 3
    assert "2 of 3 scans gave maps" in printed


def test_a_folder_stands_for_its_scans(checked, tmp_path):
    _, broken, _ = checked
    assert main(["check", str(broken.parent), "--out", str(tmp_path)]) == 1
    rows = json.loads((tmp_path / "check.json").read_text())
    assert [(r["scan"], r["status"]) for r in rows] == [(str(broken), "read")]


def test_markdown_escapes_pipes_and_marks_missing_values():
    table = markdown_table([CheckRow("a.bnt", "crop", error="InputError: x | y\nz")])
    row = table.splitlines()[2]
    assert row.count(" | ") == len(COLUMNS) - 1  # the pipe in the message is escaped
    assert "x \\| y z" in row and "| - |" in row
