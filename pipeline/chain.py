"""The per-item steps of the 3-D chain, on store records (dicts of arrays named as in
the schemas): register -> crop -> render -> clean.

Each step takes the record of the previous store and returns the record of its own
store; the geometry is done by ``preprocess`` functions.  The same steps serve the DVC
stages (one store each) and ``fermaps maps`` (all four in memory).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_schema.errors import ConfigError, InputError
from data_schema.params import CleanParams, CropParams, MasksParams, RegisterParams, RenderParams
from pipeline.records import decode_png
from preprocess.landmark_names import ibug_index

# Each step imports its preprocess modules (scipy, open3d, dlib behind them) itself: a
# stage process that computes nothing, or only its own step, does not pay for the others.

MESH_KEYS = ("vertices", "faces", "colors", "uv", "face_uv", "texture_png", "landmarks",
             "landmark_names", "landmark_vertex", "landmarks2d", "landmark2d_names")


def _mesh_part(rec: dict) -> dict:
    return {k: rec[k] for k in MESH_KEYS}


def _texture_args(rec: dict) -> dict:
    """Texture / uv / colour keyword arguments of the renderer for a mesh record."""
    n_v, n_f = len(rec["vertices"]), len(rec["faces"])
    texture = decode_png(rec["texture_png"])
    has_uv = texture is not None and len(rec["face_uv"]) == n_f and len(rec["uv"]) > 0
    return {"texture": texture if has_uv else None, "uv": rec["uv"] if has_uv else None,
            "face_uv": rec["face_uv"] if has_uv else None,
            "colors": rec["colors"] if len(rec["colors"]) == n_v else None}


def register_step(rec: dict, p: RegisterParams, item: str) -> dict:
    """raw_mesh record -> registered_mesh record (mesh and landmarks in the template
    frame), posed by the first of ``p.methods`` that works (preprocess.pose.register);
    the method is recorded as ``registration_method``."""
    from pipeline.stages.template import template_for
    from pipeline.stages.template_surface import surface_for
    from preprocess.pose.register import pose_scan

    file_lm = None
    if len(rec["landmarks"]) > 0:
        file_lm = (rec["landmarks"], tuple(rec["landmark_names"]), str(rec["landmark_provenance"]))
    colour = _texture_args(rec)
    template, surface = template_for(p), surface_for(p)   # ConfigErrors, outside the try
    try:
        pose = pose_scan(rec["vertices"], rec["faces"], template=template, surface=surface,
                         file_landmarks=file_lm, colour=colour, methods=tuple(p.methods),
                         max_rmse_mm=p.max_rmse_mm, trim_fraction=p.trim_fraction,
                         lift_size=p.lift_size, item=item)
    except ValueError as exc:
        raise ConfigError(f"register.methods: {exc}") from None
    reg = pose.registration
    out = _mesh_part(rec)
    if pose.method != "file":   # the landmarks the pose came from replace the (absent) file's
        out.update(landmarks=pose.landmarks, landmark_names=np.asarray(pose.landmark_names, dtype=object),
                   landmark_vertex=np.full(len(pose.landmark_names), -1, np.int64))
    out["vertices"] = reg.apply(rec["vertices"])
    out["landmarks"] = reg.apply(out["landmarks"]) if len(out["landmarks"]) else out["landmarks"]
    out.update(landmark_provenance=np.asarray(pose.provenance, dtype=object), rotation=reg.R,
               translation=reg.t, rmse_mm=np.float64(reg.rmse), n_landmarks_used=np.int64(len(reg.used_names)),
               registration_method=np.asarray(pose.method, dtype=object),
               registration_tried=np.asarray("; ".join(pose.tried), dtype=object))
    return out


def crop_step(rec: dict, p: CropParams, item: str) -> dict:
    """registered_mesh record -> face_mesh record: nose tip, sphere crop, nose at origin."""
    from preprocess.nose import crop_sphere, find_nose_tip, landmark_nose_tip

    v, f = rec["vertices"], rec["faces"]
    hint = landmark_nose_tip(rec["landmarks"], list(rec["landmark_names"])) if len(rec["landmarks"]) else None
    tip = find_nose_tip(v, f, hint=hint, hint_radius_mm=p.hint_radius_mm, item=item)
    cm = crop_sphere(v, f, tip.point, p.radius_mm, min_component_fraction=p.min_component_fraction, item=item)
    new_index = np.full(len(v), -1, np.int64)
    new_index[cm.kept_index] = np.arange(len(cm.kept_index))
    out = _mesh_part(rec)
    out["vertices"] = cm.vertices - tip.point
    out["faces"] = cm.faces.astype(np.int32)
    if len(rec["colors"]) == len(v):
        out["colors"] = rec["colors"][cm.kept_index]
    if len(rec["face_uv"]) == len(f):
        out["face_uv"] = rec["face_uv"][cm.face_index]
    out["landmarks"] = rec["landmarks"] - tip.point if len(rec["landmarks"]) else rec["landmarks"]
    lv = rec["landmark_vertex"]
    out["landmark_vertex"] = np.where(lv >= 0, new_index[np.clip(lv, 0, None)], -1) if len(lv) else lv
    out.update(nose_tip=tip.point, nose_method=np.asarray(tip.method, dtype=object),
               source_vertex=cm.kept_index.astype(np.int64))
    return out


@dataclass(frozen=True)
class Projected:
    points: np.ndarray   # (68, 2) float32 pixels, 0 where absent
    present: np.ndarray  # (68,) bool


def project_landmarks68(points: np.ndarray, names, extent, pixel_size_mm: float) -> Projected:
    """3-D landmarks (mm, nose-tip frame) -> iBUG-68 pixel positions on the maps.

    Pixel (col, row) of a point: col = (x - xmin) / s - 0.5, row = (ymax - y) / s - 0.5,
    the inverse of the renderer's pixel-centre rule (preprocess.render).
    """
    out = np.zeros((68, 2), np.float32)
    present = np.zeros(68, bool)
    xmin, _, _, ymax = extent
    for pt, name in zip(np.asarray(points).reshape(-1, 3), names):
        k = ibug_index(str(name))
        if k is not None:
            out[k] = ((pt[0] - xmin) / pixel_size_mm - 0.5, (ymax - pt[1]) / pixel_size_mm - 0.5)
            present[k] = True
    return Projected(out, present)


def render_step(rec: dict, p: RenderParams, item: str) -> dict:
    """face_mesh record -> maps record (8 x size x size AMDFN maps).  A face that covers
    no pixel is an InputError (an empty map never enters the store)."""
    from preprocess.curvature import principal_curvatures, shape_index, vertex_normals
    from preprocess.render import attribute_maps

    v, f = rec["vertices"], rec["faces"].astype(np.int64)
    try:
        normals = vertex_normals(v, f, weighting=p.normal_weighting)
        curv = principal_curvatures(v, f, normals, rings=p.curvature_rings,
                                    radius_mm=p.curvature_radius_mm or None)
    except InputError as exc:  # these take no item id: name the item here
        raise InputError(item, exc.reason) from None
    si = shape_index(curv.k1, curv.k2)
    h = p.half_extent_mm
    am = attribute_maps(v, f, normals, si, size=p.size, extent_mm=(-h, h, -h, h),
                        depth_range_mm=p.depth_range_mm, nose_z_mm=0.0, item=item, **_texture_args(rec))
    r = am.rendering
    if not am.valid.any():
        raise InputError(item, "the face covers no pixel of the maps (degenerate mesh)")
    proj = project_landmarks68(rec["landmarks"], rec["landmark_names"], r.extent, r.pixel_size_mm)
    return {
        "maps": am.maps,
        "depth_mm": np.where(am.valid, r.depth, 0).astype(np.float32),
        "depth_range_mm": np.float64(p.depth_range_mm),
        "valid": am.valid,
        "landmarks68_px": proj.points,
        "landmarks68_present": proj.present,
        "pixel_size_mm": np.float64(r.pixel_size_mm),
        "extent_mm": np.asarray(r.extent, np.float64),
    }


def clean_step(rec: dict, p: CleanParams, item: str) -> dict:
    """maps record -> maps_clean record: FFNet-M cleaning of the depth, normals (and D)
    recomputed from the cleaned depth; C, R, G, B kept as rendered (0 on filled pixels)."""
    from preprocess.depth_clean import clean_depth

    cd = clean_depth(rec["depth_mm"], rec["valid"], float(rec["pixel_size_mm"]), k=p.outlier_k,
                     sigma_floor_mm=p.sigma_floor_mm, fill_radius=p.fill_radius,
                     sigma=p.gaussian_sigma, passes=p.outlier_passes, item=item)
    rng = float(rec["depth_range_mm"])
    valid = cd.valid
    maps = rec["maps"].copy()
    maps[0:3] = np.where(valid, (cd.normals + 1.0) / 2.0, 0.0)
    maps[3] = np.where(valid, np.clip((cd.depth + rng) / rng, 0.0, 1.0), 0.0)
    maps[4:, ~valid] = 0.0
    return {
        "maps": maps.astype(np.float32),
        "depth_mm": np.where(valid, cd.depth, 0).astype(np.float32),
        "n_outliers": np.int64(cd.n_outliers),
        "n_filled": np.int64(cd.n_filled),
        "valid": valid,
        **{k: rec[k] for k in ("landmarks68_px", "landmarks68_present", "pixel_size_mm", "extent_mm")},
    }


def _resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 (area averaging, as for downscaling)."""
    import cv2

    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def masks_step(rec: dict, p: MasksParams, item: str) -> dict:
    """maps(_clean) record -> masks record: 56x56 texture, 68 landmarks on it, FFNet-M
    mask-1 / mask-2 from the 51 inner points.  No face found (with landmarks="detect")
    is a per-item InputError: no mask is written for that scan."""
    from preprocess.landmarks import detect_landmarks
    from preprocess.masks import landmark_masks

    if p.landmarks not in ("detect", "projected", "detect_or_projected"):
        raise ConfigError(f"masks.landmarks must be detect, projected or detect_or_projected, got {p.landmarks!r}")
    rgb = (np.clip(np.moveaxis(rec["maps"][5:8], 0, -1), 0, 1) * 255 + 0.5).astype(np.uint8)
    size = rgb.shape[0]
    points = present = None
    source = "projected"
    if p.landmarks != "projected":
        res = detect_landmarks(_resize_rgb(rgb, p.detect_size), "dlib", upsample=p.upsample)
        if res.found:
            points, present, source = res.points, res.present, res.provenance
            scale = p.detect_size
        elif p.landmarks == "detect":
            raise InputError(item, f"no face found on the rendered texture ({res.reason})")
    if points is None:
        present = rec["landmarks68_present"]
        if not present[17:].any():
            raise InputError(item, "no projected landmarks (the scan has no iBUG-mappable landmarks)")
        points, scale = rec["landmarks68_px"].astype(np.float64), size
    m = landmark_masks(points, present=present, image_size=scale, item=item)
    pts56 = (points + 0.5) * (56 / scale) - 0.5
    return {
        "mask56": m.mask56, "mask28": m.mask28,
        "landmarks68": np.where(present[:, None], pts56, 0).astype(np.float32),
        "landmarks_present": np.asarray(present, bool),
        "landmark_source": np.asarray(source, dtype=object),
        "texture56": _resize_rgb(rgb, 56),
    }
