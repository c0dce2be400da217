"""Typed parameters of each stage, loaded from ``params.yaml``.

Each stage has a frozen dataclass; ``load_params(path)`` returns them all and rejects
unknown keys and wrong types with a clear message, so a typo in params.yaml fails
loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data_schema.errors import FermapsError

# Fields that change how a stage runs but never what it writes; they are left out of
# the params stored in shards so that 1 worker and 2 workers give identical bytes.
EXECUTION = {"execution": True}


@dataclass(frozen=True)
class SynthParams:
    """The embedded sample (``preprocess/synthetic``); everything follows from ``seed``.

    seed : master seed.
    bosphorus_subjects : Bosphorus-style subjects, each with neutral + 6 basic expressions.
    bu3dfe_subjects, facescape_subjects : subjects in those styles.
    ckplus_subjects : subjects with CK+-style image sequences.
    ckplus_sequences_per_subject : sequences (distinct expressions) per CK+ subject.
    mmi_videos : MMI-style videos (neutral -> peak -> neutral).
    frames_min, frames_max : frame count range of a sequence.
    frame_size : [width, height] of sequence frames, pixels.
    grid_rows, grid_cols : range-image size of the Bosphorus-style .bnt scans.
    grid_spacing_mm : sample spacing of that grid, mm.
    noise_mm : std of the scanner noise along the view axis, mm.
    holes_per_scan : missing blobs planted per scan.
    outlier_fraction : fraction of vertices turned into spikes.
    max_rotation_deg : max head rotation about each axis per scan, degrees.
    """

    seed: int = 0
    bosphorus_subjects: int = 8
    bu3dfe_subjects: int = 2
    facescape_subjects: int = 2
    ckplus_subjects: int = 8
    ckplus_sequences_per_subject: int = 2
    mmi_videos: int = 4
    frames_min: int = 10
    frames_max: int = 16
    frame_size: tuple[int, int] = (320, 240)
    grid_rows: int = 160
    grid_cols: int = 128
    grid_spacing_mm: float = 1.2
    noise_mm: float = 0.15
    holes_per_scan: int = 3
    outlier_fraction: float = 0.001
    max_rotation_deg: float = 8.0


@dataclass(frozen=True)
class IngestParams:
    """The ``ingest`` stage (raw files -> raw mesh store and raw frame store).

    max_failed_fraction : the stage exits non-zero when more than this fraction of the
        items failed (they are recorded either way).
    workers : dask local worker processes (0 = one per core).
    scheduler : address of an existing dask.distributed scheduler, '' for a local one.
    inline_items : with no scheduler, a run that computes at most this many items
        computes them in its own process instead of starting local workers (seconds
        of start-up for a few items of work); same bytes either way.
    """

    max_failed_fraction: float = field(default=0.5, metadata=EXECUTION)
    workers: int = field(default=0, metadata=EXECUTION)
    scheduler: str = field(default="", metadata=EXECUTION)
    inline_items: int = field(default=4, metadata=EXECUTION)


@dataclass(frozen=True)
class RegisterParams:
    """The ``register`` stage: rigid fit of each scan's landmarks to the template.

    max_rmse_mm : a landmark fit whose RMS residual (of the kept landmarks, see
        trim_fraction) exceeds this is rejected and the next method is tried.
    trim_fraction : share of the landmarks with the largest residuals left out of the
        fit (refitted without them; preprocess.registration.register_landmarks).
    methods : the registration methods, tried in this order until one works
        (preprocess.pose.register): "file" (the scan's landmark file), "texture" (dlib
        on the rendered texture, lifted to 3-D, AMDFN Fig. 2), "shaded" (dlib on a
        Lambertian render of the geometry), "geometric" (nose tip + symmetry + ICP to
        the template surface).
    lift_size : render size (px) the landmarks are detected on when lifting.
    template : the template the landmarks are fitted to: "default" (the shipped one,
        preprocess/data/template_landmarks.json), "dataset" (the ``template`` stage's
        GPA of this dataset's landmark files, data/template/template.json) or the path
        of a template JSON.
    template_surface : the face surface the ``geometric`` method fits to: "default"
        (preprocess/data/template_surface.npz, from real scans) or the path of an .npz
        written by ``fermaps template-surface``.
    """

    max_rmse_mm: float = 6.0
    trim_fraction: float = 0.2
    methods: tuple[str, ...] = ("file", "texture", "shaded", "geometric")
    lift_size: int = 448
    template: str = "default"
    template_surface: str = "default"


@dataclass(frozen=True)
class CropParams:
    """The ``crop`` stage: nose tip and sphere crop.

    radius_mm : sphere radius around the nose tip (AMDFN/Mian et al.: 80 mm).
    min_component_fraction : detached pieces smaller than this fraction of the largest
        piece's area are dropped.
    hint_radius_mm : the nose-tip search stays within this x-y distance of the landmark
        estimate when the scan has one.
    """

    radius_mm: float = 80.0
    min_component_fraction: float = 0.05
    hint_radius_mm: float = 20.0


@dataclass(frozen=True)
class RenderParams:
    """The ``render`` stage: normals, cubic-fit shape index, orthographic maps.

    size : maps are size x size pixels (AMDFN: 112).
    half_extent_mm : the image covers [-h, h] x [-h, h] mm around the nose tip.
    depth_range_mm : depth (mm behind the nose tip) that maps to D = 0.
    curvature_rings : neighbourhood of the cubic fit in mesh rings (used when
        curvature_radius_mm is 0).
    curvature_radius_mm : neighbourhood radius of the cubic fit, mm (0 = use rings).
        Default 11: a sampled 11 mm ball (preprocess.curvature._radius_csr).  Measured
        shape-index roughness (mean |dC| of adjacent valid pixels, ``fermaps check``) on
        the four public real scans of LIZHANGYAN/fileread (bs000_CAU_A22A25_0,
        bs000_CAU_A26A12lw_0, bs000_CR_RU_0, 001-001.wrl): 2 rings 0.164/0.166/0.161/
        0.083, 5 mm 0.106/0.099/0.117/0.082, 8 mm 0.079/0.072/0.089/0.063, 10 mm
        0.072/0.064/0.081/0.057, 11 mm 0.071/0.064/0.079/0.055 (the goal: at most 0.085,
        half the 2-ring's 0.17, with a margin for rougher scans); the analytic surfaces
        stay at RMSE <= 0.0073 (torus; <= 0.0013 on the others).  The cost does not
        grow with the radius (a fixed number of samples per ball).
    normal_weighting : vertex normals from face normals: "uniform" (AMDFN eq. 4),
        "area" or "angle".
    """

    size: int = 112
    half_extent_mm: float = 80.0
    depth_range_mm: float = 100.0
    curvature_rings: int = 2
    curvature_radius_mm: float = 11.0
    normal_weighting: str = "uniform"


@dataclass(frozen=True)
class CleanParams:
    """The ``clean`` stage (FFNet-M 2.2) on the depth map.

    outlier_k : a pixel further than k * sigma of its 8 neighbours is an outlier (0.6).
    sigma_floor_mm : floor on that sigma, mm, so flat noisy patches are not all outliers.
    fill_radius : hole filling interpolates from valid pixels within this many pixels.
    gaussian_sigma : sigma of the 3x3 Gaussian, pixels (1).
    outlier_passes : outlier removal repeats until nothing is found, at most this many
        times (the paper: 1).
    """

    outlier_k: float = 0.6
    sigma_floor_mm: float = 0.5
    fill_radius: int = 3
    gaussian_sigma: float = 1.0
    outlier_passes: int = 3


@dataclass(frozen=True)
class MasksParams:
    """The ``masks`` stage (FFNet-M 2.2).

    landmarks : where the 68 points come from: "detect" (dlib on the rendered texture),
        "projected" (the scan's registered 3-D landmarks projected onto the maps), or
        "detect_or_projected" (projected when detection finds no face).
    detect_size : the texture is detected at this size (px) and the points scaled to
        56; dlib misses most faces at 56 px without upsampling 2x
        (benchmarks/bench_landmarks.py), 112 with upsample 1 finds them all.
    upsample : dlib HOG upsampling.
    """

    landmarks: str = "detect"
    detect_size: int = 112
    upsample: int = 1


@dataclass(frozen=True)
class AlignVideoParams:
    """The ``align_video`` stage.

    reference : "first" (the first frame with a face; HACN) or "template" (a canonical
        68-point template; STCAM).
    detector : "dlib" (HOG) or "haar" (OpenCV cascade, the HACN protocol).
    use_file_landmarks : use dataset landmark files (CK+) when a sequence has them (STCAM).
    redetect_every : force a full detection every N frames (1 = no tracking).
    max_gap : longest run of faceless frames bridged by interpolating the transform.
    out_size : aligned frames are out_size x out_size (STCAM 240, HACN 224).
    margin : margin around the landmark box, in box sides.
    upsample : dlib HOG upsampling for full-frame detection.
    """

    reference: str = "template"
    detector: str = "dlib"
    use_file_landmarks: bool = True
    redetect_every: int = 10
    max_gap: int = 5
    out_size: int = 240
    margin: float = 0.2
    upsample: int = 1


@dataclass(frozen=True)
class SampleFramesParams:
    """The ``sample_frames`` stage (evaluation indices; training jitters its own).

    hacn_segments : k of HACN.
    mmi_peak_middle : MMI sequences peak in the middle frame (neutral-peak-neutral).
    """

    hacn_segments: int = 5
    mmi_peak_middle: bool = True


@dataclass(frozen=True)
class TrainStageParams:
    """The ``splits``, ``train`` and ``evaluate`` stages.

    models : models to train (DVC foreach).
    config : "small" (CPU smoke configuration for the embedded sample) or "paper"
        (each paper's published protocol, for real data).
    epochs : override of the configuration's epochs (0 = keep).
    folds : fold indices to train and evaluate (the papers: all).
    k : folds of the split (0 = the protocol's, e.g. 10; the sample has 8 subjects).
    seed : seed of splits, initialisation and sampling.
    workers : DataLoader worker processes (-1 = the configuration's: 0, loading in the
        training process, right for the sample; use a few with a GPU and real data).
        The batches, and so the results, do not depend on it; a run may resume with
        another value.
    """

    models: tuple[str, ...] = ("amdfn", "ffnet_m", "stcam", "hacn", "ws_lgan")
    config: str = "small"
    epochs: int = 0
    folds: tuple[int, ...] = (0,)
    k: int = 4
    seed: int = 0
    workers: int = field(default=-1, metadata=EXECUTION)


@dataclass(frozen=True)
class ChainParams:
    """Execution settings shared by the per-item store-to-store stages (never change
    the output); the fields mean what they mean in IngestParams."""

    max_failed_fraction: float = field(default=0.5, metadata=EXECUTION)
    workers: int = field(default=0, metadata=EXECUTION)
    scheduler: str = field(default="", metadata=EXECUTION)
    inline_items: int = field(default=4, metadata=EXECUTION)


@dataclass(frozen=True)
class Params:
    synth: SynthParams = field(default_factory=SynthParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    crop: CropParams = field(default_factory=CropParams)
    render: RenderParams = field(default_factory=RenderParams)
    clean: CleanParams = field(default_factory=CleanParams)
    masks: MasksParams = field(default_factory=MasksParams)
    align_video: AlignVideoParams = field(default_factory=AlignVideoParams)
    sample_frames: SampleFramesParams = field(default_factory=SampleFramesParams)
    train: TrainStageParams = field(default_factory=TrainStageParams)
    run: ChainParams = field(default_factory=ChainParams)


def _coerce(cls, section: str, raw: dict):
    if not isinstance(raw, dict):
        raise FermapsError(f"params.yaml: section '{section}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FermapsError(f"params.yaml: unknown key(s) in '{section}': {', '.join(unknown)}")
    out = {}
    for name, value in raw.items():
        t = hints[name]
        origin = typing.get_origin(t)
        try:
            if origin is tuple:
                args = typing.get_args(t)
                if not isinstance(value, (list, tuple)):
                    raise TypeError
                if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
                    value = tuple(args[0](v) for v in value)
                elif len(value) != len(args):
                    raise TypeError
                else:
                    value = tuple(a(v) for a, v in zip(args, value))
            elif t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            elif t in (int, str, bool) and type(value) is not t:
                raise TypeError
        except (TypeError, ValueError):
            raise FermapsError(f"params.yaml: '{section}.{name}' must be {t}, got {value!r}") from None
        out[name] = value
    return cls(**out)


def params_from_dict(raw: dict | None) -> Params:
    """Typed Params from a parsed params.yaml mapping (missing sections/keys: defaults)."""
    raw = raw or {}
    sections = {f.name: f for f in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise FermapsError(f"params.yaml: unknown section(s): {', '.join(unknown)}")
    kwargs = {}
    for name, f in sections.items():
        cls = typing.get_type_hints(Params)[name]
        kwargs[name] = _coerce(cls, name, raw.get(name, {}) or {})
    return Params(**kwargs)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (safe YAML loader only)."""
    with open(path, encoding="utf-8") as fh:
        return params_from_dict(yaml.safe_load(fh))


def as_dict(obj, content_only: bool = True) -> dict:
    """Plain dict of a params dataclass (tuples as lists), for writing into stores;
    execution-only fields (workers, scheduler, thresholds) are left out by default."""
    return {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v)
            for f in dataclasses.fields(obj)
            if not (content_only and f.metadata.get("execution"))}
