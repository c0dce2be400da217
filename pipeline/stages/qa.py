"""``fermaps qa STORE... --out DIR``: review a whole dataset in minutes.

Reads ``aligned_frames`` stores and the scan stores ``registered_mesh``, ``maps`` and
``maps_clean`` and writes

* ``DIR/qa.csv``: one row per input frame of every sequence (its kept frames, and a
  row with method ``dropped`` for each frame the stage did not keep, its reason in
  ``note``) and one row per scan; an item the stage recorded as failed
  (``failures.jsonl``) gets one row with method ``failed``.  ``flags`` holds the
  reasons the row is likely wrong, ``;``-separated, ``''`` when fine; the rule and its
  thresholds are ``pipeline.qa_rules``.
* ``DIR/sheet.png``: a contact sheet of the flagged rows, worst first (badness, then
  how far past a threshold), at most ``per_item`` frames of one sequence, ``top``
  tiles in all: the aligned crop with its landmarks for a frame, the D | C | RGB tiles
  of ``pipeline.preview.map_montage`` for a scan, each with a caption.  With nothing
  flagged it shows the rows nearest a threshold under the header "nothing flagged".
  Dropped frames and failed items have no image; they are in the CSV only.

Scan stores are joined by item key into runs: each store given joins the first run
that has no store of its schema yet (``registered_mesh maps_clean`` of one run are one
run; two ``maps_clean`` stores are two).  Measures (``preprocess.map_quality``, as
``fermaps check`` takes them): asymmetry, nose offset and valid fraction on the
cleaned depth when the run has ``maps_clean``, else on the rendered one; the shape-index
roughness and the hole fraction on the rendered maps when the run has ``maps``, else on
the cleaned maps (roughness over the pixels whose shape index is not 0: cleaning sets
C to 0 on the pixels it filled; the hole fraction there only sees holes open to the
outline, as the cleaning filled the enclosed ones); the filled fraction from
``maps_clean``'s ``n_filled``.

A path that is not a store, or a store of another schema, is reported (SchemaError,
naming the path) and the other stores are still reviewed.  A store of an older schema
version is reported the same way (regenerate it).  Same stores, same bytes of CSV and PNG.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np

from data_schema.errors import FermapsError, SchemaError
from data_schema.channels import CHANNELS
from data_schema.schemas import StoreSchema
from data_schema.store import ItemMeta, Store, atomic_write_bytes, read_failures, read_shard_item
from pipeline.qa_rules import FRAME_RULES, Rule, Verdict, judge, landmark_jump, relative_sharpness, scan_rules
from pipeline.stages.check import registration_method

FRAME_SCHEMA = "aligned_frames"
SCAN_SCHEMAS = ("registered_mesh", "maps", "maps_clean")
QA_SCHEMAS = (FRAME_SCHEMA, *SCAN_SCHEMAS)
#: Datasets read from each scan store.
_SCAN_FIELDS = {"registered_mesh": ("rmse_mm", "registration_method", "registration_tried", "landmark_provenance"),
                "maps": ("maps", "depth_mm", "valid"),
                "maps_clean": ("maps", "depth_mm", "valid", "n_filled")}

COLUMNS = ("kind", "store", "key", "dataset", "subject", "session", "frame_index", "method", "face_found",
           "interpolated", "score", "face_size", "sharpness", "sharpness_rel", "yaw", "pitch", "roll",
           "landmark_jump", "registration_method", "registration_tried", "rmse_mm", "asymmetry_mm",
           "nose_offset_px", "valid_fraction", "hole_fraction", "filled_fraction", "si_roughness",
           "badness", "flags", "note")

DEFAULT_TOP = 48
DEFAULT_PER_ITEM = 3


# --------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QAStore:
    """A validated store as qa reads it."""
    path: str
    root: Path
    index: dict
    schema: StoreSchema
    params: dict

    @property
    def name(self) -> str:
        return self.schema.name

    @functools.cached_property
    def where(self) -> dict[str, tuple[Path, int]]:
        """Item key -> (shard path, row in the shard), index order."""
        return {k: (self.root / sh["file"], i) for sh in self.index["shards"] for i, k in enumerate(sh["items"])}

    def _only(self, names: Sequence[str]) -> StoreSchema:
        return dataclasses.replace(self.schema, datasets=tuple(d for d in self.schema.datasets if d.name in names))

    def items(self, names: Sequence[str]) -> Iterator[tuple[ItemMeta, dict, Path]]:
        """(meta, the datasets ``names`` it has, shard path) of every item, index order."""
        schema = self._only(names)
        for sh in self.index["shards"]:
            path = self.root / sh["file"]
            for i in range(len(sh["items"])):
                meta, arrays = read_shard_item(path, schema, i)
                yield meta, arrays, path

    def read(self, key: str, names: Sequence[str]) -> tuple[ItemMeta, dict]:
        """(meta, the datasets ``names`` it has) of one item."""
        path, i = self.where[key]
        return read_shard_item(path, self._only(names), i)


def _wrong_kind(root, name) -> SchemaError:
    return SchemaError(f"{root}: a {name} store; qa reviews {', '.join(QA_SCHEMAS)} stores")


def open_store(path: str) -> QAStore:
    """The store at ``path`` for review.  Raises SchemaError naming the path when it
    is not a store, is corrupt, or is of a schema qa does not review."""
    root = Path(path)
    store = Store(root)     # an older schema version: "regenerate the store"
    if store.schema.name not in QA_SCHEMAS:
        raise _wrong_kind(root, store.schema.name)
    return QAStore(path, root, store.index, store.schema, dict(store.params))


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------

@dataclass
class Row:
    """One CSV row: ``values`` by column, the verdict, and what its tile shows
    (("frame", store, key, i) / ("scan", store or None, key), None: no tile)."""
    values: dict
    verdict: Verdict
    tile: tuple | None


def _base(kind: str, store: str, meta: ItemMeta | None, key: str) -> dict:
    v = dict.fromkeys(COLUMNS)
    v.update(kind=kind, store=store, key=key)
    if meta is not None:
        v.update(dataset=meta.dataset, subject=meta.subject, session=meta.session)
    return v


def _finish(values: dict, rules: Sequence[Rule], tile) -> Row:
    verdict = judge(values, rules)
    values["badness"] = verdict.badness
    values["flags"] = ";".join(verdict.flags)
    return Row(values, verdict, tile)


def _failure_note(f: Mapping) -> str:
    return f"{f.get('stage', '')}: {f.get('error', '')}: {f.get('message', '')}"


def _str(a) -> str:
    return str(np.asarray(a, dtype=object).reshape(-1)[0]) if np.size(a) else ""


def frame_rows(st: QAStore) -> list[Row]:
    """Every input frame of every sequence of an aligned_frames store, by item then
    frame index; a row per failed item."""
    names = [d.name for d in st.schema.datasets if d.name != "frames"]
    rows: list[Row] = []
    sizes: dict[Path, int] = {}
    for meta, a, shard in st.items(names):
        if shard not in sizes:
            with h5py.File(shard, "r") as h5:
                sizes[shard] = int(h5["frames"].shape[1])
        t = len(a["frame_index"])
        jump = landmark_jump(a["landmarks68"], sizes[shard])
        rel = relative_sharpness(a["sharpness"])
        item: list[tuple[int, Row]] = []
        for i in range(t):
            v = _base("frame", st.path, meta, meta.key)
            v.update(frame_index=int(a["frame_index"][i]), method=str(a["method"][i]),
                     face_found=bool(a["face_found"][i]), interpolated=bool(a["interpolated"][i]),
                     score=float(a["score"][i]), landmark_jump=float(jump[i]),
                     face_size=float(a["face_size"][i]), sharpness=float(a["sharpness"][i]),
                     sharpness_rel=float(rel[i]))
            v.update(zip(("yaw", "pitch", "roll"), map(float, a["head_pose"][i])))
            item.append((v["frame_index"], _finish(v, FRAME_RULES, ("frame", st, meta.key, i))))
        for index, reason in json.loads(_str(a["dropped"]) or "[]"):
            v = _base("frame", st.path, meta, meta.key)
            v.update(frame_index=int(index), method="dropped", note=str(reason))
            item.append((int(index), _finish(v, FRAME_RULES, None)))
        rows += [r for _, r in sorted(item, key=lambda x: x[0])]
    for f in read_failures(st.root):
        v = _base("frame", st.path, None, str(f.get("item", "")))
        v.update(method="failed", note=_failure_note(f))
        rows.append(_finish(v, FRAME_RULES, None))
    return rows


def scan_runs(stores: Sequence[QAStore]) -> list[dict[str, QAStore]]:
    """Scan stores in runs (module docstring): each joins the first run without a
    store of its schema."""
    runs: list[dict[str, QAStore]] = []
    for st in stores:
        run = next((r for r in runs if st.name not in r), None)
        if run is None:
            runs.append(run := {})
        run[st.name] = st
    return runs


def scan_measures(clean: Mapping | None, maps: Mapping | None) -> dict:
    """The map columns of one scan from its maps_clean and/or maps arrays (module
    docstring: which measure comes from which)."""
    from preprocess.map_quality import hole_fraction, map_quality

    depth_src = clean if clean is not None else maps
    c = CHANNELS.index("C")
    if maps is not None:
        si, si_valid, hole_valid = maps["maps"][c], maps["valid"], maps["valid"]
    else:
        si, si_valid, hole_valid = clean["maps"][c], clean["valid"] & (clean["maps"][c] != 0), clean["valid"]
    q = map_quality(depth_src["depth_mm"], depth_src["valid"], si, si_valid)
    out = {"asymmetry_mm": q.asymmetry_mm, "nose_offset_px": q.nose_offset_px,
           "valid_fraction": q.valid_fraction, "si_roughness": q.shape_index_roughness,
           "hole_fraction": hole_fraction(hole_valid)}
    if clean is not None and clean["valid"].any():
        out["filled_fraction"] = float(clean["n_filled"]) / float(clean["valid"].sum())
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def scan_rows(run: Mapping[str, QAStore]) -> list[Row]:
    """One row per item key of a run (sorted), joined over its stores; failed items
    of any of its stores flagged."""
    reg, maps, clean = (run.get(n) for n in SCAN_SCHEMAS)
    rules = scan_rules(reg.params.get("max_rmse_mm") if reg is not None else None)
    failures: dict[str, Mapping] = {}
    for st in run.values():
        for f in read_failures(st.root):
            failures.setdefault(str(f.get("item", "")), f)
    rows = []
    for key in sorted({k for st in run.values() for k in st.where} | set(failures)):
        # one scan in memory at a time
        have = {n: run[n].read(key, _SCAN_FIELDS[n]) for n in SCAN_SCHEMAS if n in run and key in run[n].where}
        meta = next((have[n][0] for n in SCAN_SCHEMAS if n in have), None)
        v = _base("scan", "+".join(run[n].path for n in SCAN_SCHEMAS if n in have) or
                  "+".join(st.path for st in run.values()), meta, key)
        if "registered_mesh" in have:
            a = have["registered_mesh"][1]
            v.update(rmse_mm=float(a["rmse_mm"]), registration_method=registration_method(a),
                     registration_tried=_str(a.get("registration_tried", "")))
        c, m = (have[n][1] if n in have else None for n in ("maps_clean", "maps"))
        if c is not None or m is not None:
            v.update(scan_measures(c, m))
        if key in failures:
            v.update(method="failed", note=_failure_note(failures[key]))
        src = clean if c is not None else maps if m is not None else None
        rows.append(_finish(v, rules, ("scan", src, key) if have else None))
    return rows


# --------------------------------------------------------------------------------------
# CSV and summary
# --------------------------------------------------------------------------------------

def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, ".6g")
    return str(v)


def csv_bytes(rows: Sequence[Row]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.values[c]) for c in COLUMNS])
    return buf.getvalue().encode()


def summary_lines(rows: Sequence[Row], stores: Sequence[QAStore]) -> list[str]:
    lines = []
    for kind, noun in (("frame", "frames"), ("scan", "scans")):
        rs = [r for r in rows if r.values["kind"] == kind]
        if not rs and not any((s.name == FRAME_SCHEMA) == (kind == "frame") for s in stores):
            continue
        bad = [r for r in rs if r.verdict.flags]
        items = {(r.values["store"], r.values["key"]) for r in rs}
        bad_items = {(r.values["store"], r.values["key"]) for r in bad}
        lines.append(f"{noun}: {len(rs)} rows of {len(items)} items; likely wrong: {len(bad)} rows "
                     f"of {len(bad_items)} items")
        counts = Counter(f for r in bad for f in r.verdict.flags)
        for flag, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])):
            lines.append(f"  {flag}: {n}")
    return lines


# --------------------------------------------------------------------------------------
# The sheet
# --------------------------------------------------------------------------------------

FRAME_TILE = 200
SCAN_TILE_H = 112
PAD = 8
COLS_FRAMES = 7
SHEET_W = COLS_FRAMES * (FRAME_TILE + PAD) + PAD
CAPTION_LINES = 6
LINE_H = 13
HEAD_H = 17
BG, FG, RED, GREY = (22, 22, 22), (225, 225, 225), (255, 85, 85), (90, 90, 90)


def rank(rows: Sequence[Row]) -> list[Row]:
    """Rows with a tile, worst first: badness, closeness, then their CSV order."""
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted((r for r in rows if r.tile is not None),
                  key=lambda r: (-r.verdict.badness, -r.verdict.closeness, order[id(r)]))


def select(rows: Sequence[Row], top: int, per_item: int) -> tuple[list[Row], bool]:
    """The tiles of the sheet and whether anything is flagged.  Flagged rows worst
    first, at most ``per_item`` of one item, ``top`` in all, shared between frames and
    scans (each kind gets an equal share, what one cannot fill goes to the other: the
    two rankings do not compare).  With nothing flagged, the rows nearest a
    threshold."""
    ranked = rank(rows)
    flagged = any(r.verdict.flags for r in ranked)
    cands: dict[str, list[Row]] = {}
    for kind in ("frame", "scan"):
        seen: Counter = Counter()
        for r in ranked:
            if r.values["kind"] != kind or (flagged and not r.verdict.flags):
                continue
            item = (r.values["store"], r.values["key"])
            if seen[item] < per_item:
                seen[item] += 1
                cands.setdefault(kind, []).append(r)
    quota, left = {}, max(0, top)
    for n, kind in enumerate(sorted(cands, key=lambda k: len(cands[k]))):
        quota[kind] = min(len(cands[kind]), left // (len(cands) - n))
        left -= quota[kind]
    chosen = {id(r) for kind, rs in cands.items() for r in rs[:quota[kind]]}
    return [r for r in ranked if id(r) in chosen], flagged


def _fonts():
    from PIL import ImageFont

    return ImageFont.load_default(size=11), ImageFont.load_default(size=13)


def _wrap(text: str, width: int, draw, font, max_lines: int) -> list[str]:
    """``text`` broken after '/', ';' or ' ' to fit ``width`` px, at most ``max_lines``
    lines (the start of a longer text dropped: a key's end names the file)."""
    tokens, cur = [], ""
    for ch in text:
        cur += ch
        if ch in "/; ":
            tokens.append(cur)
            cur = ""
    if cur:
        tokens.append(cur)
    lines, line = [], ""
    for tok in tokens:
        if line and draw.textlength(line + tok, font=font) > width:
            lines.append(line)
            line = ""
        while draw.textlength(tok, font=font) > width:  # a token wider than a line
            cut = len(tok)
            while cut > 1 and draw.textlength(tok[:cut], font=font) > width:
                cut -= 1
            lines.append(tok[:cut])
            tok = tok[cut:]
        line += tok
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[-max_lines:]
        lines[0] = "..." + lines[0][3:]
    return lines


def _num(v, fmt: str, unit: str = "") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{fmt}}{unit}"


def caption(r: Row) -> tuple[str, list[str]]:
    """(key, lines of numbers) of a tile; the flags are drawn after them."""
    v = r.values
    if v["kind"] == "frame":
        lines = [f"frame {v['frame_index']} | {v['method']} | score {_num(v['score'], '.2f')}",
                 f"size {_num(v['face_size'], '.0f', 'px')} | sharp {_num(v['sharpness_rel'], '.2f', 'x')} | "
                 f"jump {_num(v['landmark_jump'], '.3f')}",
                 f"yaw {_num(v['yaw'], '.0f')} | pitch {_num(v['pitch'], '.0f')} | roll {_num(v['roll'], '.0f')}"]
    else:
        lines = [f"{v['registration_method'] or '-'} | rmse {_num(v['rmse_mm'], '.2f', 'mm')} | "
                 f"asym {_num(v['asymmetry_mm'], '.2f', 'mm')} | nose {_num(v['nose_offset_px'], '.1f', 'px')}",
                 f"valid {_num(v['valid_fraction'], '.2f')} | holes {_num(v['hole_fraction'], '.3f')} | "
                 f"filled {_num(v['filled_fraction'], '.3f')} | rough {_num(v['si_roughness'], '.3f')}"]
    return v["key"], lines


def tile_images(tiles: Sequence[Row]) -> dict[int, np.ndarray]:
    """The picture of each tile (uint8 RGB) by ``id(row)``: a frame's aligned crop with
    its landmarks (``contact_sheet``, each sequence read once), a scan's D | C | RGB
    (``map_montage`` at the scale that makes the maps ``SCAN_TILE_H`` high)."""
    from pipeline.preview import contact_sheet, map_montage

    out, frames = {}, defaultdict(list)
    for r in tiles:
        kind, st, key = r.tile[:3]
        if kind == "frame":
            frames[(st.path, key)].append(r)
        elif st is None:  # a run without maps: nothing to draw
            out[id(r)] = _placeholder(3 * SCAN_TILE_H, SCAN_TILE_H, "no maps of this scan in the stores given")
        else:
            a = st.read(key, ("maps", "valid", "landmarks68_px", "landmarks68_present"))[1]
            h, w = a["valid"].shape
            scale = max(1, round(SCAN_TILE_H / h))
            m = map_montage(a["maps"], a["valid"], a["landmarks68_px"], a["landmarks68_present"], scale=scale)
            out[id(r)] = m[:, 3 * w * scale:6 * w * scale]  # D | C | RGB with the landmarks
    for rs in frames.values():
        st, key = rs[0].tile[1:3]
        a = st.read(key, ("frames", "landmarks68"))[1]
        for r in rs:
            i = r.tile[3]
            tile = contact_sheet(a["frames"][i:i + 1], a["landmarks68"][i:i + 1], cols=1, tile=FRAME_TILE)
            out[id(r)] = _bold_points(tile, a["landmarks68"][i] * (FRAME_TILE / a["frames"].shape[1]))
    return out


def _bold_points(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``img`` with a 3-px dot on each of ``points`` (tile pixels): ``contact_sheet``'s
    one-pixel points are hard to see on a sheet a person scans quickly."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    for x, y in points:
        draw.ellipse([x - 1.0, y - 1.0, x + 2.0, y + 2.0], fill=(255, 40, 40))
    return np.asarray(im)


def _placeholder(w: int, h: int, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (w, h), (48, 48, 48))
    ImageDraw.Draw(im).text((8, h // 2 - 6), text, font=_fonts()[0], fill=FG)
    return np.asarray(im)


def _draw_tile(sheet, draw, r: Row, img: np.ndarray, x: int, y: int, cell_h: int, fonts) -> None:
    """One tile at (x, y): the picture framed (red when flagged), the caption below
    the cell (``cell_h`` high): key, numbers, flags."""
    from PIL import Image

    small = fonts[0]
    colour = RED if r.verdict.flags else GREY
    h, w = img.shape[:2]
    draw.rectangle([x - 2, y - 2, x + w + 1, y + h + 1], outline=colour, width=2)
    sheet.paste(Image.fromarray(np.ascontiguousarray(img)), (x, y))
    key, numbers = caption(r)
    lines = [(t, FG) for t in _wrap(key, w, draw, small, 2)] + [(t, FG) for t in numbers]
    flags = "; ".join(r.verdict.flags) if r.verdict.flags else "(no flag)"
    lines += [(t, colour if r.verdict.flags else FG) for t in _wrap(flags, w, draw, small, CAPTION_LINES)]
    for n, (text, fill) in enumerate(lines[:CAPTION_LINES]):
        draw.text((x, y + cell_h + 3 + n * LINE_H), text, font=small, fill=fill)


def sheet_image(tiles: Sequence[Row], flagged: bool, header: Sequence[str]) -> np.ndarray:
    """The contact sheet: header lines, then the frame tiles and the scan tiles in two
    grids (the one holding the worst tile first), each worst first."""
    from PIL import Image, ImageDraw

    fonts = _fonts()
    sections = [[r for r in tiles if r.values["kind"] == k] for k in ("frame", "scan")]
    sections = sorted((s for s in sections if s), key=lambda s: tiles.index(s[0]))
    images = tile_images(tiles)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    head = [(text, RED if n == 0 and flagged else FG) for n, line in enumerate(header)
            for text in _wrap(line, SHEET_W - 2 * PAD, measure, fonts[1], 3)]
    cap_h = CAPTION_LINES * LINE_H + 6
    y0 = PAD + len(head) * HEAD_H + PAD
    layout, y = [], y0
    for s in sections:
        w, h = (max(images[id(r)].shape[k] for r in s) for k in (1, 0))  # the grid's cell
        cols = max(1, (SHEET_W - PAD) // (w + PAD))
        for n, r in enumerate(s):
            layout.append((r, PAD + (n % cols) * (w + PAD), y + (n // cols) * (h + cap_h + PAD), h))
        y += (-(-len(s) // cols)) * (h + cap_h + PAD) + PAD
    width = max([SHEET_W] + [x + images[id(r)].shape[1] + PAD for r, x, _, _ in layout])
    sheet = Image.new("RGB", (width, max(y, y0 + PAD)), BG)
    draw = ImageDraw.Draw(sheet)
    for n, (text, fill) in enumerate(head):
        draw.text((PAD, PAD + n * HEAD_H), text, font=fonts[1], fill=fill)
    for r, x, ty, cell_h in layout:
        _draw_tile(sheet, draw, r, images[id(r)], x, ty, cell_h, fonts)
    return np.asarray(sheet)


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QAResult:
    rows: list
    tiles: list
    flagged: bool
    errors: list
    stores: list


def review(paths: Sequence[str], out: str | os.PathLike, top: int = DEFAULT_TOP,
           per_item: int = DEFAULT_PER_ITEM) -> QAResult:
    """Read the stores, write ``out``/qa.csv and ``out``/sheet.png; a store that
    cannot be read is left out with its error (``errors``).  Raises SchemaError when
    none can be read."""
    stores, errors = [], []
    for p in paths:
        try:
            stores.append(open_store(p))
        except FermapsError as exc:
            errors.append(exc)
    if not stores:
        raise SchemaError("no store to review: " + "; ".join(map(str, errors)))
    rows: list[Row] = []
    for st in stores:
        if st.name == FRAME_SCHEMA:
            rows += frame_rows(st)
    for run in scan_runs([s for s in stores if s.name in SCAN_SCHEMAS]):
        rows += scan_rows(run)
    tiles, flagged = select(rows, top, per_item)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(outdir / "qa.csv", csv_bytes(rows))
    header = sheet_header(rows, tiles, flagged, per_item)
    atomic_write_bytes(outdir / "sheet.png", _png_bytes(sheet_image(tiles, flagged, header)))
    return QAResult(rows, tiles, flagged, errors, stores)


def sheet_header(rows: Sequence[Row], tiles: Sequence[Row], flagged: bool, per_item: int) -> list[str]:
    """The sheet's first lines: counts, what the tiles are, flag counts, and how many
    flagged rows have no image."""
    n_bad = sum(bool(r.verdict.flags) for r in rows)
    no_tile = sum(bool(r.verdict.flags) and r.tile is None for r in rows)
    if flagged:
        lines = [f"fermaps qa: {len(rows)} rows, {n_bad} likely wrong; worst first, {len(tiles)} tiles "
                 f"(at most {per_item} frames of one item)"]
    else:
        what = "nothing flagged" if not n_bad else "nothing that has an image flagged"
        lines = [f"fermaps qa: {len(rows)} rows: {what}; the {len(tiles)} rows nearest a threshold, nearest first"]
    if n_bad:
        lines.append("flags: " + ", ".join(flag_counts(rows)))
    if no_tile:
        lines.append(f"{no_tile} flagged rows have no image (dropped frames, failed items): in qa.csv only")
    return lines


def flag_counts(rows: Sequence[Row]) -> list[str]:
    """Flag counts as "kind flag n" items, frames then scans, most frequent first."""
    out = []
    for kind in ("frame", "scan"):
        counts = Counter(f for r in rows if r.values["kind"] == kind for f in r.verdict.flags)
        out += [f"{kind} {flag} {n}" for flag, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]
    return out


def run_qa(paths: Sequence[str], out: str | os.PathLike, top: int = DEFAULT_TOP,
           per_item: int = DEFAULT_PER_ITEM) -> int:
    """``fermaps qa``: review, print the summary.  Exit code 0, or 1 when a store
    given could not be read (its error printed, the others reviewed)."""
    res = review(paths, out, top, per_item)
    for exc in res.errors:
        print(f"fermaps qa: error: {exc}", file=sys.stderr)
    for line in summary_lines(res.rows, res.stores):
        print(line)
    what = f"{len(res.tiles)} tiles, worst first" if res.flagged else f"nothing flagged, {len(res.tiles)} tiles"
    print(f"wrote {Path(out) / 'qa.csv'} ({len(res.rows)} rows) and {Path(out) / 'sheet.png'} ({what})")
    return 1 if res.errors else 0
