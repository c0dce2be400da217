"""train.data (Datasets over the stores, seeded loader) and train.augment (batch
augmentation), on tiny stores written here with hand-chosen values: every expected
number below is written down from how the stores were made, never taken from the code
under test."""
import math
import mmap
import pickle

import h5py
import numpy as np
import pytest
import torch

from data_schema.errors import InputError, SchemaError
from data_schema.schemas import get_schema
from data_schema.store import ItemMeta, ItemRecord, ShardEntry, shard_file_name, write_index, write_shard
from preprocess.landmark_names import IBUG_MIRROR
from train import augment as A
from train import data as train_data
from train.data import InMemoryDataset, MapsDataset, SequenceDataset, make_loader
from train.models.amdfn import AMDFN
from train.models.ffnet_m import FFNetM

# ------------------------------------------------------------------ store builders
# Bosphorus subjects with labels 0, 1, 2, neutral (6) and one unlabelled scan (-1), plus a
# BU-3DFE subject (sessions = intensities).  Item number n (position in MAPS_ITEMS) sets
# every value: maps channel c = (8 n + c + 1) / 1024, mask56 = (n + 1) / 100,
# mask28 = (n + 1) / 200; valid is False in column 0 only.
MAPS_ITEMS = [
    *[("bosphorus", f"bs00{s}", "0", code, label)
      for s in range(4)
      for code, label in (("ANGER", 0), ("DISGUST", 1), ("FEAR", 2), ("NEUTRAL", 6), ("LFAU_12", -1))],
    ("bu3dfe", "F0001", "04", "AN", 0), ("bu3dfe", "F0001", "01", "DI", 1),
    ("bu3dfe", "F0002", "03", "HA", 3), ("bu3dfe", "F0002", "00", "NE", 6),
]


def _key(dataset, subject, session, code):
    return f"{dataset}/{subject}/{session}/{code}/{subject}_{code}.x"


MAP_KEYS = [_key(*it[:4]) for it in MAPS_ITEMS]


def _meta(key, dataset, subject, session, code, label, fmt):
    return ItemMeta(key, dataset, subject, session, code, label, key, "0" * 64, fmt)


def _write_store(root, schema_name, records_by_shard):
    schema = get_schema(schema_name)
    root.mkdir(parents=True)
    entries = []
    for name, recs in records_by_shard.items():
        file = shard_file_name(name)
        digest = write_shard(root / file, schema, recs, {}, "test")
        entries.append(ShardEntry(file, digest, tuple(r.meta.key for r in recs)))
    write_index(root, schema, {}, "test", entries)
    return root


def make_maps_store(root):
    """maps_clean store of MAPS_ITEMS, one shard per subject, items in MAPS_ITEMS order."""
    shards = {}
    for n, (ds, subj, sess, code, label) in enumerate(MAPS_ITEMS):
        key = _key(ds, subj, sess, code)
        maps = np.empty((8, 112, 112), np.float32)
        for c in range(8):
            maps[c] = (8 * n + c + 1) / 1024
        valid = np.ones((112, 112), bool)
        valid[:, 0] = False
        arrays = {"maps": maps, "depth_mm": np.zeros((112, 112), np.float32), "n_outliers": np.int64(0),
                  "n_filled": np.int64(0), "valid": valid,
                  "landmarks68_px": np.zeros((68, 2), np.float32), "landmarks68_present": np.zeros(68, bool),
                  "pixel_size_mm": np.float64(1.0), "extent_mm": np.array([-56.0, 56.0, -56.0, 56.0])}
        shards.setdefault(f"{ds}_{subj}", []).append(ItemRecord(_meta(key, ds, subj, sess, code, label, "bnt"), arrays))
    return _write_store(root, "maps_clean", shards)


def make_masks_store(root):
    """masks store of the same items, all in ONE shard in REVERSED order (rows differ from
    the maps store's)."""
    recs = []
    for n, (ds, subj, sess, code, label) in reversed(list(enumerate(MAPS_ITEMS))):
        key = _key(ds, subj, sess, code)
        arrays = {"mask56": np.full((56, 56), (n + 1) / 100, np.float32),
                  "mask28": np.full((28, 28), (n + 1) / 200, np.float32),
                  "landmarks68": np.zeros((68, 2), np.float32), "landmarks_present": np.zeros(68, bool),
                  "landmark_source": np.asarray("projected", dtype=object),
                  "texture56": np.zeros((56, 56, 3), np.uint8)}
        recs.append(ItemRecord(_meta(key, ds, subj, sess, code, label, "bnt"), arrays))
    return _write_store(root, "masks", {"all": recs})


# Sequences: frame j of every sequence is uniformly 20 j + 10 (R = G = B); its landmark k
# is (x, y) = (10 + j + k / 2, 30 + k / 4).  S = 96 pixels.
S = 96
SEQ_ITEMS = [  # (dataset, subject, label, n_frames)
    ("ckplus", "S005", 1, 9), ("ckplus", "S010", 2, 9), ("ckplus", "S011", 3, 9),
    ("ckplus", "S012", 4, 3), ("mmi", "S001", 0, 9),
]


def seq_key(dataset, subject, label, n_frames=None):
    return f"{dataset}/{subject}/001/{label}/001"


SEQ_KEYS = [seq_key(*it) for it in SEQ_ITEMS]


def frame_landmarks(j):
    k = np.arange(68)
    return np.stack([10 + j + k / 2, 30 + k / 4], axis=1).astype(np.float32)


def make_aligned_store(root, items=SEQ_ITEMS):
    """aligned_frames store of ``items`` ((dataset, subject, label, n_frames)), keys by
    :func:`seq_key`, one shard per subject."""
    shards = {}
    for ds, subj, label, n in items:
        key = seq_key(ds, subj, label)
        frames = np.stack([np.full((S, S, 3), 20 * j + 10, np.uint8) for j in range(n)])
        arrays = {"frames": frames, "landmarks68": np.stack([frame_landmarks(j) for j in range(n)]),
                  "transforms": np.zeros((n, 2, 3)), "face_found": np.ones(n, bool),
                  "interpolated": np.zeros(n, bool), "score": np.ones(n, np.float32),
                  "frame_index": np.arange(n, dtype=np.int64),
                  "method": np.asarray(["file"] * n, dtype=object),
                  "head_pose": np.zeros((n, 3), np.float32), "face_size": np.full(n, 100, np.float32),
                  "sharpness": np.full(n, 50, np.float32), "n_frames_in": np.int64(n),
                  "dropped": np.asarray("[]", dtype=object)}
        meta = _meta(key, ds, subj, "001", str(label), label, "ckplus")
        shards.setdefault(f"{ds}_{subj}", []).append(ItemRecord(meta, arrays))
    return _write_store(root, "aligned_frames", shards)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_stores")
    return {"maps": make_maps_store(root / "maps_clean"), "masks": make_masks_store(root / "masks"),
            "aligned": make_aligned_store(root / "aligned_frames")}


def map_value(key, c):
    return (8 * MAP_KEYS.index(key) + c + 1) / 1024


LABELLED = [k for k, it in zip(MAP_KEYS, MAPS_ITEMS) if it[4] >= 0]


# ------------------------------------------------------------------------ MapsDataset

def test_amdfn_samples_carry_the_stored_maps_and_labels(stores):
    keys = LABELLED[::-1]  # any order: samples follow the keys
    ds = MapsDataset(stores["maps"], keys)
    assert len(ds) == len(keys)
    for i, key in enumerate(keys):
        s = ds[i]
        assert set(s) == set(AMDFN.input_spec) | {"valid", "label"}
        m = s["maps"]
        assert m.dtype == torch.float32 and tuple(m.shape) == AMDFN.input_spec["maps"]
        for c in range(8):
            assert torch.all(m[c] == map_value(key, c))
        assert s["valid"].shape == (1, 112, 112) and not s["valid"][0, :, 0].any() and s["valid"][0, :, 1:].all()
        assert s["label"].dtype == torch.int64 and int(s["label"]) == MAPS_ITEMS[MAP_KEYS.index(key)][4]


def test_channel_subset_by_name_in_the_order_asked(stores):
    key = LABELLED[3]
    ds = MapsDataset(stores["maps"], [key], channels=["D", "Nx", "B"])
    m = ds[0]["maps"]
    assert m.shape == (3, 112, 112)
    assert [float(m[i, 5, 5]) for i in range(3)] == [map_value(key, 3), map_value(key, 0), map_value(key, 7)]
    assert ds.normal_channels == {"maps": (1, None)}
    with pytest.raises(ValueError, match="channels"):
        MapsDataset(stores["maps"], [key], channels=["D", "Q"])


def test_ffnet_inputs_named_by_input_spec_and_masks_from_their_own_rows(stores):
    keys = [k for k in LABELLED if k.startswith("bosphorus")]
    ds = MapsDataset(stores["maps"], keys, model="ffnet_m", masks_root=stores["masks"])
    assert ds.normal_channels == {"normals": (0, 1)}
    for i, key in enumerate(keys):
        s = ds[i]
        assert set(s) == set(FFNetM.input_spec) | {"valid", "label"}
        for name, shape in FFNetM.input_spec.items():
            assert tuple(s[name].shape) == shape and s[name].dtype == torch.float32
        assert torch.all(s["depth"][0] == map_value(key, 3))
        assert [float(s["normals"][c, 0, 0]) for c in range(3)] == [map_value(key, c) for c in range(3)]
        assert [float(s["texture"][c, 0, 0]) for c in range(3)] == [map_value(key, c) for c in (5, 6, 7)]
        n = MAP_KEYS.index(key)
        assert torch.all(s["mask56"] == float(np.float32((n + 1) / 100)))
        assert torch.all(s["mask28"] == float(np.float32((n + 1) / 200)))
    # without a masks store FFNet-M samples carry no masks (masked=False)
    assert "mask56" not in MapsDataset(stores["maps"], keys[:1], model="ffnet_m")[0]


def test_label_map_remaps_and_unlabelled_items_are_refused(stores):
    neutral = next(k for k, it in zip(MAP_KEYS, MAPS_ITEMS) if it[4] == 6)
    unlabelled = next(k for k, it in zip(MAP_KEYS, MAPS_ITEMS) if it[4] == -1)
    ds = MapsDataset(stores["maps"], [LABELLED[0], LABELLED[1], neutral], label_map={0: 5, 1: 4, 6: 0})
    assert [int(ds[i]["label"]) for i in range(3)] == [5, 4, 0]
    assert list(ds.labels()) == [5, 4, 0]
    with pytest.raises(InputError, match="unlabelled"):
        MapsDataset(stores["maps"], [unlabelled])[0]
    with pytest.raises(InputError, match="not in the label map"):
        MapsDataset(stores["maps"], [LABELLED[2]], label_map={0: 0})[0]


def test_bad_keys_and_wrong_stores_fail_clearly(stores, tmp_path):
    with pytest.raises(KeyError, match="not in the store"):
        MapsDataset(stores["maps"], ["no/such/item"])
    with pytest.raises(SchemaError, match="expected 'maps_clean' or 'maps'"):
        MapsDataset(stores["aligned"], LABELLED[:1])
    with pytest.raises(SchemaError, match="not a store"):
        MapsDataset(tmp_path, LABELLED[:1])
    with pytest.raises(ValueError, match="serves"):
        MapsDataset(stores["maps"], LABELLED[:1], model="stcam")


def test_an_index_that_disagrees_with_its_shard_is_caught_on_open(stores, tmp_path):
    import json
    import shutil

    root = tmp_path / "maps_clean"
    shutil.copytree(stores["maps"], root)
    doc = json.loads((root / "index.json").read_text())
    items = doc["shards"][0]["items"]
    items[0], items[1] = items[1], items[0]  # rows now point at each other's data
    (root / "index.json").write_text(json.dumps(doc))
    ds = MapsDataset(root, [items[0]])
    with pytest.raises(SchemaError, match="different runs"):
        ds[0]


def test_no_hdf5_file_is_opened_in_init_and_handles_stay_per_process(stores, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("h5py.File opened in __init__")

    monkeypatch.setattr(h5py, "File", refuse)
    maps = MapsDataset(stores["maps"], LABELLED, model="ffnet_m", masks_root=stores["masks"])
    seq = SequenceDataset(stores["aligned"], SEQ_KEYS, "stcam", train=True)
    monkeypatch.undo()
    first = maps[0]  # opens handles in this process
    clone = pickle.loads(pickle.dumps(maps))
    assert clone._handles._files == {}  # handles never travel
    assert torch.equal(clone[0]["depth"], first["depth"])
    # forked workers inherit the parent's open handles and must open their own
    batches = list(make_loader(maps, 4, False, 2, 0))
    assert torch.equal(torch.cat([b["label"] for b in batches]), torch.as_tensor(maps.labels()))
    assert seq[0]["x"].shape == (3, 7, S, S)


def test_open_shards_are_capped_least_recently_used_first(stores, monkeypatch):
    import train.data

    monkeypatch.setattr(train.data, "MAX_OPEN_SHARDS", 2)
    ds = MapsDataset(stores["maps"], LABELLED)  # 4 Bosphorus shards + 2 BU-3DFE shards
    first = [ds[i]["label"] for i in range(len(ds))]
    files = ds._handles._files
    assert len(files) == 2 and all(sh.h5.id.valid for sh in files.values())
    assert [ds[i]["label"] for i in range(len(ds))] == first  # closed shards reopen


def test_each_sample_reads_one_chunk_per_dataset_by_row(stores, monkeypatch):
    reads, indexed = [], []
    real_read, real_get = train_data._Shard.read_into, h5py.Dataset.__getitem__

    def spy_read(self, name, i, dest, start=0, key=None):
        reads.append((name, i))
        return real_read(self, name, i, dest, start, key)

    def spy_get(self, args, *rest, **kw):
        indexed.append((self.name, args))
        return real_get(self, args, *rest, **kw)

    maps = MapsDataset(stores["maps"], LABELLED[:4])
    seq = SequenceDataset(stores["aligned"], SEQ_KEYS[:1], "stcam", train=False)
    maps[0], seq[0]  # open (opening reads the small ids/key and ids/label columns once)
    monkeypatch.setattr(train_data._Shard, "read_into", spy_read)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy_get)
    maps[2]
    assert sorted(n for n, _ in reads) == ["maps", "valid"] and indexed == []  # raw chunks only
    reads.clear()
    seq[0]
    frame_reads = [i for n, i in reads if n == "frames"]
    # 9 frames, STCAM eval picks 7 distinct ones: 7 single-frame reads, nothing else
    assert len(frame_reads) == 7 and len(set(frame_reads)) == 7
    # frames are gzip: HDF5 inflates them, one single-row read per frame
    frame_indexed = [a for n, a in indexed if n == "/frames"]
    assert len(frame_indexed) == 7 and all(isinstance(a, (int, np.integer)) for a in frame_indexed)


# ------------------------------------------------------------------- SequenceDataset

def frame_numbers(clip_t):
    """Frame numbers j back from uniform frames of value 20 j + 10 (per time step)."""
    vals = clip_t * 255.0
    assert torch.all(vals == vals.flatten(1).amin(1).view(-1, *([1] * (vals.ndim - 1))))
    return [round((float(v.flatten()[0]) - 10) / 20) for v in vals]


def test_stcam_eval_frames_are_the_hand_computed_seven(stores):
    ds = SequenceDataset(stores["aligned"], [SEQ_KEYS[0], SEQ_KEYS[3], SEQ_KEYS[4]], "stcam", train=False)
    x = ds[0]["x"]
    assert x.shape == (3, 7, S, S) and x.dtype == torch.float32
    # 9 frames, peak = last (8): round_half_up(8 j / 6) = 0 1 3 4 5 7 8
    assert frame_numbers(x.permute(1, 0, 2, 3)) == [0, 1, 3, 4, 5, 7, 8]
    # 3 frames: round_half_up(2 j / 6) = 0 0 1 1 1 2 2
    assert frame_numbers(ds[1]["x"].permute(1, 0, 2, 3)) == [0, 0, 1, 1, 1, 2, 2]
    # MMI: peak = middle frame 4: round_half_up(4 j / 6) = 0 1 1 2 3 3 4
    assert frame_numbers(ds[2]["x"].permute(1, 0, 2, 3)) == [0, 1, 1, 2, 3, 3, 4]
    assert int(ds[2]["label"]) == 0


def test_stcam_training_jitter_keeps_the_ends_and_the_order(stores):
    ds = SequenceDataset(stores["aligned"], SEQ_KEYS[:3], "stcam", train=True, seed=3, max_shift=1)
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(3):
            f = frame_numbers(ds[i]["x"].permute(1, 0, 2, 3))
            assert f[0] == 0 and f[-1] == 8 and f == sorted(f)
            assert all(abs(a - b) <= 1 for a, b in zip(f, [0, 1, 3, 4, 5, 7, 8]))
            seen.add(tuple(f))
    assert len(seen) > 1  # it does jitter


def test_hacn_segments_eval_centres_training_inside_and_short_sequences_padded(stores):
    ev = SequenceDataset(stores["aligned"], [SEQ_KEYS[0], SEQ_KEYS[3]], "hacn", train=False, size=32)
    x = ev[0]["x"]
    assert x.shape == (5, 3, 32, 32)  # (T, C, H, W), resized
    # segments of 9 frames: [0,1) [1,3) [3,5) [5,7) [7,9) -> centres 0 2 4 6 8
    assert frame_numbers(x) == [0, 2, 4, 6, 8]
    # 3 frames < k = 5: all three, the last repeated
    assert frame_numbers(ev[1]["x"]) == [0, 1, 2, 2, 2]
    tr = SequenceDataset(stores["aligned"], SEQ_KEYS[:1], "hacn", train=True, seed=1, size=32)
    bounds = [(0, 1), (1, 3), (3, 5), (5, 7), (7, 9)]
    for epoch in range(5):
        tr.set_epoch(epoch)
        f = frame_numbers(tr[0]["x"])
        assert all(lo <= j < hi for j, (lo, hi) in zip(f, bounds))


def test_wslgan_view_is_one_of_the_last_three_with_landmarks_in_its_pixels(stores):
    ev = SequenceDataset(stores["aligned"], SEQ_KEYS[:1], "wslgan", train=False)
    s = ev[0]
    assert s["x"].shape == (1, 48, 48)
    assert torch.allclose(s["x"] * 255, torch.full((1, 48, 48), 20.0 * 8 + 10))  # last frame, gray of R = G = B
    # 96 -> 48: x' = (x + 0.5) / 2 - 0.5
    assert torch.allclose(s["landmarks"], torch.from_numpy((frame_landmarks(8) + 0.5) / 2 - 0.5))
    tr = SequenceDataset(stores["aligned"], SEQ_KEYS[:1], "wslgan", train=True, seed=0)
    got = set()
    for epoch in range(12):
        tr.set_epoch(epoch)
        s = tr[0]
        j = round((float(s["x"][0, 0, 0]) * 255 - 10) / 20)
        assert torch.allclose(s["landmarks"], torch.from_numpy((frame_landmarks(j) + 0.5) / 2 - 0.5))
        got.add(j)
    assert got == {6, 7, 8}


def test_training_draws_repeat_per_seed_and_epoch_whatever_the_workers(stores):
    def batches(workers, seed=5, epoch=2):
        ds = SequenceDataset(stores["aligned"], SEQ_KEYS, "hacn", train=True, seed=seed, size=16)
        ds.set_epoch(epoch)
        return [b["x"] for b in make_loader(ds, 2, False, workers, 0)]

    a, b = batches(0), batches(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = batches(0, epoch=3)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_in_memory_dataset_holds_the_same_samples(stores):
    ds = MapsDataset(stores["maps"], LABELLED, model="ffnet_m", masks_root=stores["masks"])
    mem = InMemoryDataset(ds)
    assert len(mem) == len(ds)
    for i in (0, 5, len(ds) - 1):
        a, b = ds[i], mem[i]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["amdfn", "amdfn_subset", "ffnet_m"])
def test_batched_reads_give_the_batches_of_the_default_collate(stores, kind):
    """make_loader reads a MapsDataset a batch at a time (read_batch, rows straight into
    the batch, shared memory in workers); the batches must be exactly those of torch's
    own per-sample path with the same seed, shuffled or not, with 0 or 2 workers."""
    kw = {"amdfn": {}, "amdfn_subset": {"channels": ["D", "Nx", "Ny", "B"]},
          "ffnet_m": {"model": "ffnet_m", "masks_root": stores["masks"]}}[kind]
    keys = [k for k in LABELLED if k.startswith("bosphorus")] if kind == "ffnet_m" else LABELLED
    ds = MapsDataset(stores["maps"], keys, **kw)
    per_sample = torch.utils.data.Subset(ds, range(len(ds)))  # no read_batch: DataLoader collates
    for shuffle, workers, drop_last in ((True, 2, True), (False, 0, False)):
        got = list(make_loader(ds, 3, shuffle, workers, 5, drop_last=drop_last))
        want = list(make_loader(per_sample, 3, shuffle, workers, 5, drop_last=drop_last))
        assert isinstance(make_loader(ds, 3, shuffle, workers, 5).dataset, train_data._BatchReads)
        assert len(got) == len(want) == (len(ds) // 3 if drop_last else -(-len(ds) // 3))
        for a, b in zip(got, want):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    # the stored order for precise batch norm: same batches as an unshuffled loader
    fixed = list(train_data.in_stored_order(make_loader(ds, 3, True, 2, 5)))
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(fixed, make_loader(ds, 3, False, 0, 5)))


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_nan_anywhere_in_a_row_is_refused_even_when_other_channels_are_read(tmp_path, compression):
    """A NaN in row 2, channel 0 of a float dataset: reading channels 1..2 of that row
    with a key raises (a raw row is checked whole); rows without NaN read fine."""
    data = np.ones((4, 3, 5), np.float32)
    data[2, 0, 1] = np.nan
    path = tmp_path / "n.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=data, chunks=(1, 3, 5), compression=compression)

    with h5py.File(path, "r") as h5:
        shard = BareShard(h5)
        assert np.array_equal(shard.read_into("x", 1, np.zeros((2, 5), np.float32), 1, key="ok"), data[1, 1:])
        if compression is None:
            with pytest.raises(SchemaError, match=r"x of 'bad' holds NaN or inf"):
                shard.read_into("x", 2, np.zeros((2, 5), np.float32), 1, key="bad")
        with pytest.raises(SchemaError, match=r"x of 'bad' holds NaN or inf"):
            shard.read_into("x", 2, np.zeros((3, 5), np.float32), key="bad")
        shard.close()


def test_batch_tensors_are_allocated_in_shared_memory_for_workers():
    t = train_data._batch_tensor((2, 3, 4), torch.bool, shared=True)
    assert t.is_shared() and t.shape == (2, 3, 4) and t.dtype == torch.bool and t.is_contiguous()
    assert not train_data._batch_tensor((2, 3), torch.float32, shared=False).is_shared()
    assert train_data._channel_runs((0, 1, 2)) == [(0, 0, 3)]
    assert train_data._channel_runs((3, 0, 1, 7)) == [(0, 3, 1), (1, 0, 2), (3, 7, 1)]


class _Draws(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = torch.utils.data.get_worker_info()
        return torch.tensor([i, info.id if info else -1, np.random.randint(1 << 30),
                             int(torch.randint(1 << 30, ()))])


def test_make_loader_is_deterministic_in_order_and_worker_seeds():
    def run(seed):
        return torch.cat(list(make_loader(_Draws(), 2, True, 2, seed)))

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert sorted(a[:, 0].tolist()) == list(range(8))
    assert not torch.equal(a[:, 0], c[:, 0]) or not torch.equal(a[:, 2:], c[:, 2:])
    by_worker = {w: set(a[a[:, 1] == w, 2].tolist()) for w in (0, 1)}
    assert by_worker[0].isdisjoint(by_worker[1])  # workers draw from different seeds


# ------------------------------------------------------------------------- augment

def coords_image(b, c, h, w):
    """value = 1000 y + x at pixel (y, x) of every channel."""
    y = torch.arange(h, dtype=torch.float32)[:, None]
    x = torch.arange(w, dtype=torch.float32)[None, :]
    return (1000 * y + x).expand(b, c, h, w).clone()


def test_crop_offsets_by_hand():
    assert A.crop_offsets(240, 240, 224) == ((0, 0), (0, 16), (16, 0), (16, 16), (8, 8))
    assert A.crop_offsets(10, 13, 7) == ((0, 0), (0, 6), (3, 0), (3, 6), (1, 3))
    with pytest.raises(ValueError):
        A.crop_offsets(100, 100, 101)


def test_random_crop_5_lands_on_the_four_corners_and_the_centre():
    img = coords_image(40, 3, 240, 240)
    clip = img[:, :, None].expand(40, 3, 2, 240, 240)  # (B, C, T, H, W) STCAM clip
    lm = torch.tensor([[[100.0, 50.0]]]).expand(40, 1, 2)
    batch = {"x": clip, "landmarks": lm, "label": torch.arange(40)}
    out = A.random_crop_5(batch, 224, torch.Generator().manual_seed(0))
    assert out["x"].shape == (40, 3, 2, 224, 224) and torch.equal(out["label"], torch.arange(40))
    corners = {(0, 0), (0, 16), (16, 0), (16, 16), (8, 8)}
    seen = set()
    for i in range(40):
        y0, x0 = divmod(int(out["x"][i, 0, 0, 0, 0]), 1000)
        assert (y0, x0) in corners
        seen.add((y0, x0))
        assert torch.equal(out["x"][i], clip[i, ..., y0:y0 + 224, x0:x0 + 224])
        assert out["landmarks"][i, 0].tolist() == [100.0 - x0, 50.0 - y0]
    assert seen == corners
    c = A.center_crop(img, 224)
    assert c.shape == (40, 3, 224, 224) and torch.all(c[:, :, 0, 0] == 8 * 1000 + 8)


def normal_batch():
    """(2, 8, 6, 6) maps with Nx = j/8-steps per column on the face, face = columns 1..5."""
    g = torch.Generator().manual_seed(1)
    maps = torch.randint(0, 9, (2, 8, 6, 6), generator=g).float() / 8  # exact in binary
    valid = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    valid[..., 0] = False
    maps = maps * valid
    mask = torch.randint(0, 5, (2, 3, 3), generator=g).float() / 4
    return {"maps": maps, "valid": valid, "mask56": mask, "label": torch.tensor([3, 4])}


def test_hflip_negates_nx_exactly_moves_masks_and_twice_is_identity():
    b = normal_batch()
    f = A.hflip(b, torch.Generator().manual_seed(0), p=1.0, normal_x_channels={"maps": 0})
    m, v = b["maps"], b["valid"]
    vf = v.flip(-1)
    assert torch.equal(f["valid"], vf)
    assert torch.equal(f["mask56"], b["mask56"].flip(-1))
    # Nx: mirrored and 1 - value on the face, background still 0
    want_nx = torch.where(vf[:, 0], 1 - m[:, 0].flip(-1), torch.zeros(()))
    assert torch.equal(f["maps"][:, 0], want_nx)
    assert torch.equal(f["maps"][:, 1:], m[:, 1:].flip(-1))  # Ny, Nz, D, C, RGB only mirrored
    back = A.hflip(f, torch.Generator().manual_seed(0), p=1.0, normal_x_channels={"maps": 0})
    assert all(torch.equal(back[k], b[k]) for k in b)
    # random p: twice with the same draws is the identity too
    h = A.hflip(A.hflip(b, torch.Generator().manual_seed(9), normal_x_channels={"maps": 0}),
                torch.Generator().manual_seed(9), normal_x_channels={"maps": 0})
    assert all(torch.equal(h[k], b[k]) for k in b)
    assert torch.equal(A.hflip(b["maps"], torch.Generator(), p=0.0), b["maps"])


def test_hflip_relabels_ibug_landmarks():
    lm = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(2)) * 47
    out = A.hflip({"x": torch.zeros(1, 1, 48, 48), "landmarks": lm}, torch.Generator(), p=1.0)["landmarks"]
    def mirrored(k):
        return torch.stack([47 - lm[0, k, 0], lm[0, k, 1]])

    # subject's right outer eye corner (36) is the old left one (45), mirrored: x -> 47 - x
    assert torch.equal(out[0, 36], mirrored(45)) and torch.equal(out[0, 45], mirrored(36))
    assert torch.equal(out[0, 48], mirrored(54))  # mouth corners swap
    assert torch.equal(out[0, 8], mirrored(8))  # the chin stays
    assert IBUG_MIRROR[36] == 45 and IBUG_MIRROR[8] == 8


def test_rotate_by_90_equals_rot90_and_moves_landmarks_masks_and_normals():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(3, 2, 16, 16, generator=g)
    for angle, k in ((90.0, 1), (-90.0, -1)):
        out = A.rotate(img, gen=torch.Generator(), angles=(angle,))
        assert torch.allclose(out, torch.rot90(img, k, dims=(-2, -1)), atol=1e-5)
    # a hot pixel and a landmark on it move together; a half-size mask moves the same way
    hot = torch.zeros(1, 1, 16, 16)
    hot[0, 0, 5, 3] = 1.0  # (y, x) = (5, 3)
    mask = torch.zeros(1, 8, 8)
    mask[0, 2, 1] = 1.0  # a half-size mask turns the same way
    out = A.rotate({"x": hot, "landmarks": torch.tensor([[[3.0, 5.0]]])}, gen=torch.Generator(), angles=(90.0,))
    y, x = divmod(int(out["x"][0, 0].argmax()), 16)
    assert (y, x) == (12, 5)  # CCW: (x, y) -> (y, 15 - x)
    assert torch.allclose(out["landmarks"][0, 0], torch.tensor([5.0, 12.0]), atol=1e-5)
    out = A.rotate({"x": hot, "m": mask}, gen=torch.Generator(), angles=(90.0,))
    assert divmod(int(out["m"][0].argmax()), 8) == (6, 2)  # (x, y) -> (y, 7 - x)
    with pytest.raises(ValueError, match="share one size"):
        A.rotate({"x": hot, "m": mask, "landmarks": torch.zeros(1, 1, 2)}, gen=torch.Generator())
    # a normal map facing +x everywhere faces +y after a 90 degree CCW turn
    maps = torch.zeros(1, 8, 8, 8)
    maps[:, 0], maps[:, 1], maps[:, 2] = 1.0, 0.5, 0.5
    out = A.rotate({"maps": maps, "valid": torch.ones(1, 1, 8, 8, dtype=torch.bool)}, gen=torch.Generator(),
                   angles=(90.0,), normal_channels={"maps": (0, 1)})
    assert torch.allclose(out["maps"][0, 0], torch.full((8, 8), 0.5), atol=1e-5)
    assert torch.allclose(out["maps"][0, 1], torch.ones(8, 8), atol=1e-5)
    assert out["valid"].all()


def test_rotate_small_angles_keep_the_centre_and_skip_undrawn_samples():
    img = coords_image(4, 1, 9, 9)
    out = A.rotate(img, gen=torch.Generator().manual_seed(0), angles=(15.0,))
    assert torch.allclose(out[:, 0, 4, 4], img[:, 0, 4, 4])  # the centre pixel is fixed
    a = math.radians(15.0)
    # pixel (y, x) = (4, 8) of the output samples the input at (4 + 4 sin a, 4 + 4 cos a)
    want = 1000 * (4 + 4 * math.sin(a)) + 4 + 4 * math.cos(a)
    assert out[0, 0, 4, 8].item() == pytest.approx(want, rel=1e-4)
    assert torch.equal(A.rotate(img, gen=torch.Generator(), p=0.0), img)


def test_augment_for_follows_the_papers():
    gen = torch.Generator().manual_seed(0)
    clip = {"x": torch.rand(2, 3, 7, 240, 240), "label": torch.tensor([0, 1])}
    st = A.augment_for("stcam")
    assert st(clip, gen)["x"].shape == (2, 3, 7, 224, 224)
    ev = st(clip, gen, train=False)["x"]
    assert torch.equal(ev, clip["x"][..., 8:232, 8:232])
    ws = A.augment_for("ws_lgan")
    batch = {"x": torch.rand(14, 1, 48, 48), "landmarks": torch.rand(14, 68, 2) * 47}
    assert ws(batch, gen)["x"].shape == (14, 1, 48, 48)
    assert ws(batch, gen, train=False) is batch
    for name in ("amdfn", "ffnet_m", "hacn"):
        assert A.augment_for(name)(batch, gen) is batch
    with pytest.raises(ValueError, match="no augmentation"):
        A.augment_for("resnet")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_augment_runs_on_the_gpu_with_a_cpu_generator():
    b = {k: v.cuda() for k, v in normal_batch().items()}
    cpu = A.hflip(normal_batch(), torch.Generator().manual_seed(4), normal_x_channels={"maps": 0})
    gpu = A.hflip(b, torch.Generator().manual_seed(4), normal_x_channels={"maps": 0})
    assert all(torch.equal(cpu[k], gpu[k].cpu()) for k in cpu)
    r = A.rotate(b, gen=torch.Generator().manual_seed(4), normal_channels={"maps": (0, 1)})
    assert r["maps"].is_cuda
    c = A.random_crop_5({"x": torch.rand(4, 3, 7, 240, 240, device="cuda")}, 224, torch.Generator())
    assert c["x"].shape == (4, 3, 7, 224, 224) and c["x"].is_cuda


class BareShard(train_data._Shard):
    """The row reader of one HDF5 file without a store index around it."""

    def __init__(self, h5):
        self.h5, self.path, self._datasets, self._whole_row_chunks, self._row_shapes = h5, h5.filename, {}, {}, {}
        with open(h5.filename, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.bytes = np.frombuffer(self._map, np.uint8)


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("dtype", ["float32", "bool", "uint8", "int64"])
def test_row_read_as_a_raw_chunk_equals_h5py_indexing(tmp_path, compression, dtype):
    """_Shard.row copies unfiltered one-row chunks as raw bytes: the values must be
    exactly what h5py's own indexing returns; a layout it cannot read that way (a filter:
    gzip, shuffle, checksum; several rows per chunk) falls back to indexing."""
    from train.data import _one_row_per_chunk

    rng = np.random.default_rng(0)
    data = (rng.random((5, 3, 4, 6)) * 200).astype(dtype)
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("one", data=data, chunks=(1, 3, 4, 6), compression=compression)
        h5.create_dataset("shuffled", data=data, chunks=(1, 3, 4, 6), compression="gzip", shuffle=True)
        h5.create_dataset("two_rows", data=data, chunks=(2, 3, 4, 6))
        h5.create_dataset("fletcher", data=data, chunks=(1, 3, 4, 6), fletcher32=True)
    with h5py.File(path, "r") as h5:
        assert (_one_row_per_chunk(h5["one"]) is None) == (compression == "gzip")
        assert _one_row_per_chunk(h5["shuffled"]) is None
        assert _one_row_per_chunk(h5["two_rows"]) is None
        assert _one_row_per_chunk(h5["fletcher"]) is None

    with h5py.File(path, "r") as h5:
        shard = BareShard(h5)
        for name in ("one", "shuffled", "two_rows", "fletcher"):
            for i in range(5):
                got = shard.row(name, i)
                assert got.dtype == data.dtype and got.flags.writeable
                np.testing.assert_array_equal(got, data[i])
                # planes 1..2 of the row into a slot of a bigger array, as a batch reads them
                batch = np.zeros((2, 4, 4, 6), data.dtype)
                shard.read_into(name, i, batch[1, 1:3], start=1)
                np.testing.assert_array_equal(batch[1, 1:3], data[i, 1:3])
                assert not batch[0].any() and not batch[1, [0, 3]].any()
        with pytest.raises(ValueError, match="not in"):
            shard.read_into("one", 0, np.zeros((2, 4, 6), data.dtype), start=2)
        if dtype == "float32":  # NaN checks: a raw row once (then remembered), else every read
            plan = shard._whole_row_chunks["one"]
            shard.read_into("one", 1, np.empty((3, 4, 6), data.dtype), key="k1")
            assert (plan is None) or (plan.finite[1] and not plan.finite[0])
        if compression is None:  # a chunk ending past the end of the file is never read
            plan = shard._whole_row_chunks["one"]
            shard.bytes = shard.bytes[:int(plan.offsets[4]) + 5]
            with pytest.raises(SchemaError, match="truncated"):
                shard.row("one", 4)
        shard.close()


def test_persistent_workers_give_the_same_batches_and_resume_across_settings(stores):
    """Persistent workers (train stage, map datasets) shuffle exactly as re-created ones,
    and a run whose loader generators are restored after epoch 2 (as train.loop resumes)
    gives the uninterrupted epoch 3, whichever setting each side used."""
    from train.loop import _loader_generators

    ds = MapsDataset(stores["maps"], LABELLED)

    def epoch(loader):
        return [b["label"].tolist() for b in loader]

    def loader(persistent):
        return make_loader(ds, 3, True, 2 if persistent else 0, 7, persistent_workers=persistent)

    runs = {}
    for persistent in (True, False):
        ld = loader(persistent)
        runs[persistent] = [epoch(ld) for _ in range(3)]
    assert runs[True] == runs[False] and runs[True][0] != runs[True][1]
    for before, after in ((True, False), (False, True), (True, True)):
        first = loader(before)
        epoch(first), epoch(first)
        saved = [g.get_state() for g in _loader_generators(first)]
        again = loader(after)
        for g, state in zip(_loader_generators(again), saved):
            g.set_state(state)
        assert epoch(again) == runs[True][2], (before, after)
