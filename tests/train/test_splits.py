"""train.splits: subject-independent folds, the named protocols, the split manifest.

Truth: partition properties (every subject tested exactly once, train and test never
share a subject), hand-written fold membership for the ordered CK+ rule, the published CK+
fold sizes over the real labelled-subject list, hand-counted manifest contents of a store
written here."""
import dataclasses
import json
import random

import pytest

from data_schema.errors import InputError, SchemaError
from data_schema.schemas import get_schema
from data_schema.store import ItemRecord, ShardEntry, Store, write_index, write_shard
from tests.train.test_data import (MAP_KEYS, MAPS_ITEMS, make_aligned_store, make_maps_store, make_masks_store,
                                   seq_key)
from train.splits import (PROTOCOLS, Fold, ckplus_folds, fixed_split, fold_items, kfold_by_subject,
                          manifest_label_map, protocol_folds, read_manifest, repeated_kfold,
                          split_manifest, validation_split, write_manifest)

SUBJECTS = [f"bs{i:03d}" for i in range(23)]


def check_partition(folds, subjects, k):
    """Every subject in exactly one test fold; train = the others; nothing shared."""
    subjects = set(subjects)
    assert [f.index for f in folds] == list(range(k))
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == sorted(subjects)  # exactly once each
    for f in folds:
        assert set(f.train).isdisjoint(f.test)
        assert set(f.train) | set(f.test) == subjects
        assert list(f.train) == sorted(f.train) and list(f.test) == sorted(f.test)
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= 1


def test_kfold_partitions_subjects_and_is_deterministic():
    folds = kfold_by_subject(SUBJECTS, 5, seed=0)
    check_partition(folds, SUBJECTS, 5)
    assert sorted(len(f.test) for f in folds) == [4, 4, 5, 5, 5]
    shuffled = SUBJECTS[::-1] + SUBJECTS[:7]  # order and duplicates do not matter
    random.Random(1).shuffle(shuffled)
    assert kfold_by_subject(shuffled, 5, seed=0) == folds
    assert kfold_by_subject(SUBJECTS, 5, seed=1) != folds
    assert all(isinstance(f, Fold) and f.repeat == 0 for f in folds)


def test_repeated_kfold_draws_a_new_permutation_per_repeat():
    folds = repeated_kfold(SUBJECTS, 4, repeats=6, seed=3)
    assert len(folds) == 24
    for r in range(6):
        rep = [f for f in folds if f.repeat == r]
        check_partition(rep, SUBJECTS, 4)
    tests = {tuple(f.test for f in folds if f.repeat == r) for r in range(6)}
    assert len(tests) == 6  # every repeat is a different division
    assert folds[:4] == kfold_by_subject(SUBJECTS, 4, seed=3)
    assert repeated_kfold(SUBJECTS, 4, repeats=2, seed=3) == folds[:8]  # a repeat ignores the count


def test_ckplus_rule_by_hand():
    subjects = ["S010", "S005", "S022", "S011", "S130", "S034", "S052", "S026", "S999", "S071", "S014", "S080"]
    folds = ckplus_folds(subjects, k=3)
    # ascending: S005 S010 S011 S014 S022 S026 S034 S052 S071 S080 S130 S999; fold = pos mod 3
    assert folds[0].test == ("S005", "S014", "S034", "S080")
    assert folds[1].test == ("S010", "S022", "S052", "S130")
    assert folds[2].test == ("S011", "S026", "S071", "S999")
    check_partition(folds, subjects, 3)
    # natural order: ids compare by number
    assert [f.test for f in ckplus_folds(["S10", "S9", "S100", "S5"], k=4)] == [("S5",), ("S9",), ("S10",), ("S100",)]


# The 118 CK+ subjects with at least one labelled sequence (an Emotion/Sxxx/nnn/*_emotion.txt
# file), grouped by how many labelled sequences each has.  Counted from the public per-sequence
# listing Open-Debin/Emotion-FAN data/txt/CK+_10-fold_sample_IDascendorder_step10.txt
# (commit 19a1def5), the list behind the published fold sizes; when counted, that listing
# also gave 327 distinct sequences and the class totals of Lucey et al. 2010 (anger 45,
# contempt 18, disgust 59, fear 25, happy 69, sadness 28, surprise 83).
CKPLUS_LABELLED_SEQUENCES = {
    1: "005 028 029 083 101 105 110 112 122 139 147 148 149 151 154 155 156 157 158 160 895",
    2: "045 051 053 059 063 072 073 077 084 086 088 091 093 094 098 107 114 126 128 135 505 999",
    3: "010 022 034 035 037 044 052 054 056 057 058 060 061 064 069 070 076 078 079 080 081 082 "
       "085 089 090 092 096 097 099 100 102 106 108 109 111 113 115 116 117 119 127 133 134 137 "
       "501 502 503",
    4: "014 026 042 046 050 062 065 066 067 068 074 075 087 095 124 129 131 136 504 506",
    5: "032 055 071 125 130 132 138",
    6: "011",
}


def test_ckplus_fold_sizes_in_sequences_follow_from_the_subject_list():
    seqs = {f"S{n}": count for count, ids in CKPLUS_LABELLED_SEQUENCES.items() for n in ids.split()}
    assert len(seqs) == 118 and sum(seqs.values()) == 327  # Lucey et al. 2010
    # one item per sequence, in shuffled order: the folds depend only on the subject ids
    items = [s for s, n in seqs.items() for _ in range(n)]
    random.Random(0).shuffle(items)
    folds = ckplus_folds(items, k=10)
    check_partition(folds, seqs, 10)
    # REFERENCE.md / Emotion-FAN: labelled sequences per fold
    assert [sum(seqs[s] for s in f.test) for f in folds] == [33, 39, 40, 35, 30, 37, 29, 29, 33, 22]
    # the first and last folds as listed by Emotion-FAN (S501 sorts after S160, S895/S999 last)
    assert folds[0].test == ("S005", "S035", "S054", "S064", "S074", "S084", "S094", "S106", "S116",
                             "S130", "S147", "S501")
    assert folds[9].test == ("S034", "S053", "S063", "S073", "S083", "S093", "S105", "S115", "S129",
                             "S139", "S160")


def test_fixed_split_200_51():
    subjects = [f"{i}" for i in range(1, 252)]
    f = fixed_split(subjects, 200, seed=0)
    assert len(f.train) == 200 and len(f.test) == 51
    assert set(f.train).isdisjoint(f.test) and set(f.train) | set(f.test) == set(subjects)
    assert fixed_split(subjects[::-1], 200, seed=0) == f
    assert fixed_split(subjects, 200, seed=1) != f
    with pytest.raises(ValueError, match="no test subject"):
        fixed_split(subjects[:10], 10, seed=0)


def test_validation_comes_from_the_training_subjects_only():
    for f in kfold_by_subject(SUBJECTS, 5, seed=2):
        v = validation_split(f.train, 0.25, seed=4)
        assert set(v.val) <= set(f.train) and set(v.val).isdisjoint(f.test)
        assert set(v.train) | set(v.val) == set(f.train) and set(v.train).isdisjoint(v.val)
        assert len(v.val) == int(0.25 * len(f.train) + 0.5)
    assert len(validation_split([f"s{i}" for i in range(54)], 0.1, 0).val) == 5  # 5.4
    assert len(validation_split([f"s{i}" for i in range(55)], 0.1, 0).val) == 6  # 5.5 half up
    assert len(validation_split(["a", "b", "c"], 0.01, 0).val) == 1  # at least one
    assert validation_split(["a", "b"], 0.0, 0).val == ()
    assert validation_split(SUBJECTS, 0.2, 7) == validation_split(SUBJECTS[::-1], 0.2, 7)
    with pytest.raises(ValueError):
        validation_split(["a"], 0.5, 0)


def test_every_named_protocol_is_subject_independent():
    subjects = [f"P{i:03d}" for i in range(60)]
    expected = {"bosphorus10": (10, 1), "bu3dfe10xR": (10, 100), "ckplus10": (10, 1), "oulu10": (10, 1),
                "mmi10": (10, 1), "hacn5": (5, 1)}
    assert set(PROTOCOLS) == set(expected) | {"facescape200"}
    for name, (k, repeats) in expected.items():
        folds = protocol_folds(name, subjects, seed=0)
        assert len(folds) == k * repeats, name
        for r in range(repeats):
            check_partition([f for f in folds if f.repeat == r], subjects, k)
    assert protocol_folds("ckplus10", subjects, 0) == protocol_folds("ckplus10", subjects, 99)  # no seed
    fs = protocol_folds("facescape200", [str(i) for i in range(251)], 0)
    assert len(fs) == 1 and (len(fs[0].train), len(fs[0].test)) == (200, 51)
    assert len(protocol_folds("bosphorus10", subjects, 0, repeats=3)) == 30
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_folds("afew7", subjects, 0)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="cannot make 10"):
        kfold_by_subject(SUBJECTS[:5], 10, 0)
    with pytest.raises(ValueError, match="k must be >= 2"):
        kfold_by_subject(SUBJECTS, 1, 0)
    with pytest.raises(ValueError, match="no subjects"):
        ckplus_folds([], 10)
    with pytest.raises(TypeError, match="one string"):
        kfold_by_subject("bs000", 2, 0)


# ------------------------------------------------------------------------ manifest

@pytest.fixture(scope="module")
def maps_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("split_stores")
    return make_maps_store(root / "maps_clean"), make_masks_store(root / "masks")


def test_manifest_folds_hold_item_keys_of_disjoint_subjects(maps_stores, tmp_path):
    m = split_manifest(list(maps_stores), "bosphorus10", seed=0, k=2, val_fraction=0.5)
    # 4 Bosphorus subjects x (anger, disgust, fear) kept; per subject one neutral (not in
    # the 6 classes) and one unlabelled scan left out; 4 BU-3DFE items of another dataset
    assert m["subjects"] == ["bs000", "bs001", "bs002", "bs003"]
    assert m["excluded"] == {"class not in the protocol": 4, "other dataset": 4, "unlabelled": 4}
    assert m["classes"] == ["anger", "disgust", "fear", "happy", "sadness", "surprise"]
    assert manifest_label_map(m) == {0: 0, 1: 1, 2: 2}
    assert [s["schema"] for s in m["stores"]] == ["maps_clean", "masks"]
    subject_of = {k: it[1] for k, it in zip(MAP_KEYS, MAPS_ITEMS)}
    assert len(m["folds"]) == 2
    tested = []
    for f in m["folds"]:
        assert len(f["train_subjects"]) == 1 and len(f["val_subjects"]) == 1 and len(f["test_subjects"]) == 2
        for part in ("train", "val", "test"):
            assert {subject_of[k] for k in f[part]} == set(f[part + "_subjects"])
            assert len(f[part]) == 3 * len(f[part + "_subjects"])
        assert set(f["train"]).isdisjoint(f["test"]) and set(f["val"]).isdisjoint(f["test"])
        tested += f["test_subjects"]
    assert sorted(tested) == m["subjects"]
    assert fold_items(m, 1)["test"] == m["folds"][1]["test"]

    path = tmp_path / "split.json"
    write_manifest(path, m)
    first = path.read_bytes()
    assert read_manifest(path) == json.loads(json.dumps(m))
    write_manifest(path, split_manifest(list(maps_stores), "bosphorus10", seed=0, k=2, val_fraction=0.5))
    assert path.read_bytes() == first  # deterministic, byte for byte


def test_manifest_session_and_subject_filters(maps_stores):
    m = split_manifest(maps_stores[0], "bu3dfe10xR", seed=1, k=2, repeats=3, val_fraction=0.0)
    # BU-3DFE items: F0001 AN04 (kept), DI01 (intensity 01 not among the two highest),
    # F0002 HA03 (kept), NE00 (neutral)
    assert m["excluded"]["session not in the protocol"] == 1
    assert sorted(k for f in m["folds"][:2] for k in f["test"]) == sorted(
        [MAP_KEYS[20], MAP_KEYS[22]])
    assert len(m["folds"]) == 6 and m["params"]["repeats"] == 3
    m = split_manifest(maps_stores[0], "bosphorus10", seed=0, k=2, subjects=["bs001", "bs003"], val_fraction=0)
    assert m["subjects"] == ["bs001", "bs003"] and m["excluded"]["subject not selected"] == 6


def test_ckplus_manifest_orders_only_subjects_with_a_labelled_sequence(tmp_path):
    # S006 has only a sequence without an emotion file (label -1): it must not take a place
    # in the ascending order, or every later subject would shift fold (the published CK+
    # fold sizes count the 118 labelled subjects of 123)
    items = [("ckplus", "S005", 1, 2), ("ckplus", "S006", -1, 2), ("ckplus", "S010", 7, 2),
             ("ckplus", "S011", 3, 2), ("mmi", "S001", 0, 2)]
    m = split_manifest(make_aligned_store(tmp_path / "aligned", items), "ckplus10", 0, k=2, val_fraction=0)
    assert m["subjects"] == ["S005", "S010", "S011"]
    assert m["excluded"] == {"other dataset": 1, "unlabelled": 1}
    assert [f["test_subjects"] for f in m["folds"]] == [["S005", "S011"], ["S010"]]
    assert m["folds"][0]["test"] == [seq_key(*items[0]), seq_key(*items[3])]


def test_manifest_refuses_stores_that_disagree_and_bad_files(maps_stores, tmp_path):
    # a masks store claiming another subject for one item
    bad = tmp_path / "masks"
    bad.mkdir()
    src = Store(maps_stores[1])
    recs = [ItemRecord(dataclasses.replace(meta, subject="bs999") if meta.key == MAP_KEYS[0] else meta, arrays)
            for meta, arrays in src.iter_items()]
    digest = write_shard(bad / "all.h5", get_schema("masks"), recs, {}, "test")
    write_index(bad, get_schema("masks"), {}, "test", [ShardEntry("all.h5", digest, tuple(r.meta.key for r in recs))])
    with pytest.raises(SchemaError, match="subject/label/dataset"):
        split_manifest([maps_stores[0], bad], "bosphorus10", 0, k=2)
    with pytest.raises(ValueError, match="no usable item"):
        split_manifest(maps_stores[0], "mmi10", 0)

    m = split_manifest(maps_stores[0], "bosphorus10", 0, k=2, val_fraction=0)
    leaked = json.loads(json.dumps(m))
    leaked["folds"][0]["train"].append(leaked["folds"][0]["test"][0])
    path = tmp_path / "leak.json"
    path.write_text(json.dumps(leaked))
    with pytest.raises(InputError, match="train and test share items"):
        read_manifest(path)
    with pytest.raises(InputError, match="train and test share items"):
        write_manifest(tmp_path / "x.json", leaked)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not a JSON manifest"):
        read_manifest(path)
    path.write_text(json.dumps({**m, "version": 99}))
    with pytest.raises(InputError, match="not a fermaps-split-manifest v1"):
        read_manifest(path)
    with pytest.raises(InputError, match="no such manifest"):
        read_manifest(tmp_path / "absent.json")
