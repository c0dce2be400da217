"""Generator of the bad-input corpus: broken raw files and degenerate store records,
each with the outcome it must have when pushed through the reader or stage it targets.

``build_corpus(root)`` writes the broken files under ``root`` in the real dataset
layouts (``bosphorus/bs9NN/``, ``bu3dfe/F09NN/``, ``facescape/9NN/models_reg/``,
``frgc/``, ``generic/``, ``ckplus/cohn-kanade-images/S9NN/001``, ``mmi/``), so that
``root`` is also a raw folder for the ``ingest`` stage; the good files they are made
from (and the good records) come from an embedded sample in ``root`` (written there
with :data:`TINY` when ``root`` holds none).  Broken files are made by writing a good
file with the project's own writers and then damaging it; records by running the good
chain and then damaging its output.

A case is a :class:`Case`: its input (a path, or a record = dict of arrays named as in
the store schemas), its ``target`` (how far it is pushed, see :func:`run_case`) and
what must come out (:class:`Expected`): an error class with a message regex (the
message must also name the file or item), or a documented fallback checked by a
callable.  Cases that reveal a bug in the source carry a ``known_bug`` reason (see
:data:`KNOWN_BUGS`): the test marks them ``xfail(strict=True)`` so the fix shows up.

The training stages' cases (damaged stores, manifests, checkpoints and metrics, kind
"train") live in :mod:`tests.corpus.train_inputs` and register here.

Unreadable files: the corpus runs as root, where ``chmod 000`` blocks nothing, so the
"unreadable file" cases are a broken symbolic link and a folder named like a scan.
"""
from __future__ import annotations

import re

import dataclasses
import gzip
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from data_schema.errors import InputError
from data_schema.params import Params, SynthParams

TARGETS = ("read_scan", "read_sequence", "ingest", "register", "crop", "render", "clean",
           "masks", "align_video", "splits", "train_data", "train", "evaluate")
CHAIN_3D = ("register", "crop", "render", "clean", "masks")
READ_TARGETS = ("read_scan", "read_sequence")
#: Targets of the training-stage cases (kind "train", tests/corpus/train_inputs.py).
TRAIN_TARGETS = ("splits", "train_data", "train", "evaluate")

#: The embedded sample written when ``build_corpus`` finds none in its root.
TINY = SynthParams(seed=7, bosphorus_subjects=1, bu3dfe_subjects=1, facescape_subjects=1,
                   ckplus_subjects=1, ckplus_sequences_per_subject=1, mmi_videos=1,
                   frames_min=4, frames_max=4, grid_rows=80, grid_cols=64,
                   grid_spacing_mm=2.4)


@dataclass(frozen=True)
class Expected:
    """What a case must give.

    error : the exception class, or None for a documented fallback.
    match : regex searched in the error message.
    names : text the error message must contain (the file or item it is about); filled
        by ``build_corpus`` when empty (the input file's name, or the record's item id).
    fallback : what comes out instead of an error, in words.
    check : for a fallback, ``check(output)`` asserts it concretely (output as
        :func:`run_case` returns it).
    """

    error: type[BaseException] | None
    match: str = ""
    names: str = ""
    fallback: str = ""
    check: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Case:
    """One corpus case.

    name : unique id.  input : a raw path (kind "file"), a record (kind "record") or a
        folder of training-stage inputs (kind "train": stores, splits, checkpoints).
    target : one of :data:`TARGETS`.  expect : :class:`Expected`.
    start : record cases: the stage the record is the input of (default ``target``);
        the stages from ``start`` to ``target`` run in order.
    item : item id a record case is run under (error messages name it).
    params : stage parameters.
    listed : file cases: True when ``list_items`` finds the file (it is then an item of
        the ingest run).
    known_bug : non-empty when the outcome asserted is the right one but the source
        does not give it yet (the reason, for ``xfail(strict=True)``).
    """

    name: str
    input: Path | dict
    kind: str
    target: str
    expect: Expected
    start: str = ""
    item: str = ""
    params: Params = field(default_factory=lambda: _sample_params())
    listed: bool = True
    known_bug: str = ""


#: Cases whose right outcome the source does not give yet (reason + what happens now).
KNOWN_BUGS = {
}

_BUILDERS: dict[str, tuple[str, Callable[[_Ctx], Case]]] = {}


def _case(target: str):
    """Register a builder ``f(ctx) -> Case``; the case is named after the function."""
    assert target in TARGETS, target

    def deco(fn):
        assert fn.__name__ not in _BUILDERS, fn.__name__
        _BUILDERS[fn.__name__] = (target, fn)
        return fn
    return deco


def _err(match: str, names: str = "") -> Expected:
    return Expected(InputError, match, names)


def _fallback(what: str, check: Callable[[Any], None]) -> Expected:
    return Expected(None, fallback=what, check=check)


def _sample_params() -> Params:
    """Default parameters with the sample's own landmark template (tests/conftest.py)."""
    from tests.conftest import SAMPLE_PARAMS
    return SAMPLE_PARAMS


def _file_only() -> Params:
    """The sample's parameters with registration by the landmark file alone: the cases
    about a bad landmark set, whose error the later fallbacks would otherwise record in
    ``registration_tried`` and go past."""
    p = _sample_params()
    return dataclasses.replace(p, register=dataclasses.replace(p.register, methods=("file",)))


# ----------------------------------------------------------------------- context

class _Ctx:
    """Where the corpus goes, the good inputs it is made from, and file helpers."""

    def __init__(self, root: Path):
        self.root = root
        self.params = _sample_params()
        self._count: dict[str, int] = {}

    def next(self, dataset: str) -> int:
        k = self._count.get(dataset, 0)
        self._count[dataset] = k + 1
        return 900 + k

    # ---- good inputs from the sample
    @cached_property
    def bnt(self) -> Path:
        return min((self.root / "bosphorus").rglob("bs0*_N_N_0.bnt"))

    @cached_property
    def grid(self):
        from preprocess.io.bosphorus import read_bnt
        return read_bnt(self.bnt)

    @cached_property
    def wrl(self) -> Path:
        return min((self.root / "bu3dfe").rglob("F0*_F3D.wrl"))

    @cached_property
    def wrl_mesh(self):
        from preprocess.io.bu3dfe import read_wrl
        return read_wrl(self.wrl)

    @cached_property
    def obj(self) -> Path:
        return min((self.root / "facescape").rglob("1_neutral.obj"))

    @cached_property
    def ckplus_dir(self) -> Path:
        """The sample's CK+ sequence folder (frames with landmark files)."""
        return min((self.root / "ckplus" / "cohn-kanade-images").glob("S0*/*"))

    @cached_property
    def ckplus(self):
        """(frames (T, H, W, 3) uint8, landmarks (T, 68, 2)) of the sample's CK+ sequence."""
        from preprocess.io.ckplus import read_ckplus_sequence
        seq = read_ckplus_sequence(self.ckplus_dir)
        return np.stack(list(seq.iter_frames())), np.stack([lm.points for lm in seq.landmarks])

    @cached_property
    def video_frames(self) -> list[np.ndarray]:
        from preprocess.io.video import read_video
        return list(read_video(min((self.root / "mmi").glob("S0*.avi"))).iter_frames())

    def chain(self, rec: dict, stages: tuple[str, ...], item: str = "corpus/reference") -> dict:
        """The good 3-D chain stages ``stages`` on a record (the last one's output)."""
        from pipeline.stages.scan_chain import STAGES
        for name in stages:
            step, section = STAGES[name][:2]
            rec = step(rec, getattr(self.params, section), item)
        return rec

    @cached_property
    def raw(self) -> dict:
        """raw_mesh record of the sample's BU-3DFE scan."""
        from pipeline.records import item_meta, scan_record
        from preprocess.io import read_scan
        scan = read_scan(self.wrl)
        return dict(scan_record(scan, item_meta(scan.ids, self.wrl, self.root, "wrl")).arrays)

    @cached_property
    def registered(self) -> dict:
        return self.chain(dict(self.raw), ("register",))

    @cached_property
    def face(self) -> dict:
        return self.chain(dict(self.registered), ("crop",))

    @cached_property
    def good_maps(self) -> dict:
        """The maps record of the sample's BU-3DFE scan (reference for fallbacks)."""
        return self.chain(dict(self.face), ("render",))

    @cached_property
    def maps_clean(self) -> dict:
        return self.chain(dict(self.good_maps), ("clean",))

    @cached_property
    def frames_record(self) -> dict:
        """raw_frames record of a CK+ sequence with landmark files."""
        from pipeline.records import item_meta, sequence_record
        from preprocess.io import read_sequence
        folder = self.ckplus_dir
        seq = read_sequence(folder)
        return dict(sequence_record(seq, item_meta(seq.ids, folder, self.root, "ckplus")).arrays)

    @cached_property
    def aligned(self) -> dict:
        """aligned_frames record of that CK+ sequence."""
        return self.chain(dict(self.frames_record), ("align_video",))

    # ---- writers of good files (to be damaged by the cases)
    def bnt_file(self, xyz=None, valid=None, uv=None, texture: str | None = None,
                 lm3: str | None = None, png: bool = True) -> Path:
        """A Bosphorus scan in its own subject folder: .bnt (the sample's grid unless
        given), .lm3 (the sample's, or ``lm3`` text) and its .png texture."""
        from preprocess.io.bosphorus import write_bnt
        subject = f"bs{self.next('bosphorus')}"
        folder = self.root / "bosphorus" / subject
        folder.mkdir(parents=True)
        stem = f"{subject}_E_HAPPY_0"
        g = self.grid
        write_bnt(folder / f"{stem}.bnt", g.xyz if xyz is None else xyz,
                  g.valid if valid is None else valid, g.uv if uv is None else uv,
                  f"{stem}.png" if texture is None else texture, zmin=g.zmin)
        (folder / f"{stem}.lm3").write_text(self.bnt.with_suffix(".lm3").read_text()
                                            if lm3 is None else lm3)
        if png:
            shutil.copy(self.bnt.with_suffix(".png"), folder / f"{stem}.png")
        return folder / f"{stem}.bnt"

    def wrl_file(self, vertices=None, polygons=None, uv=None, poly_uv=None,
                 texture: str | None = None, bmp: bool = True, bnd: bool = True) -> Path:
        """A BU-3DFE scan in its own subject folder: .wrl (the sample's mesh unless
        given), .bnd landmarks and .bmp texture copied from the sample."""
        from preprocess.io.bu3dfe import write_wrl
        m = self.wrl_mesh
        subject = f"F0{self.next('bu3dfe')}"
        folder = self.root / "bu3dfe" / subject
        folder.mkdir(parents=True)
        stem = f"{subject}_AN04WH_F3D"
        write_wrl(folder / f"{stem}.wrl", m.vertices if vertices is None else vertices,
                  _split(m.polygons, m.offsets) if polygons is None else polygons,
                  m.uv if uv is None else uv,
                  _split(m.poly_uv, m.offsets) if poly_uv is None else poly_uv,
                  texture_name=f"{stem}.bmp" if texture is None else texture)
        if bmp:
            shutil.copy(self.wrl.with_suffix(".bmp"), folder / f"{stem}.bmp")
        if bnd:
            shutil.copy(self.wrl.with_suffix(".bnd"), folder / f"{stem}.bnd")
        return folder / f"{stem}.wrl"

    def obj_file(self) -> Path:
        """A FaceScape model in its own subject folder: the sample's neutral .obj, .mtl
        and .jpg, with the 68 landmark indices beside it."""
        folder = self.root / "facescape" / str(self.next("facescape")) / "models_reg"
        folder.mkdir(parents=True)
        for f in self.obj.parent.glob("1_neutral.*"):
            shutil.copy(f, folder / f.name)
        shutil.copy(self.root / "facescape" / "landmark_indices.txt", folder)
        return folder / "1_neutral.obj"

    def abs_file(self, xyz=None, gz: bool = False) -> Path:
        """An FRGC range image of the sample's Bosphorus grid in ``frgc/``."""
        from preprocess.io.frgc import write_abs
        folder = self.root / "frgc"
        folder.mkdir(exist_ok=True)
        p = folder / f"0{4000 + self.next('frgc')}d01.abs{'.gz' if gz else ''}"
        write_abs(p, self.grid.xyz if xyz is None else xyz, self.grid.valid, gz=gz)
        return p

    def ply_path(self) -> Path:
        folder = self.root / "generic"
        folder.mkdir(exist_ok=True)
        return folder / f"scan_{self.next('generic')}.ply"

    def ckplus_seq(self, frames=None, landmarks: bool = True) -> Path:
        """A CK+ sequence folder ``ckplus/cohn-kanade-images/S9NN/001`` (the sample's
        frames and landmark files unless ``frames`` is given)."""
        from preprocess.io.ckplus import write_ckplus_sequence
        f, lm = self.ckplus
        frames = f if frames is None else frames
        return write_ckplus_sequence(self.root / "ckplus", f"S{self.next('ckplus')}", "001",
                                     frames, lm[:len(frames)] if landmarks else None)

    def video_path(self, suffix: str = ".avi") -> Path:
        (self.root / "mmi").mkdir(exist_ok=True)
        return self.root / "mmi" / f"S{self.next('mmi')}_001_happy{suffix}"


def _split(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Polygons of a flat corner list (WrlMesh layout) as one array each."""
    return [flat[a:b] for a, b in pairwise(offsets)]


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _finite_unit_maps(maps: np.ndarray, valid: np.ndarray) -> None:
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert (maps[:, ~valid] == 0).all()


# ===================================================================== .bnt (Bosphorus)

@_case("read_scan")
def bnt_empty(c):
    p = c.bnt_file()
    p.write_bytes(b"")
    return Case("", p, "file", "", _err(r"empty file"))


@_case("read_scan")
def bnt_truncated_header(c):
    return Case("", _cut(c.bnt_file(), 10), "file", "",
                _err(r"truncated header: file has 10 bytes, the fixed header needs 14"))


@_case("read_scan")
def bnt_truncated_body(c):
    p = c.bnt_file()
    _cut(p, p.stat().st_size // 2)
    rows, cols = c.grid.valid.shape
    return Case("", p, "file", "", _err(
        rf"truncated: header promises a {rows}x{cols} grid \(\d+ bytes\), file has \d+ bytes"))


@_case("read_scan")
def bnt_header_promises_gigabytes(c):
    p = c.bnt_file()
    name = p.with_suffix(".png").name.encode()
    p.write_bytes(struct.pack("<HHdH", 65535, 65535, -1e9, len(name)) + name
                  + struct.pack("<I", 0xFFFFFFFF) + bytes(64))
    return Case("", p, "file", "",
                _err(r"truncated: header promises a 65535x65535 grid \(171\.8 GB\)"))


@_case("read_scan")
def bnt_garbage_text(c):
    p = c.bnt_file()
    text = b"This is not a range image, only a note someone saved as .bnt\n" * 40
    p.write_bytes(text)
    # read as a header, bytes 12-13 ("a ") are the texture-name length: 0x2061 = 8289
    namelen = struct.unpack("<H", text[12:14])[0]
    return Case("", p, "file", "", _err(rf"truncated header: it names a {namelen}-byte texture "
                                        rf"name, file has only {len(text)} bytes"))


@_case("read_scan")
def bnt_nan_coordinate(c):
    xyz = c.grid.xyz.copy()
    r, col = np.argwhere(c.grid.valid)[100]
    xyz[r, col, 0] = np.nan
    return Case("", c.bnt_file(xyz=xyz), "file", "",
                _err(r"NaN/inf coordinates in valid cells: 1 NaN/inf value"))


@_case("read_scan")
def bnt_inf_texture_coordinate(c):
    uv = c.grid.uv.copy()
    r, col = np.argwhere(c.grid.valid)[7]
    uv[r, col, 1] = np.inf
    return Case("", c.bnt_file(uv=uv), "file", "",
                _err(r"NaN/inf texture coordinates in valid cells: 1 NaN/inf value"))


@_case("read_scan")
def bnt_no_valid_point(c):
    return Case("", c.bnt_file(valid=np.zeros_like(c.grid.valid)), "file", "",
                _err(r"no valid point \(every z equals zmin\)"))


@_case("read_scan")
def bnt_texture_path_escapes(c):
    return Case("", c.bnt_file(texture="../../../etc/passwd"), "file", "",
                _err(r"path '\.\./\.\./\.\./etc/passwd' escapes the scan's folder"))


@_case("read_scan")
def bnt_texture_path_absolute(c):
    return Case("", c.bnt_file(texture="/etc/passwd"), "file", "",
                _err(r"absolute path '/etc/passwd' outside the scan's folder"))


@_case("read_scan")
def bnt_texture_corrupt(c):
    p = c.bnt_file()
    p.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    return Case("", p, "file", "", _err(r"unreadable image", names=p.with_suffix(".png").name))


@_case("render")
def bnt_texture_missing(c):
    def check(out):
        v = out["valid"]
        _finite_unit_maps(out["maps"], v)
        assert v.sum() > 2000
        assert (out["maps"][5:8][:, v] == 0.5).all()       # FALLBACK_GRAY on the face
    return Case("", c.bnt_file(png=False), "file", "", _fallback(
        "the scan is read without texture (a warning in extra['warnings']); the R, G, B "
        "maps are gray 0.5 on the face, 0 off it", check))


@_case("read_scan")
def lm3_wrong_count(c):
    lines = c.bnt.with_suffix(".lm3").read_text().splitlines()
    p = c.bnt_file(lm3="\n".join(lines[:-2]) + "\n")          # last pair dropped
    return Case("", p, "file", "", _err(
        r"wrong landmark count: count line says 22, file has 21 landmarks",
        names=p.with_suffix(".lm3").name))


@_case("read_scan")
def lm3_unknown_label(c):
    text = c.bnt.with_suffix(".lm3").read_text().replace("Nose tip", "Nose tipp")
    p = c.bnt_file(lm3=text)
    return Case("", p, "file", "", _err(r"unknown landmark label 'Nose tipp'",
                                        names=p.with_suffix(".lm3").name))


@_case("register")
def lm3_left_right_swapped(c):
    # the labels of every left/right pair exchanged: a mirror image of the face,
    # which no rotation fits
    text = c.bnt.with_suffix(".lm3").read_text()
    text = text.replace("left", "@").replace("right", "left").replace("@", "right")
    text = text.replace("Left", "@").replace("Right", "Left").replace("@", "Right")
    def check(out):
        # the mirrored file landmarks are refused by the rmse limit and recorded; the
        # scan is posed by the next method (its texture, as the synthetic png has one)
        assert str(out["registration_method"]) in ("texture", "shaded", "geometric")
        assert re.search(r"file: landmark registration rmse \d+\.\d\d mm exceeds max_rmse_mm",
                         str(out["registration_tried"])), out["registration_tried"]
    return Case("", c.bnt_file(lm3=text), "file", "", _fallback(
        "the file's landmarks fail the rmse limit (recorded in registration_tried) and "
        "the next method poses the scan", check))


@_case("render")
def bnt_zero_depth(c):
    xyz = c.grid.xyz.copy()
    xyz[..., 2][c.grid.valid] = 0.0             # every valid point on the z = 0 plane

    p = c.params.render

    def check(out):
        v = out["valid"]
        m = out["maps"]
        _finite_unit_maps(m, v)
        assert v.sum() > 2000
        assert (m[4][v] == 0.5).all()           # shape index of a plane (eq. 5: planar)
        n = 2.0 * m[0:3][:, v].astype(np.float64) - 1.0
        assert n.std(axis=1).max() < 1e-3      # one normal everywhere
        nx, ny, nz = n.mean(axis=1)
        # D is a plane in the pixels, tilted as that normal says: z = -(nx x + ny y) / nz
        # with x = col * s, y = -row * s, and D = z / depth_range + const
        rows, cols = np.nonzero(v & (m[3] < 1.0))        # D = 1 is clipped (in front of the tip)
        A = np.column_stack([cols, rows, np.ones(len(rows))])
        coef, *_ = np.linalg.lstsq(A, m[3][rows, cols].astype(np.float64), rcond=None)
        assert np.abs(A @ coef - m[3][rows, cols]).max() < 1e-4
        s = 2 * p.half_extent_mm / p.size / p.depth_range_mm
        np.testing.assert_allclose(coef[:2], [-nx / nz * s, ny / nz * s], atol=2e-5)
    return Case("", c.bnt_file(xyz=xyz), "file", "", _fallback(
        "read, registered (the .lm3 landmarks are intact) and rendered as the plane it "
        "is: shape index 0.5 everywhere, one normal everywhere, D a linear ramp whose "
        "slope is that normal's tilt; texture (and masks) as usual", check))


@_case("read_scan")
def bnt_broken_symlink(c):
    p = c.bnt_file()
    p.unlink()
    p.symlink_to(p.parent / "gone.bnt")
    return Case("", p, "file", "", _err(r"file not found"))


@_case("read_scan")
def bnt_folder_named_like_a_scan(c):
    p = c.bnt_file()
    p.unlink()
    p.mkdir()
    return Case("", p, "file", "",
                _err(r"folder is not a known sequence layout"), listed=False)


# ===================================================================== .wrl (BU-3DFE)

@_case("read_scan")
def wrl_empty(c):
    p = c.wrl_file()
    p.write_bytes(b"")
    return Case("", p, "file", "", _err(r"empty file"))


@_case("read_scan")
def wrl_truncated(c):
    p = c.wrl_file()
    text = p.read_text()
    _cut(p, text.index("coordIndex") // 2)      # inside the point list
    return Case("", p, "file", "", _err(r"Coordinate point: list is not closed with '\]'"))


@_case("read_scan")
def wrl_binary_garbage(c):
    p = c.wrl_file()
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return Case("", p, "file", "",
                _err(r"binary data where a text file was expected \(NUL bytes\)"))


@_case("read_scan")
def wrl_nan_coordinate(c):
    v = c.wrl_mesh.vertices.copy()
    v[5, 1] = np.nan
    return Case("", c.wrl_file(vertices=v), "file", "",
                _err(r"vertex coordinates: 1 NaN/inf value"))


@_case("read_scan")
def wrl_texture_path_escapes(c):
    return Case("", c.wrl_file(texture="../../F0001_AN04WH_F3D.bmp"), "file", "",
                _err(r"path '\.\./\.\./F0001_AN04WH_F3D\.bmp' escapes the scan's folder"))


@_case("read_scan")
def bnd_wrong_count(c):
    p = c.wrl_file()
    bnd = p.with_suffix(".bnd")
    bnd.write_text("\n".join(bnd.read_text().splitlines()[:-1]) + "\n")
    return Case("", p, "file", "",
                _err(r"wrong landmark count: 82 \(expected 83\)", names=bnd.name))


@_case("masks")
def wrl_texture_missing(c):
    return Case("", c.wrl_file(bmp=False), "file", "", _err(
        r"no face found on the rendered texture"))


@_case("render")
def wrl_inverted_faces(c):
    m = c.wrl_mesh

    def flip(q):    # reverse the winding, keep the first corner: same fan diagonals
        return np.concatenate([q[:1], q[1:][::-1]])
    p = c.wrl_file(polygons=[flip(q) for q in _split(m.polygons, m.offsets)],
                   poly_uv=[flip(q) for q in _split(m.poly_uv, m.offsets)])
    ref = c.good_maps

    def check(out):
        v, rv = out["valid"], ref["valid"]
        _finite_unit_maps(out["maps"], v)
        # same geometry: same pixels, same depth, same texture
        assert (v == rv).all()
        np.testing.assert_allclose(out["maps"][3], ref["maps"][3], atol=1e-6)
        np.testing.assert_allclose(out["maps"][5:8], ref["maps"][5:8], atol=1e-6)
        # normals follow the winding: they face away from the camera (Nz < 0.5)
        assert np.median(out["maps"][2][v]) < 0.2 and np.median(ref["maps"][2][v]) > 0.8
        np.testing.assert_allclose(out["maps"][0:3][:, v], 1.0 - ref["maps"][0:3][:, v], atol=1e-5)
        # shape index is measured against the normals: convex reads concave, C -> 1 - C
        assert np.median(np.abs(out["maps"][4][v] - (1.0 - ref["maps"][4][v]))) < 0.02
    return Case("", p, "file", "", _fallback(
        "finite maps on exactly the pixels of the good scan, same D and texture; the "
        "normals are used as the winding gives them (Nx, Ny, Nz -> 1 - value, facing "
        "away from the camera) and the shape index mirrors (C -> 1 - C): nothing flips "
        "them back", check))


@_case("render")
def wrl_triangle_soup(c):
    m = c.wrl_mesh
    from preprocess.io._mesh import fan_triangulate
    tri = fan_triangulate(m.polygons, m.offsets)
    tri_uv = fan_triangulate(m.poly_uv, m.offsets)
    soup = m.vertices[tri.reshape(-1)]            # every face its own 3 vertices
    p = c.wrl_file(vertices=soup, polygons=list(np.arange(len(soup)).reshape(-1, 3)),
                   poly_uv=list(tri_uv))
    ref = c.good_maps

    def check(out):
        v = out["valid"]
        _finite_unit_maps(out["maps"], v)
        assert abs(int(v.sum()) - int(ref["valid"].sum())) < 0.02 * ref["valid"].sum()
        assert np.median(out["maps"][2][v]) > 0.8
    return Case("", p, "file", "", _fallback(
        "an unwelded mesh (STL-style triangle soup: every vertex duplicated per face) is "
        "the same surface: finite maps covering the same pixels, facing the camera", check))


@_case("render")
def wrl_duplicated_vertices_unreferenced(c):
    m = c.wrl_mesh
    doubled = np.concatenate([m.vertices, m.vertices])    # second copy used by no face
    p = c.wrl_file(vertices=doubled)
    ref = c.good_maps

    def check(out):
        for k in ("maps", "valid", "depth_mm"):
            np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    return Case("", p, "file", "", _fallback(
        "vertices no face uses are dropped by the crop: maps identical to the good scan's",
        check))


# ===================================================================== .obj (FaceScape)

@_case("read_scan")
def obj_empty(c):
    p = c.obj_file()
    p.write_bytes(b"")
    return Case("", p, "file", "", _err(r"empty file"))


@_case("read_scan")
def obj_truncated(c):
    p = c.obj_file()
    text = p.read_text()
    cut = text.index("\nf ", len(text) // 2) + 4            # inside a face line
    _cut(p, cut + 2)
    return Case("", p, "file", "", _err(r"face 0*\d+ has fewer than 3 corners|malformed face corner"))


@_case("read_scan")
def obj_face_index_out_of_range(c):
    p = c.obj_file()
    p.write_text(p.read_text() + "f 1/1 2/2 999999/3\n")
    return Case("", p, "file", "",
                _err(r"face vertex index: index out of range \(only \d+ defined\)"))


@_case("read_scan")
def obj_nan_vertex(c):
    p = c.obj_file()
    lines = p.read_text().splitlines()
    k = next(i for i, s in enumerate(lines) if s.startswith("v "))
    lines[k] = "v nan 0.0 0.0"
    p.write_text("\n".join(lines) + "\n")
    return Case("", p, "file", "", _err(r"vertex coordinates: 1 NaN/inf value"))


@_case("read_scan")
def obj_binary_garbage(c):
    p = c.obj_file()
    p.write_bytes(bytes(range(256)) * 8)
    return Case("", p, "file", "", _err(r"binary data where a text file was expected"))


@_case("read_scan")
def obj_mtllib_escapes(c):
    p = c.obj_file()
    p.write_text(p.read_text().replace("mtllib 1_neutral.mtl", "mtllib ../../../x.mtl", 1))
    return Case("", p, "file", "", _err(r"path '\.\./\.\./\.\./x\.mtl' escapes the scan's folder"))


@_case("read_scan")
def obj_texture_escapes_via_mtl(c):
    p = c.obj_file()
    p.with_suffix(".mtl").write_text("newmtl material0\nmap_Kd /etc/shadow\n")
    return Case("", p, "file", "", _err(r"absolute path '/etc/shadow' outside the scan's folder"))


@_case("read_scan")
def facescape_landmark_indices_wrong_count(c):
    p = c.obj_file()
    lm = p.parent / "landmark_indices.txt"
    lm.write_text(" ".join(lm.read_text().split()[:67]) + "\n")
    return Case("", p, "file", "", _err(r"wrong landmark count: 67 indices \(expected 68\)",
                                        names=lm.name))


# ===================================================================== .abs (FRGC)

@_case("read_scan")
def abs_truncated(c):
    rows, cols = c.grid.valid.shape
    n = rows * cols         # each of 4 x n values takes >= 2 characters, the last 1
    return Case("", _cut(c.abs_file(), 1000), "file", "", _err(
        rf"truncated: header promises {rows} x {cols} = {n} points \(at least {8 * n - 1} "
        rf"bytes of data\), file has 1000 bytes"))


@_case("read_scan")
def abs_garbage(c):
    p = c.abs_file()
    p.write_text("#!/bin/sh\necho this is not a range image\n" * 20)
    return Case("", p, "file", "", _err(r"not an \.abs file \(header is not 'R rows'"))


@_case("read_scan")
def abs_header_promises_gigabytes(c):
    p = c.abs_file()
    p.write_text("100000 rows\n100000 columns\npixels (flag X Y Z):\n0 1 0 1\n")
    return Case("", p, "file", "", _err(
        r"header promises 100000 x 100000 = 10000000000 points .*more than the \d+ byte limit"))


@_case("read_scan")
def abs_nan_coordinate(c):
    xyz = c.grid.xyz.copy()
    r, col = np.argwhere(c.grid.valid)[42]
    xyz[r, col, 2] = np.nan
    return Case("", c.abs_file(xyz=xyz), "file", "",
                _err(r"NaN/inf coordinates in valid points: 1 NaN/inf value"))


@_case("read_scan")
def abs_gz_truncated(c):
    p = c.abs_file(gz=True)
    return Case("", _cut(p, p.stat().st_size // 2), "file", "",
                _err(r"corrupt or truncated gzip stream"))


@_case("read_scan")
def abs_gz_not_gzip(c):
    p = c.abs_file(gz=True)
    p.write_bytes(gzip.decompress(p.read_bytes()))        # plain text under a .gz name
    return Case("", p, "file", "", _err(r"corrupt or truncated gzip stream \(Not a gzipped file"))


# ===================================================================== .ply (generic)

_PLY_HEAD = ("ply\nformat {fmt} 1.0\nelement vertex {nv}\nproperty float x\nproperty float y\n"
             "property float z\nelement face {nf}\nproperty list uchar int vertex_indices\n"
             "end_header\n")
_PLY_BODY = "0 0 0\n10 0 0\n0 10 1\n3 0 1 2\n"


@_case("read_scan")
def ply_empty(c):
    p = c.ply_path()
    p.write_bytes(b"")
    return Case("", p, "file", "", _err(r"empty file"))


@_case("read_scan")
def ply_garbage(c):
    p = c.ply_path()
    p.write_bytes(np.random.default_rng(2).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return Case("", p, "file", "", _err(r"not a PLY file"))


@_case("read_scan")
def ply_header_billions_binary(c):
    p = c.ply_path()
    p.write_bytes(_PLY_HEAD.format(fmt="binary_little_endian", nv=4_000_000_000, nf=1).encode()
                  + bytes(64))
    return Case("", p, "file", "", _err(r"truncated: header promises 4000000000 vertices"))


@_case("read_scan")
def ply_header_billions_ascii(c):
    p = c.ply_path()
    p.write_text(_PLY_HEAD.format(fmt="ascii", nv=4_000_000_000, nf=4_000_000_000) + _PLY_BODY)
    return Case("", p, "file", "", _err(r"truncated|4000000000"))


@_case("read_scan")
def ply_truncated_ascii(c):
    p = c.ply_path()
    p.write_text(_PLY_HEAD.format(fmt="ascii", nv=3, nf=1) + _PLY_BODY[:-12])  # in a vertex
    return Case("", p, "file", "", _err(r"truncated"))


@_case("read_scan")
def ply_nan_vertex(c):
    p = c.ply_path()
    p.write_text(_PLY_HEAD.format(fmt="ascii", nv=3, nf=1) + _PLY_BODY.replace("10 0 0", "nan 0 0"))
    return Case("", p, "file", "", _err(r"vertex coordinates: 1 NaN/inf value"))


@_case("read_scan")
def ply_point_cloud(c):
    p = c.ply_path()
    p.write_text(_PLY_HEAD.format(fmt="ascii", nv=3, nf=0) + _PLY_BODY[:-8])
    return Case("", p, "file", "", _err(r"no faces \(point cloud\)"))


# ===================================================================== CK+ folders

def _frame(folder: Path, k: int) -> Path:
    return sorted(folder.glob("*.png"))[k]


@_case("read_sequence")
def ckplus_truncated_frame(c):
    folder = c.ckplus_seq()
    f = _frame(folder, 2)
    _cut(f, f.stat().st_size // 2)
    return Case("", folder, "file", "", _err(r"cannot decode image: image file is truncated",
                                             names=f.name))


@_case("read_sequence")
def ckplus_garbage_frame(c):
    folder = c.ckplus_seq()
    f = _frame(folder, 1)
    f.write_bytes(np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes())
    return Case("", folder, "file", "", _err(r"cannot decode image: cannot identify image file",
                                             names=f.name))


@_case("read_sequence")
def ckplus_empty_frame(c):
    folder = c.ckplus_seq()
    f = _frame(folder, 0)
    f.write_bytes(b"")
    return Case("", folder, "file", "", _err(r"empty", names=f.name))


@_case("read_sequence")
def ckplus_png_header_gigapixel(c):
    folder = c.ckplus_seq()
    f = _frame(folder, 3)
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)     # 60000 x 60000 RGB
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                  + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    # PIL's own bomb check (2x its limit) fires when the header is read
    return Case("", folder, "file", "", _err(r"image too large: .*3600000000 pixels",
                                             names=f.name))


@_case("ingest")
def ckplus_frames_of_different_sizes(c):
    from PIL import Image
    folder = c.ckplus_seq(landmarks=False)
    f = _frame(folder, 1)
    Image.fromarray(np.asarray(Image.open(f))[:200, :300]).save(f)
    return Case("", folder, "file", "", _err(
        r"frame 1 is 300x200, frame 0 is \d+x\d+: frames of different sizes"))


@_case("read_sequence")
def ckplus_landmarks_wrong_count(c):
    folder = c.ckplus_seq()
    lm = sorted((c.root / "ckplus" / "Landmarks" / folder.parent.name / "001").glob("*.txt"))[1]
    lm.write_text("".join(lm.read_text().splitlines(keepends=True)[:67]))
    return Case("", folder, "file", "", _err(r"wrong landmark count: 67 points, expected 68",
                                             names=lm.name))


@_case("read_sequence")
def ckplus_landmarks_nan(c):
    folder = c.ckplus_seq()
    lm = min((c.root / "ckplus" / "Landmarks" / folder.parent.name / "001").glob("*.txt"))
    lines = lm.read_text().splitlines(keepends=True)
    lines[30] = "             nan   1.0000000e+02\n"
    lm.write_text("".join(lines))
    return Case("", folder, "file", "", _err(r"landmarks: 1 NaN/inf value", names=lm.name))


@_case("align_video")
def ckplus_blank_sequence(c):
    folder = c.ckplus_seq(np.full((4, 240, 320), 128, np.uint8), landmarks=False)
    return Case("", folder, "file", "", _err(r"no face in any frame"))


# ===================================================================== videos

def _packet_spans(path: Path) -> list[tuple[int, int]]:
    import av
    with av.open(str(path)) as cont:
        return [(p.pos, p.size) for p in cont.demux(cont.streams.video[0]) if p.size]


@_case("read_sequence")
def video_mp4_empty(c):
    p = c.video_path(".mp4")
    p.write_bytes(b"")
    return Case("", p, "file", "", _err(r"empty file"))


@_case("read_sequence")
def video_mp4_truncated(c):
    from preprocess.io.video import write_video
    p = write_video(c.video_path(".mp4"), c.video_frames)
    return Case("", _cut(p, p.stat().st_size // 2), "file", "", _err(r"cannot decode"))


@_case("read_sequence")
def video_avi_truncated_mid_packet(c):
    from preprocess.io.video import write_video
    p = write_video(c.video_path(), c.video_frames)
    pos, size = _packet_spans(p)[2]
    _cut(p, pos + size // 2)
    return Case("", p, "file", "",
                _err(r"cannot decode frame 2: corrupt or truncated packet"))


@_case("read_sequence")
def video_avi_garbage(c):
    p = c.video_path()
    p.write_bytes(b"RIFF\x10\x00\x00\x00AVI " + np.random.default_rng(4).integers(
        0, 256, 4000, dtype=np.uint8).tobytes())
    return Case("", p, "file", "", _err(r"cannot decode|no video stream"))


@_case("read_sequence")
def video_avi_zero_frames(c):
    import av
    p = c.video_path()
    with av.open(str(p), "w") as cont:
        st = cont.add_stream("mjpeg", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuvj444p"
        cont.start_encoding()                 # header and index, no packet
    return Case("", p, "file", "", _err(r"no frames"))


@_case("read_sequence")
def video_avi_header_promises_billions(c):
    from preprocess.io.video import write_video
    p = write_video(c.video_path(), c.video_frames)
    data = bytearray(p.read_bytes())
    at = data.find(b"strh") + 40                # AVI stream header: dwLength, the frame count
    data[at:at + 4] = struct.pack("<I", 4_000_000_000)
    p.write_bytes(bytes(data))
    return Case("", p, "file", "", _err(
        rf"header declares 4000000000 frames but the file has only {len(data)} bytes"))


@_case("align_video")
def video_one_frame(c):
    from preprocess.io.video import write_video
    p = write_video(c.video_path(), c.video_frames[:1])

    def check(out):
        assert out["frames"].shape == (1, 240, 240, 3)
        assert out["face_found"].tolist() == [True]
        assert out["frame_index"].tolist() == [0] and int(out["n_frames_in"]) == 1
        assert np.isfinite(out["landmarks68"]).all()
    return Case("", p, "file", "", _fallback(
        "a one-frame video is a valid sequence: one aligned frame, face found", check))


@_case("align_video")
def video_two_faces(c):
    import cv2

    from preprocess.io.video import write_video
    # a small copy of the face on the left (x < 200), the full-size one on the right
    # (x >= 240): the largest is taken and then tracked in every frame
    frames = []
    for f in c.video_frames:
        canvas = np.zeros((240, 560, 3), np.uint8)
        canvas[45:195, 0:200] = cv2.resize(f, (200, 150), interpolation=cv2.INTER_AREA)
        canvas[:, 240:560] = f
        frames.append(canvas)
    p = write_video(c.video_path(), frames)

    def check(out):
        from preprocess.io.video import read_video
        from preprocess.landmarks import detect_landmarks
        first = next(read_video(p).iter_frames())
        assert detect_landmarks(first, "dlib", upsample=1).n_faces == 2   # both are faces
        assert out["face_found"].all() and len(out["frames"]) == len(frames)
        for A, lm in zip(out["transforms"], out["landmarks68"]):
            M = np.linalg.inv(np.vstack([A, [0, 0, 1]]))
            x = lm.astype(np.float64) @ M[0, :2] + M[0, 2]        # back in the frame
            assert x.min() >= 240, x.min()
    return Case("", p, "file", "", _fallback(
        "the largest face is aligned, and the same face in every frame", check))


# ===================================================================== records: register

def _raw(c, **arrays) -> dict:
    rec = dict(c.raw)
    rec.update(arrays)
    return rec


@_case("register")
def register_two_landmarks(c):
    from preprocess.landmark_names import to_ibug
    from preprocess.template import load_template
    r = c.raw
    known = set(load_template().names)
    two = [i for i, n in enumerate(r["landmark_names"]) if to_ibug(str(n)) in known][:2]
    return Case("", _raw(c, landmarks=r["landmarks"][two], landmark_names=r["landmark_names"][two],
                         landmark_vertex=r["landmark_vertex"][two]),
                "record", "", _err(r"only 2 landmark\(s\) match the template"),
                params=_file_only())


@_case("register")
def register_collinear_landmarks(c):
    n = len(c.raw["landmarks"])
    t = np.linspace(-40.0, 40.0, n)
    line = np.column_stack([t, 0.5 * t, np.zeros(n)])
    return Case("", _raw(c, landmarks=line), "record", "",
                _err(r"source landmarks are \(near-\)collinear"),
                params=_file_only())


@_case("register")
def register_nan_landmark(c):
    lm = c.raw["landmarks"].copy()
    lm[40, 2] = np.nan
    return Case("", _raw(c, landmarks=lm), "record", "",
                _err(r"non-finite \(NaN/inf\) landmark coordinates"),
                params=_file_only())


@_case("register")
def register_scan_in_metres(c):
    r = c.raw
    return Case("", _raw(c, vertices=r["vertices"] / 1000.0, landmarks=r["landmarks"] / 1000.0),
                "record", "", _err(r"landmark registration rmse \d+\.\d\d mm exceeds "
                                   r"max_rmse_mm = 6 \(\d+ landmarks\)"),
                params=_file_only())


@_case("register")
def register_duplicate_landmark_names(c):
    names = c.raw["landmark_names"].copy()
    names[1] = names[0]
    return Case("", _raw(c, landmark_names=names), "record", "",
                _err(r"two landmarks map to ibug_\d+"),
                params=_file_only())


@_case("register")
def register_no_landmarks_and_no_texture(c):
    r = c.raw
    return Case("", _raw(c, landmarks=r["landmarks"][:0], landmark_names=r["landmark_names"][:0],
                         landmark_vertex=r["landmark_vertex"][:0],
                         texture_png=np.zeros(0, np.uint8)),
                "record", "", _fallback(
                    "no landmark file and no texture: the shaded render or the geometric fit "
                    "poses the scan, and the two methods that could not run are recorded",
                    _posed_without_landmarks_or_texture))


def _posed_without_landmarks_or_texture(out):
    assert str(out["registration_method"]) in ("shaded", "geometric")
    tried = str(out["registration_tried"])
    assert "file: no landmark file beside the scan" in tried, tried
    assert "texture: the scan has no texture or vertex colours" in tried, tried
    assert np.isfinite(out["vertices"]).all() and float(out["rmse_mm"]) <= 6.0


def _collinear(c) -> dict:
    n = len(c.raw["vertices"])
    t = np.linspace(-60.0, 60.0, n)
    return _raw(c, vertices=np.column_stack([t, 0.3 * t, np.zeros(n)]))


@_case("register")
def register_collinear_mesh(c):
    def check(out):
        v = out["vertices"]
        assert np.isfinite(v).all() and np.isfinite(out["rotation"]).all()
        s = np.linalg.svd(v - v.mean(axis=0), compute_uv=False)
        assert s[1] < 1e-9 * s[0]                       # still a line, moved rigidly
        assert float(out["rmse_mm"]) <= 10.0
    return Case("", _collinear(c), "record", "", _fallback(
        "registration uses the landmarks only: the collinear mesh is moved rigidly into "
        "the template frame and stays a line; the crop is where it must fail", check))


@_case("crop")
def crop_collinear_mesh(c):
    return Case("", _collinear(c), "record", "", _err(r"zero area"), start="register")


@_case("crop")
def crop_empty_mesh(c):
    rec = dict(c.registered)
    rec.update(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), np.int32),
               colors=rec["colors"][:0], face_uv=rec["face_uv"][:0])
    return Case("", rec, "record", "", _err(r"empty mesh: no vertices"))


@_case("render")
def single_triangle_through_the_chain(c):
    r = c.raw
    tip = r["landmarks"][list(r["landmark_names"]).index("bnd_42")]   # on the nose
    tri = tip + np.array([[-6.0, -4.0, 0.0], [6.0, -4.0, 0.0], [0.0, 6.0, 2.0]])
    rec = _raw(c, vertices=tri, faces=np.array([[0, 1, 2]], np.int32),
               colors=r["colors"][:0], uv=r["uv"][:0], face_uv=r["face_uv"][:0],
               texture_png=np.zeros(0, np.uint8),
               landmark_vertex=np.full(len(r["landmark_vertex"]), -1, np.int64))

    def check(out):
        v = out["valid"]
        _finite_unit_maps(out["maps"], v)
        px = float(out["pixel_size_mm"]) ** 2
        # the triangle (area 60 mm^2, tilted less than 45 deg by the registration)
        # covers about area * cos(tilt) / pixel area pixels
        assert 0.5 * 60 / px < v.sum() < 1.3 * 60 / px + 12
        assert (out["maps"][5:8][:, v] == 0.5).all()
    return Case("", rec, "record", "", _fallback(
        "register -> crop -> render of a one-triangle mesh: a small patch of finite maps "
        "(gray: no texture)", check), start="register")


# ===================================================================== records: render

def _face(c, vertices, faces) -> dict:
    """A face_mesh record of the given mesh, without colours or texture."""
    rec = dict(c.face)
    rec.update(vertices=np.asarray(vertices, np.float64), faces=np.asarray(faces, np.int32),
               colors=rec["colors"][:0], uv=rec["uv"][:0], face_uv=rec["face_uv"][:0],
               texture_png=np.zeros(0, np.uint8))
    return rec


@_case("render")
def render_single_triangle(c):
    # legs of 10.5 mm on the x and y axes at the nose-tip depth, in the face_mesh frame;
    # pixel centres sit at (k + 1/2) * 10/7 mm, so none lies on an edge
    tri = np.array([[0.0, 0.0, 0.0], [10.5, 0.0, 0.0], [0.0, 10.5, 0.0]])
    p = c.params.render

    def check(out):
        s = 2 * p.half_extent_mm / p.size
        centre = -p.half_extent_mm + (np.arange(p.size) + 0.5) * s
        x, y = np.meshgrid(centre, centre[::-1])            # row 0 at the top (+y)
        inside = (x > 0) & (y > 0) & (x + y < 10.5)
        assert inside.sum() == 28                           # k1 + k2 <= 6
        assert (out["valid"] == inside).all(), (out["valid"].sum(), inside.sum())
        m = out["maps"]
        _finite_unit_maps(m, inside)
        np.testing.assert_allclose(m[0:3][:, inside].T, [[0.5, 0.5, 1.0]] * inside.sum(), atol=1e-6)
        assert (m[3][inside] == 1.0).all()                  # at the nose-tip depth
        assert (m[4][inside] == 0.5).all()                  # planar
        assert (m[5:8][:, inside] == 0.5).all()             # no texture: gray
    return Case("", _face(c, tri, [[0, 1, 2]]), "record", "", _fallback(
        "exactly the pixels whose centres lie in the triangle; normal +Z, D = 1 (nose "
        "depth), C = 0.5 (plane), gray", check))


@_case("render")
def render_zero_area_mesh(c):
    n = 50
    t = np.linspace(-30.0, 30.0, n)
    line = np.column_stack([t, 0.3 * t, np.zeros(n)])
    faces = np.column_stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)])
    return Case("", _face(c, line, faces), "record", "", _err(r"no (valid|face) pixel|zero area|covers no pixel"))


@_case("render")
def render_nan_vertex(c):
    rec = dict(c.face)
    v = rec["vertices"].copy()
    v[3] = np.nan
    rec["vertices"] = v
    return Case("", rec, "record", "", _err(r"vertices contain 1 non-finite"))


@_case("render")
def render_face_index_out_of_range(c):
    rec = dict(c.face)
    f = rec["faces"].copy()
    f[0, 0] = len(rec["vertices"]) + 5
    rec["faces"] = f
    return Case("", rec, "record", "", _err(r"face indices span \[0, \d+\] but there are \d+"))


# ===================================================================== records: clean

def _maps(c, **arrays) -> dict:
    rec = dict(c.good_maps)
    rec.update(arrays)
    return rec


def _mid_valid(c) -> tuple[int, int]:
    v = c.good_maps["valid"]
    ok = v & np.roll(v, 1, 0) & np.roll(v, -1, 0) & np.roll(v, 1, 1) & np.roll(v, -1, 1)
    r, col = np.argwhere(ok)[len(np.argwhere(ok)) // 2]
    return int(r), int(col)


@_case("clean")
def clean_no_valid_pixel(c):
    return Case("", _maps(c, valid=np.zeros_like(c.good_maps["valid"])), "record", "",
                _err(r"no valid depth pixel on the face"))


@_case("clean")
def clean_nan_depth_pixel(c):
    r, col = _mid_valid(c)
    d = c.good_maps["depth_mm"].copy()
    d[r, col] = np.nan
    around = np.delete(c.good_maps["depth_mm"][r - 1:r + 2, col - 1:col + 2].ravel(), 4)

    def check(out):
        assert np.isfinite(out["maps"]).all() and np.isfinite(out["depth_mm"]).all()
        assert out["valid"][r, col]                         # filled, not left a hole
        assert around.min() - 1.0 <= out["depth_mm"][r, col] <= around.max() + 1.0
    return Case("", _maps(c, depth_mm=d), "record", "", _fallback(
        "a NaN depth on the face is treated as a hole and filled from its neighbours",
        check))


@_case("clean")
def clean_one_kilometre_spike(c):
    r, col = _mid_valid(c)
    d = c.good_maps["depth_mm"].copy()
    d[r, col] = 1e6
    top = float(c.good_maps["depth_mm"][c.good_maps["valid"]].max())

    def check(out):
        assert np.isfinite(out["maps"]).all()
        assert out["depth_mm"].max() <= top + 1.0           # the spike is gone
        assert int(out["n_outliers"]) >= 1
    return Case("", _maps(c, depth_mm=d), "record", "", _fallback(
        "an absurd depth (1 km) is removed as an outlier and filled", check))


# ===================================================================== records: masks

@_case("masks")
def masks_gray_texture_and_no_projected_landmarks(c):
    rec = dict(c.maps_clean)
    m = rec["maps"].copy()
    m[5:8][:, rec["valid"]] = 0.5
    rec.update(maps=m, landmarks68_present=np.zeros(68, bool))
    params = dataclasses.replace(c.params, masks=dataclasses.replace(
        c.params.masks, landmarks="detect_or_projected"))
    return Case("", rec, "record", "", _err(r"no projected landmarks"), params=params)


@_case("masks")
def masks_nan_projected_landmarks(c):
    rec = dict(c.maps_clean)
    rec["landmarks68_px"] = np.full((68, 2), np.nan, np.float32)
    params = dataclasses.replace(c.params, masks=dataclasses.replace(
        c.params.masks, landmarks="projected"))
    return Case("", rec, "record", "", _err(r"NaN or infinite landmark coordinates"),
                params=params)


# ===================================================================== records: align_video

@_case("align_video")
def align_video_zero_frames(c):
    rec = dict(c.frames_record)
    rec.update(frames=rec["frames"][:0], landmarks68=rec["landmarks68"][:0],
               has_landmarks=rec["has_landmarks"][:0], frame_names=rec["frame_names"][:0])
    return Case("", rec, "record", "", _err(r"no frames"))


@_case("align_video")
def align_video_nan_file_landmarks(c):
    rec = dict(c.frames_record)
    lm = rec["landmarks68"].copy()
    lm[2, 36] = np.nan
    rec["landmarks68"] = lm
    return Case("", rec, "record", "", _err(r"NaN or infinite landmark coordinates"))


# ----------------------------------------------------------------------- build / run

from tests.corpus import train_inputs  # registers the training-stage cases

CASE_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_corpus(root: str | Path) -> list[Case]:
    """Write the corpus under ``root`` and return its cases in :data:`CASE_NAMES` order.

    ``root`` must hold an embedded sample (``truth.json`` and its dataset folders, e.g.
    a copy of the ``small_sample`` fixture); when it holds none, one is written there
    with :data:`TINY`.  Afterwards ``root`` is a raw folder of good items plus every
    file case (see :class:`Case` ``listed``).
    """
    from preprocess.synthetic.sample import TRUTH_FILE, write_sample

    root = Path(root)
    if not (root / TRUTH_FILE).exists():
        write_sample(root, TINY)
    ctx = _Ctx(root)
    cases = []
    for name, (target, build) in _BUILDERS.items():
        case = build(ctx)
        item = f"corpus/{name}" if case.kind == "record" else ""
        names = case.expect.names or item
        if not names:       # a file by its name, a sequence folder by subject/sequence
            p = Path(case.input)
            names = f"{p.parent.name}/{p.name}" if p.is_dir() and not p.suffix else p.name
        cases.append(dataclasses.replace(
            case, name=name, target=target, item=item, known_bug=KNOWN_BUGS.get(name, ""),
            expect=dataclasses.replace(case.expect, names=names)))
    return cases


def run_case(case: Case):
    """Push a case's input to its target and return what comes out.

    File cases: ``read_scan`` -> the Scan; ``read_sequence`` -> (Sequence, list of every
    decoded frame); ``ingest`` -> the ItemRecord of ``pipeline.stages.ingest.ingest_one``;
    a stage -> ingest, then every stage of its branch up to the target (3-D:
    register, crop, render, clean, masks; video: align_video), returning the target's
    output record.  Record cases: the stages from ``case.start`` (default the target)
    to the target, on a copy of the record.  Training cases:
    :func:`tests.corpus.train_inputs.run_train_case`.
    """
    from pipeline.stages.ingest import ingest_one
    from pipeline.stages.scan_chain import STAGES
    from preprocess.io import RawItem, format_of, read_scan, read_sequence

    if case.kind == "train":
        return train_inputs.run_train_case(case)
    if case.kind == "file":
        path = Path(case.input)
        if case.target == "read_scan":
            return read_scan(path)
        if case.target == "read_sequence":
            seq = read_sequence(path)
            return seq, list(seq.iter_frames())
        fmt = format_of(path)
        rec = ingest_one(str(path.parent), RawItem(str(path), fmt.kind, fmt.name))
        if case.target == "ingest":
            return rec
        arrays, item = dict(rec.arrays), rec.meta.key
        first = CHAIN_3D[0] if fmt.kind == "scan" else "align_video"
    else:
        arrays, item = dict(case.input), case.item
        first = case.start or case.target
    branch = CHAIN_3D if first in CHAIN_3D else ("align_video",)
    for name in branch[branch.index(first):branch.index(case.target) + 1]:
        step, section = STAGES[name][:2]
        arrays = step(arrays, getattr(case.params, section), item)
    return arrays
