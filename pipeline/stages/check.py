"""``fermaps check SCAN_OR_FOLDER... --out DIR``: the 3-D chain on real scans, in
memory, with one row of quality measures per scan (issue #13, build item 7).

Per scan: read -> register -> crop -> render -> clean (the steps of ``pipeline.chain``,
as ``fermaps maps`` runs them), then ``preprocess.map_quality`` on the result.  The
depth measures (asymmetry, nose offset) and the coverage are taken on the cleaned maps
the models train on; the shape-index roughness on the rendered maps over the rendered
valid pixels, because cleaning sets C to 0 on the holes it fills.

A scan that fails gets a row naming the step and the error, and the run goes on.
Writes DIR/check.tsv, DIR/check.json and DIR/previews/<item>.png (``map_montage`` of
the rendered maps above the cleaned maps); prints the table as Markdown.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import ConfigError
from data_schema.params import Params

COLUMNS = ("scan", "status", "method", "rmse_mm", "asymmetry_mm", "nose_offset_px", "valid_fraction",
           "si_roughness", "error")


@dataclass(frozen=True)
class CheckRow:
    """One scan's row.  status: "ok" or the step that failed (read / register / crop /
    render / clean); units: mm, px, fraction of the map, shape-index units per pixel."""
    scan: str
    status: str
    method: str = ""
    rmse_mm: float | None = None
    asymmetry_mm: float | None = None
    nose_offset_px: float | None = None
    valid_fraction: float | None = None
    si_roughness: float | None = None
    error: str = ""


def _scalar_str(a) -> str:
    return str(np.asarray(a, dtype=object).reshape(-1)[0]) if np.size(a) else ""


def registration_method(rec: dict) -> str:
    """file / texture / shaded / geometric as recorded by the register step; records
    from before that field say where the landmarks came from instead."""
    if "registration_method" in rec:
        return _scalar_str(rec["registration_method"])
    return f"landmarks:{_scalar_str(rec.get('landmark_provenance', '')) or '?'}"


def check_one(path: str, params: Params):
    """The chain on one scan file -> (CheckRow, maps record or None, maps_clean record
    or None).  An error of a step becomes the row's status and message."""
    from pipeline.chain import clean_step, crop_step, register_step, render_step
    from pipeline.stages.scan_chain import scan_file_record
    from preprocess.map_quality import map_quality

    stage, key, reg = "read", path, None
    maps = clean = None
    try:
        raw = scan_file_record(path)
        key, rec = raw.meta.key, raw.arrays
        stage = "register"
        reg = rec = register_step(rec, params.register, key)
        stage = "crop"
        rec = crop_step(rec, params.crop, key)
        stage = "render"
        maps = render_step(rec, params.render, key)
        stage = "clean"
        clean = clean_step(maps, params.clean, key)
    except ConfigError:
        raise  # bad params: every scan would fail the same way
    except Exception as exc:  # a real scan may break any step; report it and go on
        method = registration_method(reg) if reg is not None else ""
        rmse = float(reg["rmse_mm"]) if reg is not None else None
        return CheckRow(path, stage, method, rmse, error=f"{type(exc).__name__}: {exc}"), maps, None
    q = map_quality(clean["depth_mm"], clean["valid"], maps["maps"][4], maps["valid"])
    return CheckRow(path, "ok", registration_method(reg), float(reg["rmse_mm"]), q.asymmetry_mm,
                    q.nose_offset_px, q.valid_fraction, q.shape_index_roughness), maps, clean


def scan_paths(args: list[str]) -> list[str]:
    """Files as given; a folder stands for every scan file under it (``list_items``)."""
    from preprocess.io import list_items

    out: list[str] = []
    for a in args:
        if os.path.isdir(a):
            out += [it.path for it in list_items(a) if it.kind == "scan"]
        else:
            out.append(a)
    return out


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def markdown_table(rows: list[CheckRow]) -> str:
    """The rows as a Markdown table (pipes in messages escaped)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [_cell(getattr(r, c)).replace("|", "\\|").replace("\n", " ") for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_value(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def write_preview(maps: dict, clean: dict | None, path: Path) -> None:
    """Rendered maps above cleaned maps (``pipeline.preview.map_montage``) as one PNG."""
    from PIL import Image

    from pipeline.preview import map_montage

    tiles = [map_montage(r["maps"], r["valid"], r["landmarks68_px"], r["landmarks68_present"])
             for r in (maps, clean) if r is not None]
    Image.fromarray(np.concatenate(tiles, axis=0)).save(path)


def run_check(scans: list[str], out: str | os.PathLike, params: Params) -> int:
    """``fermaps check``: rows for ``scans`` (files or folders) printed and written
    under ``out``.  Exit code 0 when every scan gave maps, 1 otherwise."""
    out = Path(out)
    (out / "previews").mkdir(parents=True, exist_ok=True)
    rows, names = [], set()
    for path in scan_paths(scans):
        row, maps, clean = check_one(path, params)
        rows.append(row)
        if maps is not None:  # a scan that failed in clean still shows its rendered maps
            name = base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).name)
            while name in names:  # same file name in two folders
                name = f"{base}_{len(names)}"
            names.add(name)
            write_preview(maps, clean, out / "previews" / f"{name}.png")
    with open(out / "check.tsv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows([["" if _json_value(getattr(r, c)) is None else getattr(r, c) for c in COLUMNS] for r in rows])
    (out / "check.json").write_text(json.dumps(
        [{k: _json_value(v) for k, v in dataclasses.asdict(r).items()} for r in rows], indent=1) + "\n")
    print(markdown_table(rows))
    n_ok = sum(r.status == "ok" for r in rows)
    print(f"\n{n_ok} of {len(rows)} scans gave maps; table in {out / 'check.tsv'}, previews in {out / 'previews'}")
    return 0 if rows and n_ok == len(rows) else 1
