"""``fermaps template-surface --scans FILE... --out FILE.npz``: the face surface the
geometric registration fits scans to (``preprocess.pose.template_surface``), built
from real scans.

Each scan is read, registered by its landmarks only (methods file / texture / shaded of
``register.methods``: a surface built from geometric fits would be fitted to itself)
and nose-cropped as the chain does (``pipeline.chain``), then
:func:`preprocess.pose.template_surface.surface_from_meshes` averages the faces with
their mirror images.  A scan that fails is reported and left out; with no face left it
is an error.  The shipped ``preprocess/data/template_surface.npz`` was made this way
(README, "Templates").
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path

from data_schema.errors import ConfigError, InputError
from data_schema.params import Params

STAGE = "template-surface"


def surface_path(p, root: str | os.PathLike = ".") -> Path | None:
    """The surface file ``register.template_surface`` names: None for "default" (the
    shipped one), else the path (relative paths from ``root``)."""
    return None if p.template_surface == "default" else Path(root) / p.template_surface


def surface_for(p, root: str | os.PathLike = "."):
    """The TemplateSurface ``register.template_surface`` picks, or None for the shipped
    one (``preprocess.pose.register.pose_scan`` loads it).  Raises ConfigError when the
    file is missing or not a surface written by ``fermaps template-surface``."""
    path = surface_path(p, root)
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"register.template_surface {path}: cannot read it "
                          f"({exc.strerror or exc})") from None
    return _read_surface(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _read_surface(path: str, _mtime_ns: int, _size: int):
    """One read per file version per process (the register stage asks once per item)."""
    from preprocess.pose.template_surface import read_template_surface

    try:
        return read_template_surface(path)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"register.template_surface {path}: not a template surface "
                          f"written by fermaps template-surface ({exc})") from None


def surface_digest(p, root: str | os.PathLike = ".") -> str:
    """sha256 of the surface file ``register.template_surface`` names ('' for the
    shipped one, which the register stage's code version already covers)."""
    path = surface_path(p, root)
    if path is None:
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"register.template_surface {path}: cannot read it "
                          f"({exc.strerror or exc})") from None
#: The registration methods a template face may be posed by (no geometric fit).
LANDMARK_METHODS = ("file", "texture", "shaded")


def _face_mesh(path: str, params: Params) -> tuple[dict, str]:
    """(face_mesh record, registration method) of one scan file."""
    from pipeline.chain import crop_step, register_step
    from pipeline.stages.scan_chain import scan_file_record

    raw = scan_file_record(path)
    methods = tuple(m for m in params.register.methods if m in LANDMARK_METHODS) or LANDMARK_METHODS
    reg = register_step(raw.arrays, dataclasses.replace(params.register, methods=methods), raw.meta.key)
    return crop_step(reg, params.crop, raw.meta.key), str(reg["registration_method"])


def run_template_surface(scans: list[str], out: str | os.PathLike, params: Params) -> int:
    """Build and write the surface; one line per scan on stderr.  Returns the exit code
    (0 when at least one face went in, 1 otherwise)."""
    from preprocess.pose.template_surface import (GRID_MM, MIN_VALID_FRACTION, RADIUS_MM,
                                                  surface_from_meshes, write_template_surface)

    meshes, used = [], []
    for path in scans:
        try:
            face, method = _face_mesh(path, params)
        except ConfigError:
            raise
        except InputError as exc:
            print(f"[{STAGE}] left out {path}: {exc}", file=sys.stderr)
            continue
        meshes.append((face["vertices"], face["faces"]))
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
        used.append(f"{Path(path).name} (sha256 {digest}, posed by {method})")
        print(f"[{STAGE}] {path}: posed by {method}", file=sys.stderr)
    if not meshes:
        print(f"[{STAGE}] no scan could be posed: nothing written", file=sys.stderr)
        return 1
    prov = (f"real scans: mean depth grid ({GRID_MM:g} mm pixels, within {RADIUS_MM:g} mm "
            f"of the nose tip, pixels covered by >= {MIN_VALID_FRACTION:g} of the faces) of "
            f"{len(meshes)} real face scans registered by their landmarks to the shipped "
            f"landmark template and nose-cropped as the chain does, averaged with their "
            f"mirror images (x -> -x): " + "; ".join(used))
    surface = surface_from_meshes(meshes, provenance=prov)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_template_surface(out, surface)
    print(f"[{STAGE}] wrote {out}: {len(surface.points)} points from {len(meshes)} faces",
          file=sys.stderr)
    return 0
