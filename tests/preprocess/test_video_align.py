"""Video face alignment (preprocess.video_align) with the real dlib detector and
predictor (and OpenCV's Haar cascade) on frames made by warping scikit-image's
``astronaut()`` with KNOWN similarities.

Truth: the frame-f image of an astronaut point ``x`` is ``K_f x``; alignment maps it
to ``A_f K_f x``.  Perfect alignment makes ``A_f K_f`` the same map for every frame,
so the astronaut's landmarks pushed through ``A_f K_f`` must land where the reference
frame's do.  Nothing here compares the code with its own earlier output except the
determinism test.

Frames are 320x240; the face is sized so the aligned crop (out_size 240, margin 0.2) is
close to 1:1 with the input (checked), so "1 px" means about one pixel of either.
Measured when written (aligned pixels, RMS over iBUG 17-67): known-transform sequence
0.15-0.57 px, Haar 0.6-0.85 px; dlib's own aligned points vs the reference frame's
0.7-1.0 px (its per-frame landmark noise); still face (noise sigma 2 grey levels):
jitter of the aligned points 0.46 px, of the true points under the transforms 0.62 px.
"""
import math

import cv2
import numpy as np
import pytest

from data_schema.errors import InputError
from preprocess.scan import Landmarks
from preprocess.synthetic.astronaut import (
    astronaut_face_box, astronaut_image, astronaut_landmarks,
)
from preprocess.video_align import (
    AlignedSequence, align_sequence, apply_affine, compose_affine, crop_transform,
    fit_similarity, interpolate_similarity, similarity_from_landmarks, similarity_params,
)

pytest.importorskip("dlib")

W, H = 320, 240
CENTRE = ((W - 1) / 2.0, (H - 1) / 2.0)
INNER = slice(17, 68)
L = astronaut_landmarks()            # astronaut pixels; any fixed points on the face do


def _rms(a, b) -> float:
    return float(np.sqrt(np.mean(np.sum((np.asarray(a)[INNER] - np.asarray(b)[INNER]) ** 2,
                                        axis=1))))


def _sim(angle_deg, scale, tx, ty, centre=CENTRE) -> np.ndarray:
    """(2, 3) rotation by angle (degrees, counter-clockwise on screen) and scale about
    ``centre``, then a shift (tx, ty) pixels, built here from first principles."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    M = np.array([[c, s], [-s, c]])                  # y down: counter-clockwise on screen
    ctr = np.asarray(centre, dtype=np.float64)
    return np.column_stack([M, ctr - M @ ctr + np.array([tx, ty])])


def _place(face_px: float, centre=CENTRE) -> np.ndarray:
    """Astronaut -> frame: dlib's astronaut face box scaled to face_px, centred."""
    (l, t), (r, b) = astronaut_face_box()
    s = face_px / (r - l)
    c = np.array([(l + r) / 2.0, (t + b) / 2.0])
    return np.column_stack([s * np.eye(2), np.asarray(centre) - s * c])


def _render(Ks) -> list[np.ndarray]:
    img = np.ascontiguousarray(astronaut_image())
    return [cv2.warpAffine(img, K, (W, H), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101) for K in Ks]


def _truth_aligned(res: AlignedSequence, Ks) -> list[np.ndarray]:
    """The astronaut landmarks of each kept frame pushed through A_f K_f."""
    return [apply_affine(A, apply_affine(Ks[i], L))
            for A, i in zip(res.transforms, res.frame_index)]


# rotations +-10 deg, scales 0.9-1.1, shifts up to 12 px (each frame relative to the first)
MOTIONS = [(0, 1.0, 0, 0), (4, 1.03, 3, -2), (10, 1.1, 8, 4), (6, 1.05, 12, 6),
           (-3, 0.97, 5, 0), (-10, 0.9, -6, -5), (-7, 0.95, -10, 3), (0, 1.0, 0, 0)]
FACE_PX = 160                        # -> aligned scale ~1.04 at out_size 240


@pytest.fixture(scope="module")
def known():
    base = _place(FACE_PX)
    Ks = [compose_affine(_sim(*m), base) for m in MOTIONS]
    return Ks, _render(Ks)


# --------------------------------------------------------------------------------------
# The similarity
# --------------------------------------------------------------------------------------

def test_fit_similarity_recovers_a_planted_similarity():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 300, size=(31, 2))
    A = _sim(17.0, 1.3, 12.5, -40.0, centre=(100.0, 50.0))
    got = fit_similarity(x, apply_affine(A, x))
    np.testing.assert_allclose(got, A, atol=1e-10)


def test_similarity_uses_eye_centres_nose_and_mouth():
    A = _sim(-8.0, 0.8, 3.0, 7.0)
    dst = apply_affine(A, L)
    src = L.copy()
    src[:17] += 25.0                     # jaw and brows are not fitted: moving them
    src[17:27] -= 13.0                   # changes nothing
    src[36:42] += np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [2, 2], [-2, -2]])  # same centre
    np.testing.assert_allclose(similarity_from_landmarks(src, dst), A, atol=1e-9)
    # fitted on the mouth alone it still recovers the map (exact correspondences)
    np.testing.assert_allclose(similarity_from_landmarks(L, dst, use=("mouth",)), A, atol=1e-9)


def test_similarity_is_reflection_safe():
    mirrored = L * np.array([-1.0, 1.0])
    A = similarity_from_landmarks(L, mirrored)
    assert np.linalg.det(A[:, :2]) > 0               # a rotation-scale, never a mirror


@pytest.mark.parametrize("src, reason", [
    (np.zeros((68, 2)), "coincide"),
    (np.full((68, 2), np.nan), "NaN"),
    (np.zeros((67, 2)), r"\(68, 2\)"),
])
def test_similarity_bad_landmarks(src, reason):
    with pytest.raises(InputError, match=reason):
        similarity_from_landmarks(src, L)


def test_similarity_unknown_group():
    with pytest.raises(ValueError, match="groups"):
        similarity_from_landmarks(L, L, use=("ears",))


def test_interpolate_similarity_angle_scale_translation():
    A0 = _sim(10.0, 1.0, 0.0, 0.0, centre=(0, 0))
    A1 = _sim(30.0, 4.0, 8.0, -2.0, centre=(0, 0))
    mid = similarity_params(interpolate_similarity(A0, A1, 0.5))
    # image-axes angle is minus the on-screen angle; log scale halfway: scale 2
    np.testing.assert_allclose(mid, [math.radians(-20.0), math.log(2.0), 4.0, -1.0], atol=1e-12)
    # the short way round across +-180 degrees
    B0, B1 = _sim(170.0, 1.0, 0, 0, (0, 0)), _sim(-170.0, 1.0, 0, 0, (0, 0))
    ang = similarity_params(interpolate_similarity(B0, B1, 0.5))[0]
    assert abs(abs(ang) - math.pi) < 1e-12


def test_crop_transform_known_values():
    pts = np.zeros((68, 2))
    pts[0], pts[1] = (10.0, 20.0), (110.0, 70.0)     # box 100 x 50 -> square side 100
    pts[2:] = (60.0, 45.0)
    C = crop_transform(pts, 280, 0.2)                # side 140 -> scale 2
    np.testing.assert_allclose(C, [[2.0, 0.0, 139.5 - 120.0], [0.0, 2.0, 139.5 - 90.0]])
    # the square's left edge (x = 60 - 70) lands on pixel edge -0.5
    assert apply_affine(C, np.array([[-10.0, 45.0]]))[0, 0] == pytest.approx(-0.5)


# --------------------------------------------------------------------------------------
# Sequences
# --------------------------------------------------------------------------------------

def test_known_similarities_are_undone(known):
    Ks, frames = known
    res = align_sequence(frames)
    assert res.frames.shape == (8, 240, 240, 3) and res.frames.dtype == np.uint8
    assert res.landmarks68.shape == (8, 68, 2) and res.landmarks68.dtype == np.float32
    assert res.transforms.shape == (8, 2, 3) and res.transforms.dtype == np.float64
    assert res.face_found.all() and not res.interpolated.any() and res.dropped == ()
    scale = math.hypot(*res.transforms[0][:, 0])
    assert 0.9 < scale < 1.2                         # aligned px ~ input px
    truth = _truth_aligned(res, Ks)
    errors = [_rms(t, truth[0]) for t in truth]
    assert max(errors) < 1.0, errors
    # the composite maps A_f K_f agree: same rotation (0.5 deg) and scale (1 %)
    p = np.array([similarity_params(compose_affine(A, K)) for A, K in zip(res.transforms, Ks)])
    assert np.ptp(p[:, 0]) < math.radians(0.5) and np.ptp(p[:, 1]) < 0.01
    # dlib's own points after alignment sit on the reference frame's (its noise ~0.8 px)
    dlib_err = [_rms(lm, res.landmarks68[0]) for lm in res.landmarks68]
    assert max(dlib_err) < 1.5, dlib_err
    np.testing.assert_allclose(res.reference68, res.landmarks68[0], atol=1e-3)
    # the reference frame is just cropped: no rotation
    assert abs(res.transforms[0][1, 0]) < 1e-9


def test_aligned_pixels_match_the_reference_frame(known):
    """The warped pixels agree too: frame 2 (rotated 10 deg, scaled 1.1, shifted) looks
    like frame 0 once aligned (mean absolute difference over the face, grey levels)."""
    _, frames = known
    res = align_sequence(frames[:3])
    face = np.zeros((240, 240), dtype=bool)
    lo = np.floor(res.reference68.min(axis=0)).astype(int)
    hi = np.ceil(res.reference68.max(axis=0)).astype(int)
    face[lo[1]:hi[1], lo[0]:hi[0]] = True
    a, b = (res.frames[k].astype(np.float64) for k in (0, 2))
    assert np.abs(a - b)[face].mean() < 6.0
    assert np.abs(a - np.roll(b, 4, axis=1))[face].mean() > 8.0     # and a 4 px shift would not


def test_haar_detector_hacn_protocol(known):
    Ks, frames = known
    res = align_sequence(frames[:4], detector="haar", out_size=224)
    assert res.frames.shape == (4, 224, 224, 3)
    truth = _truth_aligned(res, Ks)
    assert max(_rms(t, truth[0]) for t in truth) < 1.0
    assert (res.score > 0).all()


def test_still_face_jitter():
    rng = np.random.default_rng(0)
    K = _place(FACE_PX)
    (frame,) = _render([K])
    noisy = [np.clip(frame + rng.normal(0.0, 2.0, frame.shape), 0, 255).astype(np.uint8)
             for _ in range(10)]
    res = align_sequence(noisy)
    assert res.n_tracked == 9
    lm = res.landmarks68.astype(np.float64)
    jitter = float(np.sqrt(np.mean(np.sum((lm[:, INNER] - lm[:, INNER].mean(axis=0)) ** 2,
                                          axis=2))))
    assert jitter < 1.0, jitter
    # the transforms barely move either: the true points stay put
    truth = [apply_affine(A, apply_affine(K, L)) for A in res.transforms]
    assert max(_rms(t, truth[0]) for t in truth) < 1.0        # measured 0.62


def test_tracking_skips_detection(known):
    _, frames = known
    seq = [frames[0]] + [cv2.warpAffine(frames[0], _sim(0.5 * k, 1.0, k, 0.0), (W, H),
                                        borderMode=cv2.BORDER_REFLECT_101) for k in range(1, 10)]
    tracked = align_sequence(seq, redetect_every=4)
    assert tracked.n_detections == 3                 # frames 0, 4, 8
    assert tracked.method == ("detected", "tracked", "tracked", "tracked") * 2 + ("detected", "tracked")
    assert tracked.n_tracked == 7
    every = align_sequence(seq, redetect_every=1)
    assert every.n_detections == 10 and every.n_tracked == 0


def test_blank_frames_in_the_middle_are_bridged():
    # a smooth known motion; frames 3 and 4 blanked
    base = _place(FACE_PX)
    Ks = [compose_affine(_sim(-6.0 + 1.5 * k, 0.97 + 0.0075 * k, 2.0 * k - 8.0, -k), base)
          for k in range(9)]
    frames = _render(Ks)
    frames[3] = np.zeros_like(frames[3])
    frames[4] = np.full_like(frames[4], 128)
    res = align_sequence(frames, max_gap=2)
    assert res.frame_index.tolist() == list(range(9))
    assert res.face_found.tolist() == [True] * 3 + [False] * 2 + [True] * 4
    assert res.interpolated.tolist() == [False] * 3 + [True] * 2 + [False] * 4
    assert res.method[3:5] == ("interpolated", "interpolated")
    assert (res.score[3:5] == 0).all()
    # the bridged transforms are where the known motion puts the face
    truth = _truth_aligned(res, Ks)
    assert max(_rms(t, truth[0]) for t in truth) < 1.0
    assert not res.frames[3].any()                   # the blank frame, warped
    # a gap longer than max_gap is dropped, each frame with its reason
    short = align_sequence(frames, max_gap=1)
    assert short.frame_index.tolist() == [0, 1, 2, 5, 6, 7, 8]
    assert [j for j, _ in short.dropped] == [3, 4]
    assert all("no face" in why and "max_gap 1" in why for _, why in short.dropped)
    assert "tracking lost" in short.dropped[0][1]    # the tracker noticed the face left


def test_tracking_lost_on_a_jump_redetects():
    """The face jumps 70 px (0.7 face widths) between frames: the tracker seeded at the
    old place is rejected and the frame is detected afresh, correctly aligned."""
    Ks = [_place(100, (110.0, 120.0)), _place(100, (180.0, 120.0)), _place(100, (185.0, 118.0))]
    res = align_sequence(_render(Ks), redetect_every=100)
    assert res.method == ("detected", "detected", "tracked")
    truth = _truth_aligned(res, Ks)
    assert max(_rms(t, truth[0]) for t in truth) < 1.0


def test_blank_frames_at_the_start_are_bridged_by_holding(known):
    """Leading faceless frames (one neighbour only) are kept with the first face's
    transform when the run is <= max_gap; longer runs are dropped."""
    Ks, frames = known
    blank = np.zeros_like(frames[0])
    res = align_sequence([blank, blank] + frames[:3], max_gap=2)
    assert res.frame_index.tolist() == [0, 1, 2, 3, 4]
    assert res.interpolated.tolist() == [True, True, False, False, False]
    np.testing.assert_array_equal(res.transforms[0], res.transforms[2])
    # the reference is the first frame with a face (index 2)
    truth = [apply_affine(A, apply_affine(K, L)) for A, K in zip(res.transforms[2:], Ks[:3])]
    assert max(_rms(t, truth[0]) for t in truth) < 1.0
    dropped = align_sequence([blank, blank] + frames[:3], max_gap=1)
    assert dropped.frame_index.tolist() == [2, 3, 4]
    assert [j for j, _ in dropped.dropped] == [0, 1]


def test_no_face_at_all():
    blank = np.zeros((H, W, 3), dtype=np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="clip7: no face in any frame"):
        align_sequence([blank, noise, blank], source="clip7")
    with pytest.raises(InputError, match="no frames"):
        align_sequence([], source="clip7")


def test_one_frame(known):
    _, frames = known
    res = align_sequence(iter(frames[2:3]))
    assert res.frames.shape == (1, 240, 240, 3) and res.n_detections == 1
    assert res.face_found.tolist() == [True]


def test_keeps_the_tracked_face_among_several():
    """Frame 0 shows one face (left); later frames add a larger one (right).  Forced
    re-detections keep the face nearest the tracked box, not the largest."""
    img = np.ascontiguousarray(astronaut_image())
    KL, KR = _place(80, (80.0, 120.0)), _place(100, (235.0, 120.0))
    left = cv2.warpAffine(img, KL, (W, H))
    right = cv2.warpAffine(img, KR, (W, H))
    both = left.copy()
    both[:, 160:] = right[:, 160:]
    res = align_sequence([left] + [both] * 4, redetect_every=2)
    assert res.n_detections == 3
    truth = [apply_affine(A, apply_affine(KL, L)) for A in res.transforms]
    assert max(_rms(t, truth[0]) for t in truth) < 1.0


def test_file_landmarks_exact(known):
    """With exact landmarks from a file, the alignment is exact and nothing is detected;
    a frame without a file falls back to detection."""
    Ks, frames = known
    marks = [apply_affine(K, L) for K in Ks[:4]]
    entries = [marks[0], Landmarks(marks[1], tuple(f"ibug_{k}" for k in range(68)), "file:ckplus"),
               marks[2], None]
    res = align_sequence(frames[:4], file_landmarks=entries)
    assert res.method == ("file", "file", "file", "detected") and res.n_detections == 1
    assert (res.score[:3] == 1.0).all()
    composite = [compose_affine(A, K) for A, K in zip(res.transforms, Ks)]
    for c in composite[1:3]:
        np.testing.assert_allclose(c, composite[0], atol=1e-9)
    truth = _truth_aligned(res, Ks)
    assert _rms(truth[3], truth[0]) < 1.0
    with pytest.raises(InputError, match="file_landmarks has 3 entries"):
        align_sequence(frames[:4], file_landmarks=entries[:3])
    with pytest.raises(InputError, match=r"frame 1 landmarks.*\(68, 2\)"):
        align_sequence(frames[:2], file_landmarks=[marks[0], marks[1][:60]])


def test_template_reference(known):
    """reference='template': every frame's fitted points land on the template's (exact
    with exact file landmarks), and the aligned face is upright and centred."""
    Ks, frames = known
    marks = [apply_affine(K, L) for K in Ks[:3]]
    res = align_sequence(frames[:3], reference="template", file_landmarks=marks)
    for lm in res.landmarks68:
        S = similarity_from_landmarks(lm, res.reference68)
        np.testing.assert_allclose(S, [[1, 0, 0], [0, 1, 0]], atol=1e-4)
    eyes = res.landmarks68[0, 36:42].mean(axis=0), res.landmarks68[0, 42:48].mean(axis=0)
    tilt = math.degrees(math.atan2(eyes[1][1] - eyes[0][1], eyes[1][0] - eyes[0][0]))
    assert abs(tilt) < 5.0                                     # astronaut's own slight roll
    assert abs(res.reference68[:, 0].mean() - 119.5) < 10.0


def test_bad_frames_and_parameters(known):
    _, frames = known
    with pytest.raises(InputError, match=r"s1: frame 1: expected an \(H, W, 3\) uint8"):
        align_sequence([frames[0], frames[0].astype(np.float32)], source="s1")
    with pytest.raises(ValueError, match="reference"):
        align_sequence(frames[:1], reference="last")
    with pytest.raises(ValueError, match="redetect_every"):
        align_sequence(frames[:1], redetect_every=0)


def test_output_is_deterministic(known):
    _, frames = known
    a = align_sequence(frames[:5], redetect_every=3)
    b = align_sequence(frames[:5], redetect_every=3)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.transforms.tobytes() == b.transforms.tobytes()
    assert a.landmarks68.tobytes() == b.landmarks68.tobytes()
    assert a.score.tobytes() == b.score.tobytes()


# --------------------------------------------------------------------------------------
# Coarse-to-fine detection
# --------------------------------------------------------------------------------------

def _big_frame(face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 frame with the astronaut face at ``face_px``, and its true landmarks."""
    K = _place(face_px, centre=(319.5, 239.5))
    img = cv2.warpAffine(np.ascontiguousarray(astronaut_image()), K, (640, 480),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return img, apply_affine(K, L)


def test_coarse_pass_finds_a_large_face_as_well_as_the_full_search():
    from preprocess.landmarks import detect_landmarks
    from preprocess.video_align import COARSE_SHORT_SIDE, _detect, _find_faces_dlib

    frame, truth = _big_frame(260)        # 260 px -> 130 px at the coarse 240-px short side
    assert COARSE_SHORT_SIDE == 240
    assert _find_faces_dlib(frame, 1).coarse
    coarse = _detect(frame, "dlib", 1, None)
    full = detect_landmarks(frame, "dlib", upsample=1, mmod_fallback=False)
    assert coarse.points is not None and full.found
    assert _rms(coarse.points, truth) < 1.15 * _rms(full.points, truth) + 0.5
    assert _rms(coarse.points, truth) < 0.03 * 260


def test_coarse_pass_leaves_a_small_face_to_the_full_search():
    from preprocess.landmarks import DLIB_LOCK, dlib_models
    from preprocess.video_align import _coarse_dlib, _find_faces_dlib

    hog = dlib_models()[0]
    frame, truth = _big_frame(80)         # 40 px when shrunk: half dlib's 80-px window
    assert _coarse_dlib(frame, hog, DLIB_LOCK) is None
    faces = _find_faces_dlib(frame, 1)
    assert not faces.coarse and len(faces.boxes) == 1
    res = align_sequence([frame], out_size=128)
    assert res.method == ("detected",) and res.n_detections == 1
    assert _rms(res.landmarks_in[0], truth) < 0.04 * 80
    # a 320x240 frame is not shrunk at all: the full search only
    small = cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA)
    assert _coarse_dlib(small, hog, DLIB_LOCK) is None


def test_input_frame_landmarks_and_sizes_are_kept(known):
    Ks, frames = known
    res = align_sequence(frames)
    assert res.frame_sizes.tolist() == [[W, H]] * len(frames)
    for i, (A, lm, lm_in) in enumerate(zip(res.transforms, res.landmarks68, res.landmarks_in)):
        np.testing.assert_allclose(apply_affine(A, lm_in), lm, atol=1e-3)
        assert _rms(lm_in, apply_affine(Ks[i], L)) < 3.0


def test_looking_ahead_in_faceless_runs_changes_nothing(known, monkeypatch):
    """The look-ahead search (a second detector in a thread, in runs of frames without
    a face) gives the sequence of the plain one-frame-at-a-time loop, bit for bit."""
    import preprocess.video_align as va

    Ks, frames = known
    blank = np.zeros_like(frames[0])
    seq = [blank, blank] + frames[:3] + [blank] * 3 + frames[3:6] + [blank] * 7 + frames[6:]
    import threading

    searched_ahead = []
    plain = va._find_faces_dlib

    def spy(frame, upsample, hog=None, lock=None):
        searched_ahead.append(threading.current_thread().name.startswith("fermaps-lookahead"))
        return plain(frame, upsample, hog, lock)

    monkeypatch.setattr(va, "_find_faces_dlib", spy)
    monkeypatch.setattr(va.os, "cpu_count", lambda: 2)
    runs = []
    for on in (True, False):
        monkeypatch.setattr(va, "LOOKAHEAD", on)
        searched_ahead.clear()
        runs.append(align_sequence(seq, max_gap=5))
        assert any(searched_ahead) == on
    a, b = runs
    for field in ("frames", "landmarks68", "transforms", "score", "frame_index", "landmarks_in"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.method == b.method and a.dropped == b.dropped and a.n_detections == b.n_detections
    assert len(a.dropped) == 7 and "no face" in a.dropped[0][1]
