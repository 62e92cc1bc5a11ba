"""Our Cityscapes label table against cityscapesscripts' (the benchmark's reference)."""
from cityscapesscripts.helpers.labels import labels as reference

from hanet.data import CLASS_NAMES, LABEL_TO_TRAIN, PALETTE, TRAIN_TO_LABEL
from hanet.data.cityscapes_labels import LABELS


def test_every_cityscapes_label_row_equals_cityscapesscripts():
    assert len(LABELS) == len(reference) == 35
    for ours, ref in zip(LABELS, reference):
        assert (ours.name, ours.id, ours.trainId, ours.hasInstances, tuple(ours.color)) == \
            (ref.name, ref.id, ref.trainId, ref.hasInstances, tuple(ref.color)), ref.name


def test_derived_tables_literal():
    assert CLASS_NAMES[:3] == ("road", "sidewalk", "building") and CLASS_NAMES[18] == "bicycle"
    assert PALETTE[0] == (128, 64, 128) and PALETTE[18] == (119, 11, 32)
    assert LABEL_TO_TRAIN[7] == 0 and LABEL_TO_TRAIN[33] == 18 and LABEL_TO_TRAIN[9] == 255  # parking: ignored
    assert TRAIN_TO_LABEL[0] == 7 and TRAIN_TO_LABEL[16] == 31 and TRAIN_TO_LABEL[255] == 0
