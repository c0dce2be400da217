"""Synthetic face sequences: the astronaut image warped by an expression that ramps over
time, under a smooth known head motion, with the exact 68 landmarks of every frame.

Per frame f with expression weight ``tau_f`` (0 = neutral) and affine map ``A_f``
(astronaut pixels -> frame pixels: a base framing times a similarity for head motion),
a point ``x0`` of the astronaut image lands at ``A_f (x0 + tau_f d(x0))``, where ``d`` is
the expression's displacement field of :mod:`preprocess.synthetic.expressions`
projected to pixels (orthographic, z dropped).  Landmark k lands at
``A_f (L_k + tau_f d_k)`` with ``d_k`` straight from the expression table, so the
written landmarks are exact.

Frames are made by a backward warp: for each frame pixel, invert ``A_f``, then solve
``x0 + tau d(x0) = a`` by fixed-point iteration (``x0 <- a - tau d(x0)``, converging since
``|grad d| < 1``) and sample the image there (OpenCV ``remap``).  ``d`` is evaluated once
per sequence on a 2-pixel grid and interpolated bilinearly, which keeps a frame at a
few milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.synthetic.astronaut import astronaut_face_box, astronaut_landmarks
from preprocess.synthetic.expressions import EXPRESSIONS
from preprocess.synthetic.face_model import FaceModel, reference_vector_to_image

FIELD_STEP_PX = 2
FIXED_POINT_ITERATIONS = 6


def ease(x: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 ramp on [0, 1] (half a cosine): gentle onset and apex."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def onset_to_apex(n_frames: int) -> np.ndarray:
    """CK+ / Oulu-CASIA ramp: (T,) weights from 0 (first frame) to 1 (last frame)."""
    return ease(np.arange(n_frames) / max(n_frames - 1, 1))


def onset_apex_offset(n_frames: int) -> np.ndarray:
    """MMI ramp: (T,) weights 0 -> 1 -> 0 with the apex (1) at frame ``n_frames // 2``."""
    mid = n_frames // 2
    i = np.arange(n_frames)
    up = ease(i / max(mid, 1))
    down = ease((n_frames - 1 - i) / max(n_frames - 1 - mid, 1))
    return np.where(i <= mid, up, down)


@dataclass(frozen=True)
class HeadMotion:
    """Per-frame similarity of the head in the image, about the frame centre.

    angle_deg, scale, tx, ty : (T,) float64 (degrees counter-clockwise on screen,
    factor, pixels right, pixels down).
    """

    angle_deg: np.ndarray
    scale: np.ndarray
    tx: np.ndarray
    ty: np.ndarray


def random_head_motion(rng: np.random.Generator, n_frames: int, max_angle_deg: float = 5.0,
                       max_shift_px: float = 10.0, max_scale_change: float = 0.05) -> HeadMotion:
    """A smooth head motion: each of angle, scale, tx, ty is ``c + a sin(2 pi f tau + phi)``
    over tau in [0, 1], with ``|c| + |a|`` within its bound (angle within +-max_angle_deg,
    shifts +-max_shift_px, scale 1 +- max_scale_change)."""
    tau = np.arange(n_frames) / max(n_frames - 1, 1)

    def wave(bound: float) -> np.ndarray:
        c = rng.uniform(-0.4, 0.4) * bound
        a = rng.uniform(0.1, 0.6) * bound
        f = rng.uniform(0.3, 1.0)
        phi = rng.uniform(0.0, 2.0 * np.pi)
        return c + a * np.sin(2.0 * np.pi * f * tau + phi)

    return HeadMotion(wave(max_angle_deg), 1.0 + wave(max_scale_change),
                      wave(max_shift_px), wave(max_shift_px))


def similarity(angle_deg: float, scale: float, tx: float, ty: float, center) -> np.ndarray:
    """(2, 3) affine: rotate by angle (counter-clockwise on screen) and scale about
    ``center``, then shift by (tx, ty) pixels."""
    a = np.radians(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    # y points down on screen: counter-clockwise on screen is (x, y) -> (c x + s y, -s x + c y)
    M = np.array([[c, s], [-s, c]])
    cx, cy = center
    t = np.array([cx, cy]) - M @ np.array([cx, cy]) + np.array([tx, ty])
    return np.column_stack([M, t])


def compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(2, 3) affine ``A o B`` (B first)."""
    return np.column_stack([A[:, :2] @ B[:, :2], A[:, :2] @ B[:, 2] + A[:, 2]])


def framing(frame_size: tuple[int, int], face_scale: float, offset=(0.0, 0.0)) -> np.ndarray:
    """(2, 3) affine astronaut pixels -> frame pixels: the face box centre to the frame
    centre (plus ``offset``), scaled by ``face_scale``."""
    (l, t), (r, b) = astronaut_face_box()
    w, h = frame_size
    fc = np.array([(w - 1) / 2.0, (h - 1) / 2.0]) + np.asarray(offset, dtype=np.float64)
    c = np.array([(l + r) / 2.0, (t + b) / 2.0])
    return np.column_stack([face_scale * np.eye(2), fc - face_scale * c])


def frame_affines(base: np.ndarray, motion: HeadMotion, frame_size: tuple[int, int]) -> np.ndarray:
    """(T, 2, 3) per-frame maps astronaut -> frame: head motion (about the frame centre)
    after the base framing."""
    w, h = frame_size
    center = ((w - 1) / 2.0, (h - 1) / 2.0)
    return np.array([compose(similarity(a, s, x, y, center), base)
                     for a, s, x, y in zip(motion.angle_deg, motion.scale, motion.tx, motion.ty)])


class ExpressionWarp:
    """The pixel displacement field of one expression on the astronaut image.

    model : the subject's FaceModel (its width/height scale is used to map pixels to
    material points).  field : (H/step+1, W/step+1, 2) float32 pixel displacement at full
    intensity, sampled every ``FIELD_STEP_PX`` pixels.
    """

    def __init__(self, model: FaceModel, expression: str, image_shape: tuple[int, int]):
        self.expression = expression
        h, w = image_shape
        step = FIELD_STEP_PX
        xs = np.arange(0, w + step, step, dtype=np.float64)
        ys = np.arange(0, h + step, step, dtype=np.float64)
        X, Y = np.meshgrid(xs, ys)
        px = np.column_stack([X.ravel(), Y.ravel()])
        if expression == "neutral":
            d = np.zeros((len(px), 2))
        else:
            d3 = model.field(expression)(model.image_to_material(px))
            d = reference_vector_to_image(d3 / np.append(model.scale, 1.0))
        self.field = d.reshape(len(ys), len(xs), 2).astype(np.float32)
        disp = EXPRESSIONS[expression].landmark_displacement
        self.landmark_displacement = reference_vector_to_image(disp / np.append(model.scale, 1.0))

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Displacement (H, W, 2) float32 at pixel maps x, y (H, W) float32."""
        s = np.float32(1.0 / FIELD_STEP_PX)
        return cv2.remap(self.field, x * s, y * s, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def render_frames(image: np.ndarray, warp: ExpressionWarp, weights: np.ndarray,
                  affines: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render a sequence.

    image : (H, W, 3) uint8 RGB source (the subject's astronaut).  weights : (T,)
    expression weights (intensity already applied).  affines : (T, 2, 3) astronaut ->
    frame maps.  frame_size : (width, height).
    Returns (frames (T, h, w, 3) uint8 RGB, landmarks (T, 68, 2) float64 frame pixels).
    """
    w, h = frame_size
    qx, qy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    frames, marks = [], []
    L = astronaut_landmarks()
    for tau, A in zip(np.asarray(weights, dtype=np.float64), affines):
        Ainv = cv2.invertAffineTransform(A)
        ax = (Ainv[0, 0] * qx + Ainv[0, 1] * qy + Ainv[0, 2]).astype(np.float32)
        ay = (Ainv[1, 0] * qx + Ainv[1, 1] * qy + Ainv[1, 2]).astype(np.float32)
        x0, y0 = ax.copy(), ay.copy()
        if tau != 0.0:
            for _ in range(FIXED_POINT_ITERATIONS):
                d = warp.sample(x0, y0)
                x0 = ax - np.float32(tau) * d[..., 0]
                y0 = ay - np.float32(tau) * d[..., 1]
        frames.append(cv2.remap(image, x0, y0, interpolation=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101))
        p = L + tau * warp.landmark_displacement
        marks.append(p @ A[:, :2].T + A[:, 2])
    return np.stack(frames), np.stack(marks)


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 luma (ITU-R 601, as OpenCV)."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
