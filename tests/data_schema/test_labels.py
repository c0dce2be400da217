from data_schema.labels import (AFEW, BOSPHORUS, BU3DFE, CKPLUS, FACESCAPE16, FACESCAPE20, LABEL_MAPS,
                                MMI, OULU, UNLABELLED, label_map)


def test_ckplus_codes_are_the_published_ones():
    assert CKPLUS.classes == ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
    assert [CKPLUS.label_of(str(i)) for i in range(8)] == list(range(8))
    assert CKPLUS.label_of("8") == UNLABELLED


def test_facescape16_is_amdfn_subset():
    assert len(FACESCAPE20.classes) == 20 and len(FACESCAPE16.classes) == 16
    assert set(FACESCAPE20.classes) - set(FACESCAPE16.classes) == {"chin_raiser", "grin", "cheek_blowing", "brow_lower"}
    # AMDFN Fig. 5 order is the FaceScape order with the four removed
    assert FACESCAPE16.classes[:4] == ("neutral", "smile", "mouth_stretch", "anger")
    assert label_map("facescape") is FACESCAPE20


def test_dataset_codes():
    assert BOSPHORUS.class_name(BOSPHORUS.label_of("HAPPY")) == "happy"
    assert BOSPHORUS.class_name(BOSPHORUS.label_of("NEUTRAL")) == "neutral"
    assert BOSPHORUS.label_of("LFAU_12") == UNLABELLED
    assert BU3DFE.class_name(BU3DFE.label_of("SU")) == "surprise"
    assert OULU.class_name(OULU.label_of("Happiness")) == "happy"
    assert MMI.class_name(MMI.label_of("4")) == "happy"  # MMI metatag 4 = happiness
    assert AFEW.n_classes == 7 and AFEW.class_name(AFEW.label_of("Neutral")) == "neutral"


def test_every_code_maps_inside_its_classes():
    for m in LABEL_MAPS.values():
        assert all(0 <= v < m.n_classes for v in m.codes.values()), m.name
        assert set(m.codes.values()) == set(range(m.n_classes)), f"{m.name}: a class no code reaches"
