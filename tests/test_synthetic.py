"""The synthetic Cityscapes-layout generator: layout, formats, determinism, label
consistency with cityscapesscripts, and the height structure HANet relies on."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage
from PIL import Image

from hanet.data.labels import LABEL_COLOURS, LABEL_TO_TRAIN, PALETTE
from hanet.synthetic import CITIES, image_names, main, make_synthetic_cityscapes

SIZE = (128, 256)
COUNTS = {"train": 20, "val": 4, "test": 2}
GT_KINDS = ("labelIds", "color", "instanceIds")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_cityscapes(tmp_path_factory.mktemp("syn"), train=COUNTS["train"], val=COUNTS["val"],
                                     test=COUNTS["test"], size=SIZE, seed=3)


def _label_ids(root, split):
    return [np.asarray(Image.open(p)) for p in sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))]


def test_layout_is_exactly_cityscapes(root):
    expected = set()
    for split, n in COUNTS.items():
        names = image_names(split, n)
        assert len({c for c, _ in names}) >= 2  # several cities per split
        for city, name in names:
            assert re.fullmatch(r"[a-z]+_\d{6}_\d{6}", name) and name.startswith(city + "_")
            expected.add(f"leftImg8bit/{split}/{city}/{name}_leftImg8bit.png")
            expected |= {f"gtFine/{split}/{city}/{name}_gtFine_{k}.png" for k in GT_KINDS}
            expected.add(f"gtFine/{split}/{city}/{name}_gtFine_polygons.json")
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == expected
    assert set(CITIES) == set(COUNTS)


def test_file_formats(root):
    img = next((root / "leftImg8bit" / "val").glob("*/*.png"))
    stem = img.name[: -len("_leftImg8bit.png")]
    gt = root / "gtFine" / "val" / img.parent.name
    h, w = SIZE
    with Image.open(img) as im:
        assert (im.mode, im.size) == ("RGB", (w, h))
    with Image.open(gt / f"{stem}_gtFine_labelIds.png") as im:
        assert (im.mode, im.size) == ("L", (w, h))
    with Image.open(gt / f"{stem}_gtFine_color.png") as im:
        assert (im.mode, im.size) == ("RGBA", (w, h))
    with Image.open(gt / f"{stem}_gtFine_instanceIds.png") as im:
        assert im.mode.startswith("I;16") and im.size == (w, h)


def test_same_seed_same_bytes_other_seed_differs(root, tmp_path):
    # Per-image seeds: the first images do not depend on how many are generated.
    again = make_synthetic_cityscapes(tmp_path / "a", train=2, val=1, test=0, size=SIZE, seed=3)
    other = make_synthetic_cityscapes(tmp_path / "b", train=2, val=1, test=0, size=SIZE, seed=4)
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 3 * 5
    for rel in files:
        assert (again / rel).read_bytes() == (root / rel).read_bytes(), rel
    assert all((other / rel).read_bytes() != (root / rel).read_bytes()
               for rel in files if rel.name.endswith("_leftImg8bit.png"))


def test_label_values_are_cityscapes_ids(root):
    known = {lab.id for lab in cs_labels if lab.id >= 0}
    for split in COUNTS:
        for lab in _label_ids(root, split):
            assert set(np.unique(lab).tolist()) <= known


def test_polygons_reproduce_label_instance_and_colour_images(root):
    """cityscapesscripts' own rasteriser, given our JSON, gives back our PNGs exactly."""
    for js in sorted(root.glob("gtFine/*/*/*_gtFine_polygons.json")):
        data = json.loads(js.read_text())
        assert (data["imgHeight"], data["imgWidth"]) == SIZE
        assert data["objects"] and all(len(o["polygon"]) >= 3 for o in data["objects"])
        ann = Annotation()
        ann.fromJsonFile(str(js))
        base = str(js)[: -len("polygons.json")]
        np.testing.assert_array_equal(np.asarray(createLabelImage(ann, "ids")),
                                      np.asarray(Image.open(base + "labelIds.png")), err_msg=js.name)
        np.testing.assert_array_equal(np.asarray(createInstanceImage(ann, "ids")),
                                      np.asarray(Image.open(base + "instanceIds.png")), err_msg=js.name)
        np.testing.assert_array_equal(np.asarray(createLabelImage(ann, "color")),
                                      np.asarray(Image.open(base + "color.png")), err_msg=js.name)


def test_colour_png_uses_the_palette(root):
    js = next(root.glob("gtFine/train/*/*_gtFine_labelIds.png"))
    ids = np.asarray(Image.open(js))
    colour = np.asarray(Image.open(str(js).replace("labelIds", "color")))
    assert (colour[..., 3] == 255).all()
    for lid in np.unique(ids):
        assert (colour[ids == lid][:, :3] == LABEL_COLOURS[int(lid)]).all()
    train = LABEL_TO_TRAIN[ids]
    for t in np.unique(train[train < 19]):
        assert tuple(colour[train == t][0, :3]) == PALETTE[t]


def test_height_structure(root):
    h = SIZE[0]
    rows = np.arange(h)[:, None]
    sky_top = sky = road_bottom = road = 0
    for lab in _label_ids(root, "train"):
        t = LABEL_TO_TRAIN[lab]
        sky += (t == 10).sum()
        sky_top += ((t == 10) & (rows < h / 3)).sum()
        road += (t == 0).sum()
        road_bottom += ((t == 0) & (rows >= 2 * h / 3)).sum()
    assert sky_top / sky > 0.8
    assert road_bottom / road > 0.7


def test_all_19_classes_and_ignored_labels_appear(root):
    seen = set()
    for lab in _label_ids(root, "train"):
        seen |= set(np.unique(lab).tolist())
    assert set(LABEL_TO_TRAIN[sorted(seen)].tolist()) >= set(range(19))
    assert 1 in seen  # ego vehicle (ignored)
    assert any(LABEL_TO_TRAIN[i] == 255 and i != 1 for i in seen)


def test_test_split_has_real_labels(root):
    for lab in _label_ids(root, "test"):
        assert (LABEL_TO_TRAIN[lab] < 19).mean() > 0.5


def test_height_makes_classes_separable(root):
    """A colour-histogram pixel classifier gains clearly from knowing the row: colour
    alone is ambiguous, colour + height much less (the point of HANet)."""
    def load(split):
        imgs = [np.asarray(Image.open(p)) for p in sorted((root / "leftImg8bit" / split).glob("*/*.png"))]
        return np.stack(imgs), LABEL_TO_TRAIN[np.stack(_label_ids(root, split))]

    xtr, ytr = load("train")
    xte, yte = np.concatenate([load("val")[0], load("test")[0]]), np.concatenate([load("val")[1], load("test")[1]])
    rows = np.arange(SIZE[0])[None, :, None] * 4 // SIZE[0]  # 4 height bands

    def features(x, with_row):
        q = (x // 32).astype(np.int64)  # 8 levels per channel
        f = q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]
        return f * 4 + np.broadcast_to(rows, f.shape) if with_row else f

    def scores(with_row):
        ftr, fte = features(xtr, with_row), features(xte, with_row)
        keep = ytr < 19
        counts = np.zeros((512 * 4, 19))
        np.add.at(counts, (ftr[keep], ytr[keep]), 1)
        pred = counts.argmax(1)[fte]
        ious = [((pred == c) & (yte == c)).sum() / (((pred == c) | (yte == c)) & (yte < 19)).sum()
                for c in range(19) if (yte == c).any()]
        return float((pred == yte)[yte < 19].mean()), float(np.mean(ious))

    (acc_c, miou_c), (acc_h, miou_h) = scores(False), scores(True)
    assert acc_h > acc_c + 0.08 and miou_h > miou_c, (acc_c, miou_c, acc_h, miou_h)
    assert miou_h < 0.5  # far from solved by colour and height alone


def test_cli_and_argument_errors(tmp_path, capsys):
    assert main([str(tmp_path / "cli"), "--train", "1", "--val", "1", "--size", "32", "64", "--seed", "1"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").rglob("*_leftImg8bit.png"))) == 2
    with pytest.raises(ValueError, match="size"):
        make_synthetic_cityscapes(tmp_path / "x", train=1, val=0, size=(8, 8))
    with pytest.raises(ValueError, match="seed"):
        make_synthetic_cityscapes(tmp_path / "x", train=1, val=0, seed=-1)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_old_import_paths_are_aliases():
    import hanet.data
    import hanet.data.synthetic as old
    import hanet.synthetic as new

    assert hanet.data.make_synthetic_cityscapes is new.make_synthetic_cityscapes
    for name in ("CITIES", "FRAME", "image_name", "image_names", "main", "make_synthetic_cityscapes", "write_sample"):
        assert getattr(old, name) is getattr(new, name), name
    assert "make_synthetic_cityscapes" in hanet.data.__all__


def test_hanet_data_does_not_import_the_generator():
    code = "import sys, hanet.data; print(sorted(m for m in sys.modules if 'synthetic' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["hanet.synthetic", "hanet.data.synthetic"])
def test_python_m_writes_the_same_files(module, tmp_path):
    args = ["--train", "2", "--val", "1", "--test", "1", "--size", "32", "64", "--seed", "5"]
    proc = subprocess.run([sys.executable, "-m", module, str(tmp_path / "cli"), *args], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 4 images (32x64)" in proc.stdout and "RuntimeWarning" not in proc.stderr
    want = make_synthetic_cityscapes(tmp_path / "api", train=2, val=1, test=1, size=(32, 64), seed=5)
    assert len(_tree(want)) == 4 * 5
    assert _tree(tmp_path / "cli") == _tree(want)
