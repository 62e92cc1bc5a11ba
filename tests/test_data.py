"""Datasets: Cityscapes in every accepted layout, BDD100K, plain folders, inference
images; label mapping; and the errors for missing, corrupt and mismatched files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hanet.data import (CITYSCAPES, CLASS_NAMES, LABEL_TO_TRAIN, PALETTE, TRAIN_TO_LABEL, BadFileError,
                        BDD100KDataset, CityscapesDataset, ClassTable, CorruptFileError, DatasetNotFoundError,
                        FolderDataset, ImageFolder, SizeMismatchError, build_dataset, eval_transforms,
                        load_class_table, train_to_label_ids, train_transforms)
from hanet.synthetic import make_synthetic_cityscapes

SIZE = (128, 256)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    return make_synthetic_cityscapes(tmp_path_factory.mktemp("cs"), train=4, val=2, test=2, size=SIZE, seed=11)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _expected_pos(h, w):
    rows = (torch.arange(h) * 1024 // h) // 8
    return rows[:, None].expand(h, w)


# -- label tables ------------------------------------------------------------------------------


def test_label_tables_match_cityscapesscripts_by_hand():
    # A few ids checked against the Cityscapes definition.
    for label_id, train_id in [(0, 255), (1, 255), (6, 255), (7, 0), (8, 1), (11, 2), (17, 5), (21, 8), (23, 10),
                               (24, 11), (26, 13), (31, 16), (33, 18), (9, 255), (29, 255), (34, 255), (200, 255)]:
        assert LABEL_TO_TRAIN[label_id] == train_id, label_id
    assert TRAIN_TO_LABEL[0] == 7 and TRAIN_TO_LABEL[13] == 26 and TRAIN_TO_LABEL[18] == 33
    assert TRAIN_TO_LABEL[255] == 0
    assert CLASS_NAMES[0] == "road" and CLASS_NAMES[10] == "sky" and CLASS_NAMES[18] == "bicycle"
    assert len(CLASS_NAMES) == len(PALETTE) == 19
    assert PALETTE[0] == (128, 64, 128) and PALETTE[13] == (0, 0, 142)
    for t in range(19):  # round trip
        assert LABEL_TO_TRAIN[TRAIN_TO_LABEL[t]] == t
    np.testing.assert_array_equal(train_to_label_ids(np.array([[0, 13, 255]])), [[7, 26, 0]])
    assert CITYSCAPES.num_classes == 19 and CITYSCAPES.ignore_index == 255


def test_class_table_checks():
    with pytest.raises(ValueError, match="palette"):
        ClassTable(names=("a", "b"), palette=((0, 0, 0),))
    with pytest.raises(ValueError, match="ignore_index"):
        ClassTable(names=("a", "b"), palette=((0, 0, 0), (1, 1, 1)), ignore_index=1)
    with pytest.raises(ValueError, match="maps to"):
        ClassTable(names=("a",), palette=((0, 0, 0),), id_to_train={3: 7})
    t = ClassTable(names=("a", "b"), palette=((0, 0, 0), (1, 1, 1)), id_to_train={10: 0, 20: 1})
    np.testing.assert_array_equal(t.to_train_ids(np.array([10, 20, 30])), [0, 1, 255])
    plain = ClassTable(names=("a", "b"), palette=((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ValueError, match=r"\[7\]"):
        plain.to_train_ids(np.array([0, 1, 7, 255]))
    assert plain.colorize(np.array([[1, 255]])).tolist() == [[[1, 1, 1], [0, 0, 0]]]


# -- Cityscapes --------------------------------------------------------------------------------


def _check_items(ds, root_images):
    assert len(ds) > 0
    for i in range(len(ds)):
        item = ds[i]
        path = item["path"]
        assert path.endswith(f"{item['name']}_leftImg8bit.png")
        assert str(root_images) in path
        label_path = ds.pairs[i].label
        assert label_path.name == f"{item['name']}_gtFine_labelIds.png"
        assert label_path.parent.name == ds.pairs[i].image.parent.name  # same city
        ids = np.asarray(Image.open(label_path))
        assert item["label"].dtype == torch.int64
        np.testing.assert_array_equal(item["label"].numpy(), LABEL_TO_TRAIN[ids])
        assert item["pos_h"].dtype == torch.int64
        assert torch.equal(item["pos_h"], _expected_pos(*SIZE))
        assert isinstance(item["image"], Image.Image) and item["image"].size == (SIZE[1], SIZE[0])


def test_cityscapes_flat_layout(flat):
    ds = CityscapesDataset(flat, "train")
    assert len(ds) == 4
    assert [p.name for p in ds.pairs] == sorted(p.name for p in ds.pairs)
    assert all(p.name.count("_") == 2 for p in ds.pairs)
    _check_items(ds, flat / "leftImg8bit" / "train")
    assert len(CityscapesDataset(flat, "val")) == 2
    tv = CityscapesDataset(flat, "trainval")
    assert len(tv) == 6 and {p.image.parts[-3] for p in tv.pairs} == {"train", "val"}


def test_cityscapes_nested_trainvaltest_layout(flat, tmp_path):
    root = tmp_path / "cityscapes"
    _copy(flat / "leftImg8bit", root / "leftImg8bit_trainvaltest" / "leftImg8bit")
    _copy(flat / "gtFine", root / "gtFine_trainvaltest" / "gtFine")
    ds = CityscapesDataset(root, "trainval")
    assert len(ds) == 6
    _check_items(ds, root / "leftImg8bit_trainvaltest")
    ref = CityscapesDataset(flat, "trainval")
    assert [p.name for p in ds.pairs] == [p.name for p in ref.pairs]


def test_cityscapes_test_split(flat, tmp_path):
    ds = CityscapesDataset(flat, "test")
    assert len(ds) == 2 and all(p.label is not None for p in ds.pairs)
    root = tmp_path / "nolabels"
    _copy(flat / "leftImg8bit", root / "leftImg8bit")
    item = CityscapesDataset(root, "test")[0]  # test labels are optional: all ignored
    assert (item["label"] == 255).all()
    with pytest.raises(DatasetNotFoundError, match="gtFine"):
        CityscapesDataset(root, "train")


def _make_coarse(flat, root, nested):
    images = root / "leftImg8bit_trainextra" / "leftImg8bit" / "train_extra"
    gt = root / "gtCoarse" / "gtCoarse" if nested else root / "gtCoarse"
    _copy(flat / "leftImg8bit" / "train", images)
    for src in (flat / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"):
        dst = gt / "train_extra" / src.parent.name / src.name.replace("gtFine", "gtCoarse")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)


@pytest.mark.parametrize("nested", [False, True])
def test_cityscapes_coarse_train_extra(flat, tmp_path, nested):
    root = tmp_path / "cs"
    _make_coarse(flat, root, nested)
    ds = CityscapesDataset(root, "train_extra", quality="coarse")
    assert len(ds) == 4 and all("_gtCoarse_labelIds.png" in p.label.name for p in ds.pairs)
    assert ds[0]["label"].dtype == torch.int64
    with pytest.raises(ValueError, match="coarse"):
        CityscapesDataset(root, "test", quality="coarse")
    with pytest.raises(ValueError, match="coarse"):
        CityscapesDataset(root, "train_extra", quality="fine")


def test_cityscapes_with_transform(flat):
    ds = CityscapesDataset(flat, "train", transform=train_transforms(64, generator=torch.Generator().manual_seed(0)))
    item = ds[1]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["label"].shape == (64, 64) and item["pos_h"].shape == (64, 64)
    assert item["pos_h"].dtype == torch.int64 and int(item["pos_h"].max()) <= 128
    full = CityscapesDataset(flat, "val", transform=eval_transforms())[0]
    assert full["image"].shape == (3, *SIZE) and torch.equal(full["pos_h"], _expected_pos(*SIZE))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["pos_h"].shape == (2, 64, 64)
    assert len(batch["name"]) == 2


def test_missing_root_shows_the_expected_tree(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CityscapesDataset(tmp_path / "nowhere", "train")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    for line in ("leftImg8bit/", "train/<city>/<city>_<seq>_<frame>_leftImg8bit.png", "gtFine/",
                 "_gtFine_labelIds.png", "leftImg8bit_trainvaltest/leftImg8bit/", "gtFine_trainvaltest/gtFine/"):
        assert line in msg, line
    assert isinstance(err.value, FileNotFoundError)


def test_missing_split_and_missing_label(flat, tmp_path):
    root = _copy(flat, tmp_path / "cs")
    shutil.rmtree(root / "leftImg8bit" / "val")
    with pytest.raises(DatasetNotFoundError, match="no image folder for split 'val'") as err:
        CityscapesDataset(root, "val")
    assert "Expected Cityscapes layout" in str(err.value)
    label = next((root / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))
    label.unlink()
    with pytest.raises(DatasetNotFoundError, match=label.name):
        CityscapesDataset(root, "train")
    with pytest.raises(ValueError, match="unknown split"):
        CityscapesDataset(root, "everything")


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("which", ["image", "label"])
def test_corrupt_file_is_named_and_can_be_skipped(flat, tmp_path, which):
    root = _copy(flat, tmp_path / "cs")
    ds = CityscapesDataset(root, "train")
    pair = ds.pairs[2]
    bad = pair.image if which == "image" else pair.label
    _truncate(bad)
    with pytest.raises(CorruptFileError) as err:
        ds[2]
    assert str(bad) in str(err.value) and err.value.path == str(bad)
    ds[1]  # the others still load
    skipping = CityscapesDataset(root, "train", skip_corrupt=True)
    assert len(skipping) == 3 and skipping.num_skipped == 1
    assert skipping.skipped[0][0] == str(bad)
    assert pair.name not in [p.name for p in skipping.pairs]


def test_not_an_image_is_named(flat, tmp_path):
    root = _copy(flat, tmp_path / "cs")
    ds = CityscapesDataset(root, "val")
    ds.pairs[0].image.write_text("not a png")
    with pytest.raises(CorruptFileError, match=ds.pairs[0].image.name):
        ds[0]


def test_size_mismatch_names_both_files(flat, tmp_path):
    root = _copy(flat, tmp_path / "cs")
    ds = CityscapesDataset(root, "train")
    pair = ds.pairs[0]
    Image.open(pair.label).resize((SIZE[1] // 2, SIZE[0] // 2), Image.NEAREST).save(pair.label)
    with pytest.raises(SizeMismatchError) as err:
        ds[0]
    assert str(pair.label) in str(err.value) and str(pair.image) in str(err.value)
    skipping = CityscapesDataset(root, "train", skip_corrupt=True)
    assert skipping.num_skipped == 1 and len(skipping) == 3


# -- BDD100K -----------------------------------------------------------------------------------


def _write_bdd(root, images_dir, masks_dir, suffix, n=3, size=(24, 40)):
    rng = np.random.default_rng(0)
    masks = {}
    for split in ("train", "val", "test"):
        (root / images_dir / split).mkdir(parents=True)
        for i in range(n):
            stem = f"{split[:2]}{i:04d}-abcd"
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                root / images_dir / split / f"{stem}.jpg")
            if split != "test":
                mask = rng.choice(np.r_[np.arange(19), 255], size=size).astype(np.uint8)
                (root / masks_dir / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / masks_dir / split / f"{stem}{suffix}")
                masks[stem] = mask
    return masks


@pytest.mark.parametrize("layout", ["current", "seg"])
def test_bdd100k_layouts(tmp_path, layout):
    if layout == "current":
        root = tmp_path / "bdd"
        masks = _write_bdd(root, "images/10k", "labels/sem_seg/masks", ".png")
    else:
        root = tmp_path / "bdd"
        masks = _write_bdd(root / "bdd100k", "seg/images", "seg/labels", "_train_id.png")
    ds = BDD100KDataset(root, "train")
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        np.testing.assert_array_equal(item["label"].numpy(), masks[item["name"]])
        assert torch.equal(item["pos_h"], _expected_pos(24, 40))
    assert len(BDD100KDataset(root, "trainval")) == 6
    test = BDD100KDataset(root, "test")
    assert (test[0]["label"] == 255).all()
    assert len(build_dataset("bdd100k", root, "val")) == 3


def test_bdd100k_bad_mask_values_and_missing_root(tmp_path):
    root = tmp_path / "bdd"
    _write_bdd(root, "images/10k", "labels/sem_seg/masks", ".png", n=1)
    mask = root / "labels/sem_seg/masks/train/tr0000-abcd.png"
    Image.fromarray(np.full((24, 40), 40, np.uint8)).save(mask)
    with pytest.raises(BadFileError, match=r"tr0000-abcd\.png.*\[40\]"):
        BDD100KDataset(root, "train")[0]
    with pytest.raises(DatasetNotFoundError, match="images/10k"):
        BDD100KDataset(tmp_path / "none", "train")


# -- folders -----------------------------------------------------------------------------------


def _write_folder(root, n=3, size=(20, 30)):
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    raws = {}
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"img{i}.png")
        raw = rng.choice([0, 10, 20, 99], size=size).astype(np.uint8)
        Image.fromarray(raw).save(root / "labels" / f"img{i}_mask.png")
        raws[f"img{i}"] = raw
    return raws


def test_folder_dataset_with_id_map(tmp_path):
    raws = _write_folder(tmp_path)
    table = ClassTable(names=("bg", "thing"), palette=((0, 0, 0), (255, 0, 0)), id_to_train={10: 0, 20: 1})
    ds = FolderDataset(tmp_path / "images", tmp_path / "labels", table, label_suffix="_mask")
    assert len(ds) == 3 and ds.classes is table
    item = ds[0]
    expected = np.full((20, 30), 255)
    expected[raws["img0"] == 10] = 0
    expected[raws["img0"] == 20] = 1
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    assert item["name"] == "img0"
    (tmp_path / "labels" / "img1_mask.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="img1.png"):
        FolderDataset(tmp_path / "images", tmp_path / "labels", table, label_suffix="_mask")


def test_build_dataset_folder_with_class_file(tmp_path):
    _write_folder(tmp_path / "data")
    spec = {"names": ["bg", "thing"], "id_to_train": {"10": 0, "20": 1}}
    (tmp_path / "classes.json").write_text(json.dumps(spec))
    table = load_class_table(tmp_path / "classes.json")
    assert table.names == ("bg", "thing") and len(table.palette) == 2
    ds = build_dataset("folder", tmp_path / "data", None, classes=tmp_path / "classes.json", label_suffix="_mask")
    assert len(ds) == 3 and set(ds[0]["label"].unique().tolist()) <= {0, 1, 255}
    with pytest.raises(ValueError, match="classes="):
        build_dataset("folder", tmp_path / "data", None)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("ade20k", tmp_path, "train")


def test_build_dataset_cityscapes(flat):
    ds = build_dataset("cityscapes", flat, "val", transform=eval_transforms())
    assert isinstance(ds, CityscapesDataset) and ds[0]["image"].dtype == torch.float32


def test_cache_decoded_reads_each_file_once_and_returns_fresh_copies(flat, tmp_path):
    root = _copy(flat, tmp_path / "cs")
    truth = build_dataset("cityscapes", root, "train").load(0)
    cached = build_dataset("cityscapes", root, "train")
    cached.cache_decoded = True
    first = cached.load(0)
    # the transforms may write into what they get: the kept sample must not change
    first["label"].fill_(7)
    first["image"].paste((1, 2, 3), (0, 0, 64, 64))
    # once read, the images are no longer needed; a sample never read still needs its file
    (root / "leftImg8bit").rename(tmp_path / "moved")
    again = cached.load(0)
    with pytest.raises(BadFileError):
        cached.load(1)
    assert np.array_equal(np.asarray(again["image"]), np.asarray(truth["image"]))
    assert torch.equal(again["label"], truth["label"]) and torch.equal(again["pos_h"], truth["pos_h"])


# -- inference images --------------------------------------------------------------------------


def test_image_folder(flat, tmp_path):
    images = ImageFolder(flat / "leftImg8bit" / "val", transform=eval_transforms())
    assert len(images) == 2
    item = images[0]
    assert item["image"].shape == (3, *SIZE) and item["size"] == SIZE
    assert torch.equal(item["pos_h"], _expected_pos(*SIZE))
    assert len(ImageFolder(str(flat / "leftImg8bit" / "*" / "*" / "*.png"))) == 8
    folder = _copy(flat / "leftImg8bit" / "test", tmp_path / "imgs")
    bad = sorted(folder.rglob("*.png"))[0]
    _truncate(bad)
    with pytest.raises(CorruptFileError, match=bad.name):
        ImageFolder(folder)[0]
    skipping = ImageFolder(folder, skip_corrupt=True)
    assert len(skipping) == 1 and skipping.num_skipped == 1
    with pytest.raises(DatasetNotFoundError):
        ImageFolder(tmp_path / "missing")
