import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from data_schema.errors import SchemaError
from data_schema.schemas import RAW_FRAMES, RAW_MESH
from data_schema.store import (INDEX, ItemMeta, ItemRecord, ShardEntry, Store, read_failures, write_failures,
                               write_index, write_shard)

ROOT = Path(__file__).resolve().parents[2]


def meta(key, label=3):
    return ItemMeta(key, "ckplus", "S005", "001", str(label), label, f"raw/{key}", "ab" * 32, "ckplus")


def frames_record(key, n, h=4, w=6, value=7):
    rng = np.random.default_rng(int.from_bytes(key.encode(), "little"))
    return ItemRecord(meta(key), {
        "frames": np.full((n, h, w, 3), value, np.uint8),
        "frame_names": np.array([f"{key}_{i}.png" for i in range(n)], dtype=object),
        "landmarks68": rng.normal(size=(n, 68, 2)).astype(np.float32),
        "has_landmarks": np.arange(n) % 2 == 0,
        "fps": np.float64(30.0),
    })


def make_store(root, records_by_shard):
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, recs in records_by_shard.items():
        digest = write_shard(root / name, RAW_FRAMES, recs, {"p": 1}, "test")
        entries.append(ShardEntry(name, digest, tuple(r.meta.key for r in recs)))
    write_index(root, RAW_FRAMES, {"p": 1}, "test", entries)
    return Store(root, "raw_frames")


def test_round_trip_ragged_and_per_item(tmp_path):
    a, b = frames_record("a", 3), frames_record("b", 2, value=9)
    store = make_store(tmp_path / "s", {"s1.h5": [a, b]})
    assert store.keys == ["a", "b"]
    for rec in (a, b):
        m, arrays = store.read(rec.meta.key)
        assert m == rec.meta
        for name, want in rec.arrays.items():
            got = arrays[name]
            if want.dtype == object:
                assert list(got) == list(want)
            else:
                np.testing.assert_array_equal(got, want)
                assert got.dtype == want.dtype


def test_layout_is_readable_with_plain_h5py(tmp_path):
    make_store(tmp_path / "s", {"s1.h5": [frames_record("a", 3), frames_record("b", 2)]})
    with h5py.File(tmp_path / "s" / "s1.h5", "r") as h5:
        assert h5.attrs["schema"] == "raw_frames" and h5.attrs["schema_version"] == 1
        assert json.loads(h5.attrs["params"]) == {"p": 1}
        np.testing.assert_array_equal(h5["offsets/frames"][()], [0, 3, 5])
        assert h5["frames"].shape == (5, 4, 6, 3)
        assert h5["frames"].chunks == (1, 4, 6, 3)  # one frame per chunk
        assert [k.decode() for k in h5["ids/key"][()]] == ["a", "b"]


def test_identical_bytes_on_rerun_and_in_another_process(tmp_path):
    recs = [frames_record("a", 3), frames_record("b", 2)]
    d1 = write_shard(tmp_path / "one.h5", RAW_FRAMES, recs, {"p": 1}, "test")
    d2 = write_shard(tmp_path / "two.h5", RAW_FRAMES, recs, {"p": 1}, "test")
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()
    assert d1 == d2
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tests.data_schema.test_store import frames_record\n"
        "from data_schema.store import write_shard; from data_schema.schemas import RAW_FRAMES\n"
        "print(write_shard(%r, RAW_FRAMES, [frames_record('a', 3), frames_record('b', 2)], {'p': 1}, 'test'))"
    ) % (str(ROOT), str(tmp_path / "three.h5"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == d1
    assert (tmp_path / "three.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()


def test_nan_and_wrong_shapes_are_refused_before_anything_lands(tmp_path):
    bad = frames_record("a", 2)
    bad.arrays["landmarks68"][0, 0, 0] = np.nan
    with pytest.raises(SchemaError, match="NaN or inf"):
        write_shard(tmp_path / "x.h5", RAW_FRAMES, [bad], {}, "test")
    assert not list(tmp_path.iterdir())
    a, b = frames_record("a", 2, h=4), frames_record("b", 2, h=5)
    with pytest.raises(SchemaError, match="dim H=5 differs"):
        write_shard(tmp_path / "x.h5", RAW_FRAMES, [a, b], {}, "test")
    rec = frames_record("a", 2)
    del rec.arrays["fps"]
    with pytest.raises(SchemaError, match="missing"):
        write_shard(tmp_path / "x.h5", RAW_FRAMES, [rec], {}, "test")
    assert not list(tmp_path.iterdir())


def test_reader_validates_schema_name_version_and_content(tmp_path):
    root = tmp_path / "s"
    make_store(root, {"s1.h5": [frames_record("a", 2)]})
    with pytest.raises(SchemaError, match="expected 'raw_mesh'"):
        Store(root, "raw_mesh")
    idx = json.loads((root / INDEX).read_text())
    idx["schema_version"] = 99
    (root / INDEX).write_text(json.dumps(idx))
    with pytest.raises(SchemaError, match="version 99"):
        Store(root)
    idx["schema_version"] = 1
    (root / INDEX).write_text(json.dumps(idx))
    with open(root / "s1.h5", "r+b") as fh:  # flip one byte inside the shard
        fh.seek(-10, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-10, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SchemaError, match="differs from the index"):
        Store(root)
    (root / "s1.h5").unlink()
    with pytest.raises(SchemaError, match="missing"):
        Store(root)
    with pytest.raises(SchemaError, match="not a store"):
        Store(tmp_path / "nothing")


def test_stale_shards_and_tmp_leftovers_removed_by_index(tmp_path):
    root = tmp_path / "s"
    make_store(root, {"s1.h5": [frames_record("a", 2)], "s2.h5": [frames_record("b", 2)]})
    (root / ".s3.h5.tmp-123").write_bytes(b"half")
    make_store(root, {"s1.h5": [frames_record("a", 2)]})
    assert sorted(p.name for p in root.iterdir()) == ["index.json", "s1.h5"]


def test_failures_manifest_sorted_round_trip(tmp_path):
    fs = [{"item": "b", "stage": "ingest", "error": "InputError", "message": "m2"},
          {"item": "a", "stage": "ingest", "error": "InputError", "message": "m1"}]
    write_failures(tmp_path, fs)
    assert [f["item"] for f in read_failures(tmp_path)] == ["a", "b"]


KILL_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from data_schema.store import ItemMeta, ItemRecord, write_shard
from data_schema.schemas import RAW_FRAMES
n = 400
rec = ItemRecord(ItemMeta("big", "x", "s", "", "", -1, "", "", ""), {
    "frames": np.random.default_rng(0).integers(0, 255, (n, 240, 320, 3), dtype=np.uint8),
    "frame_names": np.array([str(i) for i in range(n)], dtype=object),
    "landmarks68": np.zeros((n, 68, 2), np.float32), "has_landmarks": np.zeros(n, bool),
    "fps": np.float64(25)})
print("start", flush=True)
write_shard(sys.argv[2], RAW_FRAMES, [rec], {}, "test")
print("done", flush=True)
"""


def test_writer_killed_mid_shard_leaves_no_readable_partial_shard(tmp_path):
    target = tmp_path / "big.h5"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(ROOT), str(target)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.time() + 30
    while time.time() < deadline and not list(tmp_path.glob(".big.h5.tmp-*")):
        time.sleep(0.01)
    time.sleep(0.3)  # well inside the (multi-second) compression of 400 random frames
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists(), "a killed writer must never leave the final shard name"
    assert list(tmp_path.glob(".big.h5.tmp-*")), "the partial data stays under the temporary name"
    write_index(tmp_path, RAW_FRAMES, {}, "test", [])  # the next run cleans the leftover
    assert not list(tmp_path.glob(".big.h5.tmp-*"))
    assert len(Store(tmp_path)) == 0


@pytest.mark.parametrize("dtype, row", [("uint8", (240, 240, 3)), ("float32", (8, 40, 40)),
                                        ("float64", (60, 60)), ("bool", (150, 150))])
def test_chunks_compressed_in_threads_are_the_bytes_hdf5_filters_write(tmp_path, monkeypatch, dtype, row):
    """The thread-pool path (shuffle + zlib by hand, raw chunk writes) must give the same
    file, byte for byte, as h5py's own shuffle + deflate filters."""
    import data_schema.store as store
    from data_schema.schemas import DatasetSpec

    rng = np.random.default_rng(1)
    data = (rng.random((12,) + row) > 0.5 if dtype == "bool"
            else (rng.normal(size=(12,) + row) * 50).astype(dtype))
    spec = DatasetSpec("x", dtype, row, False, 1, "gzip", "", "")
    assert store._compress_in_threads(spec, data, 1) or (os.cpu_count() or 1) == 1
    files = []
    for threads in (True, False):
        monkeypatch.setattr(store, "PARALLEL_MIN_CHUNKS", 4 if threads else 10 ** 9)
        path = tmp_path / f"{threads}.h5"
        with h5py.File(path, "w", libver=store.LIBVER) as h5:
            store._create(h5, spec, data, row)
        files.append(path.read_bytes())
        with h5py.File(path) as h5:
            np.testing.assert_array_equal(h5["x"][...], data)
    assert files[0] == files[1]
