"""Readers of the datasets the original HANet code reads (Mapillary v1.2, GTAV, CamVid,
KITTI, Cityscapes cv splits and coarse extra), on tiny fake trees in the real layouts.

The expected values are written out from the original's loaders (datasets/*.py of
shachoi/HANet), not computed from this package's tables.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from hanet.data import BadFileError, CityscapesDataset, DatasetNotFoundError, build_dataset
from hanet.data.fake_layouts import (CITYSCAPES_TRAIN_CITIES, CITYSCAPES_VAL_CITIES, main, make_fake_camvid,
                                     make_fake_cityscapes, make_fake_gtav, make_fake_kitti, make_fake_mapillary)


def _raw(path):
    return np.array(Image.open(path))


def _check_mapping(ds, expected: dict[int, int], read=_raw):
    """Every pixel whose raw value is a key of ``expected`` loads as its value, and
    every key occurs in the files."""
    seen = set()
    for i in range(len(ds)):
        raw, label = read(ds.pairs[i].label), ds[i]["label"].numpy()
        for value, train_id in expected.items():
            where = np.all(raw == value, axis=-1) if raw.ndim == 3 else raw == value
            if where.any():
                seen.add(value)
                assert (label[where] == train_id).all(), (value, np.unique(label[where]))
    assert seen == set(expected), f"values not in the fake labels: {set(expected) - seen}"


def _write_label(path, values, mode="L"):
    arr = np.array(values, dtype=np.uint8)
    im = Image.open(path)
    full = np.resize(arr, (im.height, im.width))
    out = Image.fromarray(full)
    if mode == "P":
        out = out.convert("P")
        out.putpalette(im.getpalette())
    out.save(path)


# -- Mapillary Vistas v1.2 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mapillary(tmp_path_factory):
    return make_fake_mapillary(tmp_path_factory.mktemp("mapillary"), train=3, val=2, test=1, size=(8, 12))


def test_mapillary_ids_as_the_original(mapillary):
    ds = build_dataset("mapillary", mapillary, "train")
    assert len(ds) == 3 and ds.classes.num_classes == 65
    assert all(p.image.parent == mapillary / "training" / "images" and p.image.suffix == ".jpg" for p in ds.pairs)
    assert all(p.label == mapillary / "training" / "labels" / f"{p.name}.png" for p in ds.pairs)
    assert Image.open(ds.pairs[0].label).mode == "P"  # v1.2 labels are palette PNGs of ids
    # The original's id map is the identity on 0..64; id 65 (Unlabeled) is its ignore label.
    _check_mapping(ds, {0: 0, 13: 13, 27: 27, 55: 55, 64: 64, 65: 255})
    assert ds.classes.names[13] == "Road" and ds.classes.names[55] == "Car" and ds.classes.names[64] == "Ego Vehicle"
    assert ds.classes.palette[13] == (128, 64, 128) and ds.classes.palette[5] == (90, 120, 150)
    assert len(build_dataset("mapillary", mapillary, "val")) == 2
    test = build_dataset("mapillary", mapillary, "test")
    assert len(test) == 1 and (test[0]["label"] == 255).all()


def test_mapillary_bad_labels_config_and_pairs(mapillary, tmp_path):
    root = shutil.copytree(mapillary, tmp_path / "m")
    ds = build_dataset("mapillary", root, "val")
    _write_label(ds.pairs[0].label, [0, 66, 13], mode="P")  # 66 is no v1.2 id
    with pytest.raises(BadFileError, match=r"\[66\]") as err:
        ds[0]
    assert err.value.path == str(ds.pairs[0].label)
    # A v2.0 config (124 labels) next to the data: its ids would be misread as v1.2's.
    config = json.loads((root / "config.json").read_text())
    config["labels"] = config["labels"] * 2
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadFileError, match="v1.2"):
        build_dataset("mapillary", root, "train")
    (root / "config.json").unlink()
    build_dataset("mapillary", root, "train")  # the table is built in: the config is only checked
    next((root / "training" / "labels").iterdir()).unlink()
    with pytest.raises(DatasetNotFoundError, match="1 image"):
        build_dataset("mapillary", root, "train")


def test_mapillary_v20_download_layout(mapillary, tmp_path):
    root = tmp_path / "vistas2"
    for folder in ("training", "validation"):
        shutil.copytree(mapillary / folder / "images", root / folder / "images")
        shutil.copytree(mapillary / folder / "labels", root / folder / "v1.2" / "labels")
    shutil.copy(mapillary / "config.json", root / "config_v1.2.json")
    ds = build_dataset("mapillary", root, "val")
    assert len(ds) == 2 and ds.pairs[0].label.parent == root / "validation" / "v1.2" / "labels"


# -- GTAV --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gtav(tmp_path_factory):
    folders = {"train": ("01", "02", "03", "04", "05"), "val": ("06",)}
    return make_fake_gtav(tmp_path_factory.mktemp("gtav"), folders=folders, size=(8, 12))


def _rgb(path):
    return np.array(Image.open(path).convert("RGB"))


def test_gtav_colours_as_the_original(gtav):
    ds = build_dataset("gtav", gtav, "train")
    assert len(ds) == 5 and ds.pairs[0].label == gtav / "labels" / "train" / "01" / "00001.png"
    assert Image.open(ds.pairs[0].label).mode == "P"
    # Colour -> train id as the original's color2trainId; other colours are ignored.
    _check_mapping(ds, {(128, 64, 128): 0, (244, 35, 232): 1, (70, 70, 70): 2, (153, 153, 153): 5,
                        (0, 0, 142): 13, (119, 11, 32): 18, (250, 170, 160): 255, (111, 74, 0): 255,
                        (0, 0, 0): 255}, read=_rgb)
    # Index 18 ('polegroup', an ignored id) has pole's colour in GTAV's palette: the
    # original reads colours, so those pixels are poles (5), not ignored.
    raw, label = _raw(ds.pairs[0].label), ds[0]["label"].numpy()
    assert (raw == 18).any() and (label[raw == 18] == 5).all()


def test_gtav_cv_splits_and_grey_labels(gtav, tmp_path):
    def folders(split, cv):
        return sorted({p.image.parent.name for p in build_dataset("gtav", gtav, split, cv_split=cv).pairs})

    # Groups [val/06, train/01..05], 6 in all; 1 val group at offsets 0, 2, 4.
    assert folders("val", 0) == ["06"] and folders("train", 0) == ["01", "02", "03", "04", "05"]
    assert folders("val", 1) == ["02"] and folders("train", 1) == ["01", "03", "04", "05", "06"]
    assert folders("val", 2) == ["04"] and folders("train", 2) == ["01", "02", "03", "05", "06"]
    assert len(build_dataset("gtav", gtav, "trainval", cv_split=2)) == 6
    root = shutil.copytree(gtav, tmp_path / "g")
    label = root / "labels" / "val" / "06" / "00006.png"
    Image.open(label).convert("L").save(label)  # an id image is not a GTAV label
    with pytest.raises(BadFileError, match="colour"):
        build_dataset("gtav", root, "val")[0]


# -- CamVid ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_fake_camvid(tmp_path_factory.mktemp("camvid"), train=3, val=2, test=2, size=(8, 12))


def test_camvid_ids_as_the_original(camvid, tmp_path):
    ds = build_dataset("camvid", camvid, "trainval")  # the original's CamVid training set
    assert len(ds) == 5 and ds.classes.num_classes == 11
    assert ds.pairs[0].label == camvid / "trainannot" / "0001TP_000030.png"
    assert [p.image.parent.name for p in ds.pairs] == ["train"] * 3 + ["val"] * 2
    # 11 classes, train id = id; 11 (Void) is the original's ignore label.
    _check_mapping(ds, {0: 0, 3: 3, 8: 8, 10: 10, 11: 255})
    assert ds.classes.names[0] == "Sky" and ds.classes.names[10] == "Bicyclist"
    assert ds.classes.palette[3] == (128, 64, 128)
    assert len(build_dataset("camvid", camvid, "test")) == 2  # ... and its validation set
    root = shutil.copytree(camvid, tmp_path / "c")
    bad = build_dataset("camvid", root, "val")
    _write_label(bad.pairs[1].label, [3, 12])
    with pytest.raises(BadFileError, match=r"\[12\]"):
        bad[1]


# -- KITTI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    return make_fake_kitti(tmp_path_factory.mktemp("kitti"), size=(4, 6))


def test_kitti_splits_as_the_original(kitti):
    def names(split, cv):
        return [p.name for p in build_dataset("kitti", kitti, split, cv_split=cv).pairs]

    val0 = names("val", 0)
    assert len(val0) == 21 and val0[:4] == ["000001_10", "000005_10", "000011_10", "000029_10"]
    assert val0[-1] == "000198_10"
    assert names("val", 1)[:3] == ["000000_10", "000012_10", "000024_10"]
    assert names("val", 2)[:3] == ["000003_10", "000006_10", "000013_10"]
    assert "000121_10" in names("val", 1) and "000121_10" in names("val", 2)
    train0 = names("train", 0)
    assert len(train0) == 179 and train0[:3] == ["000000_10", "000002_10", "000003_10"]
    assert names("trainval", 0) == train0 + val0


def test_kitti_ids_and_val_size_as_the_original(kitti, tmp_path):
    ds = build_dataset("kitti", kitti, "train")
    sub = type(ds)(kitti, "train")
    sub.pairs = sub.pairs[:40]
    # Cityscapes labelIds -> train ids (label2trainid).
    _check_mapping(sub, {0: 255, 1: 255, 7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 24: 11, 26: 13, 33: 18})
    assert ds[0]["image"].size == (6, 4)
    item = build_dataset("kitti", kitti, "val")[0]
    assert item["image"].size == (1242, 376) and tuple(item["label"].shape) == (376, 1242)
    root = shutil.copytree(kitti, tmp_path / "k")
    bad = build_dataset("kitti", root, "train")
    _write_label(bad.pairs[0].label, [7, 255])  # 255 is kept as ignore, as the original leaves it
    assert set(np.unique(bad[0]["label"].numpy())) == {0, 255}
    _write_label(bad.pairs[0].label, [7, 34])
    with pytest.raises(BadFileError, match=r"\[34\]"):
        bad[0]
    (root / "training" / "image_2" / "000199_10.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="199 .png images"):
        build_dataset("kitti", root, "train")


# -- Cityscapes: cv splits and coarse extra ----------------------------------------------------


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    return make_fake_cityscapes(tmp_path_factory.mktemp("cityscapes"), test_cities=("berlin", "bonn"),
                                extra_cities=("bamberg", "augsburg"), size=(4, 8))


def _cities(ds):
    return sorted({(p.image.parent.parent.name, p.image.parent.name) for p in ds.pairs})


def test_cityscapes_cv_splits_as_the_original(cityscapes):
    # All cities: [frankfurt, lindau, munster] + the 18 train cities sorted; 3 val
    # cities from offsets 0, 21 // 3 = 7, 42 // 3 = 14.
    expected_val = {0: [("val", "frankfurt"), ("val", "lindau"), ("val", "munster")],
                    1: [("train", "darmstadt"), ("train", "dusseldorf"), ("train", "erfurt")],
                    2: [("train", "monchengladbach"), ("train", "strasbourg"), ("train", "stuttgart")]}
    every = {("train", c) for c in CITYSCAPES_TRAIN_CITIES} | {("val", c) for c in CITYSCAPES_VAL_CITIES}
    for cv, val in expected_val.items():
        val_set = build_dataset("cityscapes", cityscapes, "val", cv_split=cv)
        train_set = build_dataset("cityscapes", cityscapes, "train", cv_split=cv)
        assert _cities(val_set) == val, cv
        assert _cities(train_set) == sorted(every - set(val)), cv
        assert len(train_set) == 18 and len(build_dataset("cityscapes", cityscapes, "trainval", cv_split=cv)) == 21
        label = val_set.pairs[0].label
        assert label.parent.parent.parent.name == "gtFine" and label.parent.name == val[0][1]
    # The original's order for cv 1: the val cities first, then the train cities by name.
    order = [c for _, c in CityscapesDataset.cv_cities(cityscapes, 1)["train"]]
    assert order[:5] == ["frankfurt", "lindau", "munster", "aachen", "bochum"]
    assert _cities(build_dataset("cityscapes", cityscapes, "test", cv_split=2)) == [("test", "berlin"),
                                                                                    ("test", "bonn")]
    with pytest.raises(ValueError, match="cv_split"):
        build_dataset("cityscapes", cityscapes, "val", cv_split=3)
    with pytest.raises(ValueError, match="cv_split"):
        build_dataset("cityscapes", cityscapes, "train_extra", quality="coarse", cv_split=1)


def test_cityscapes_coarse_extra_as_the_original(cityscapes):
    ds = build_dataset("cityscapes", cityscapes, "train_extra", quality="coarse")
    # Every train_extra city (sorted), images of leftImg8bit_trainextra, labels of gtCoarse/gtCoarse.
    assert _cities(ds) == [("train_extra", "augsburg"), ("train_extra", "bamberg")]
    extra_images = cityscapes / "leftImg8bit_trainextra" / "leftImg8bit" / "train_extra"
    assert ds.pairs[0].image.parent == extra_images / "augsburg"
    assert ds.pairs[0].label == (cityscapes / "gtCoarse" / "gtCoarse" / "train_extra" / "augsburg"
                                 / "augsburg_000000_000019_gtCoarse_labelIds.png")
    _check_mapping(ds, {0: 255, 7: 0, 9: 255, 21: 8, 26: 13, 33: 18})


# -- errors and helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("name, layout", [
    ("mapillary", ["training/", "images/<key>.jpg", "labels/<key>.png", "validation/", "config.json"]),
    ("gtav", ["images/", "train/<folder>/<name>.png", "labels/", "colour labels"]),
    ("camvid", ["trainannot/<name>.png", "valannot/", "testannot/", "11 = void"]),
    ("kitti", ["training/", "image_2/<nnnnnn>_10.png", "semantic/<nnnnnn>_10.png", "200 images"]),
])
def test_wrong_root_names_the_expected_layout(tmp_path, name, layout):
    for root in (tmp_path / "nowhere", tmp_path):  # a missing root, and an empty one
        with pytest.raises(DatasetNotFoundError) as err:
            build_dataset(name, root, "train")
        msg = str(err.value)
        assert str(root) in msg
        for part in layout:
            assert part in msg, (name, part)


def test_cv_split_only_where_the_original_has_one(camvid):
    with pytest.raises(ValueError, match="cross-validation"):
        build_dataset("camvid", camvid, "train", cv_split=1)
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset("kitti", camvid, "test")


def test_fake_layout_command_line(tmp_path, capsys):
    assert main(["camvid", str(tmp_path / "cv"), "--size", "6", "8"]) == 0
    assert "camvid" in capsys.readouterr().out
    item = build_dataset("camvid", tmp_path / "cv", "train")[0]
    assert item["image"].size == (8, 6)


def test_training_config_passes_cv_split(cityscapes):
    from hanet.training.config import load_config
    from hanet.training.data import build_val_set

    cfg = load_config(None, [f"data.root={cityscapes}", "data.cv_split=2"])
    assert _cities(build_val_set(cfg)) == [("train", "monchengladbach"), ("train", "strasbourg"),
                                          ("train", "stuttgart")]
