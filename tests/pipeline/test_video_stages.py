"""Video branch end to end on the reduced sample: ingest -> align_video -> sample_frames."""
import dataclasses

import numpy as np
import pytest

from data_schema.errors import InputError
from data_schema.params import ChainParams, IngestParams, Params
from data_schema.store import Store
from pipeline.stages.ingest import run_ingest
from pipeline.stages.scan_chain import run_chain_stage
from pipeline.video import align_video_step

PARAMS = dataclasses.replace(Params(), run=ChainParams(workers=1))
EYES = list(range(36, 48))


@pytest.fixture(scope="module")
def stores(small_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("vstores")
    assert run_ingest(small_sample, root / "raw_mesh", root / "raw_frames", IngestParams(workers=1)).exit_code == 0
    for stage, src, dst in (("align_video", "raw_frames", "aligned_frames"),
                            ("sample_frames", "aligned_frames", "frame_samples")):
        res = run_chain_stage(stage, PARAMS, root / src, root / dst)
        assert res.exit_code == 0 and res.n_failed == 0, stage
    return root


def test_every_frame_aligned_to_one_reference(stores):
    raw = Store(stores / "raw_frames", "raw_frames")
    aligned = Store(stores / "aligned_frames", "aligned_frames")
    assert len(aligned) == len(raw) == 2  # one CK+ sequence, one MMI video
    for meta, a in aligned.iter_items():
        _, r = raw.read(meta.key)
        assert a["frames"].shape == (len(r["frames"]), 240, 240, 3)  # all frames kept
        assert a["face_found"].all()
        # the head moves (known similarity per frame) but the eyes, aligned, stay put
        eyes = a["landmarks68"][:, EYES]
        spread = np.sqrt(((eyes - eyes.mean(axis=0)) ** 2).sum(axis=2).mean())
        assert spread < 1.5, (meta.key, spread)
        method = set(a["method"])
        if meta.dataset == "ckplus":  # CK+ landmark files are used, the detector never runs
            assert method == {"file"}
        else:  # the MMI video has no files: detected on the first frame, tracked after
            assert "file" not in method and "detected" in method


def test_sampling_indices_per_protocol(stores):
    samples = Store(stores / "frame_samples", "frame_samples")
    for meta, s in samples.iter_items():
        n = int(s["n_frames"])
        assert n == 6
        peak = n // 2 if meta.dataset == "mmi" else n - 1  # MMI peaks in the middle
        assert s["stcam"][0] == 0 and s["stcam"][-1] == peak
        assert (np.diff(s["stcam"]) >= 0).all()
        assert list(s["wslgan"]) == [n - 3, n - 2, n - 1]
        assert len(s["hacn"]) == 5 and (np.diff(s["hacn"]) > 0).all()


def test_a_video_without_a_face_is_a_clear_error(stores):
    raw = Store(stores / "raw_frames", "raw_frames")
    meta, rec = next(raw.iter_items())
    rec = dict(rec, frames=np.full_like(rec["frames"], 128), has_landmarks=np.zeros_like(rec["has_landmarks"]))
    with pytest.raises(InputError, match="no face in any frame"):
        align_video_step(rec, PARAMS.align_video, meta.key)


def test_fermaps_frames_on_new_videos_equals_the_stage(stores, small_sample, tmp_path):
    from pipeline.cli import main

    videos = sorted((small_sample / "mmi").glob("*.avi"))
    videos += sorted((small_sample / "ckplus" / "cohn-kanade-images").glob("*/*"))   # CK+ folders, landmark files
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + b"\0" * 64)
    assert main(["frames", *map(str, videos), str(bad), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    mine = Store(tmp_path / "out" / "aligned_frames", "aligned_frames")
    ref = Store(stores / "aligned_frames", "aligned_frames")
    assert len(mine) == len(videos)
    ref_by_name = {m.source.split("/")[-1]: m.key for m in ref.metas()}
    for meta, a in mine.iter_items():
        _, b = ref.read(ref_by_name[meta.source.split("/")[-1]])
        np.testing.assert_array_equal(a["frames"], b["frames"])
        np.testing.assert_array_equal(a["landmarks68"], b["landmarks68"])
        np.testing.assert_array_equal(a["head_pose"], b["head_pose"])
        assert list(a["method"]) == list(b["method"])
    from data_schema.store import read_failures
    assert [f["item"] for f in read_failures(tmp_path / "out" / "aligned_frames")] == [str(bad)]


def test_head_pose_and_quality_follow_the_sample_truth(stores, small_sample):
    """The sample turns each face in the image plane by known angles (truth.json): the
    stored roll follows them within 3 degrees (its offset is the photo's own tilt); the
    face size is the landmarks' box in input pixels; the crops are sharp."""
    import json

    truth = json.loads((small_sample / "truth.json").read_text())["items"]
    aligned = Store(stores / "aligned_frames", "aligned_frames")
    checked = 0
    for meta, a in aligned.iter_items():
        item = next(v for path, v in truth.items() if meta.source.rstrip("/").endswith(path.split(".")[0])
                    or path.endswith(meta.source.split("/")[-1]))
        angle = np.asarray(item["head_motion"]["angle_deg"])[a["frame_index"]]
        roll = a["head_pose"][:, 2]
        assert a["head_pose"].shape == (len(angle), 3) and a["head_pose"].dtype == np.float32
        assert np.ptp(angle) > 0.5                                 # there is motion to follow
        offset = roll - angle
        assert np.abs(offset - offset[0]).max() < 3.0, meta.key
        assert abs(offset.mean()) < 6.0
        assert (np.abs(a["head_pose"][:, :2]) < 25).all()          # a frontal face
        assert (a["face_size"] > 60).all() and (a["sharpness"] > 0).all()
        checked += 1
    assert checked == 2
