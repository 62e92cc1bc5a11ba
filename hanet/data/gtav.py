"""GTAV (Playing for Data) in the folder layout the original HANet reads.

Layout under ``root``::

    images/{train,val,test}/<folder>/<name>.png
    labels/{train,val,test}/<folder>/<name>.png    (same folder and name)

The original reads no split file: the images must already be sorted into
``train``/``val`` and into sub-folders, which play the part of Cityscapes' cities in
its cross-validation splits (``cv_split``, see :mod:`hanet.data.cv_splits`).

Labels are colour images (GTAV ships palette PNGs whose colours are Cityscapes
colours).  As in the original, a pixel gets the train id of the Cityscapes class
whose colour it has exactly, and 255 for any other colour; the palette indices are
not used.  So a pixel coloured (153, 153, 153) is a pole (train id 5) even where its
index is Cityscapes' 'polegroup'.  19 classes, Cityscapes names and palette.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import Pair, SegmentationDataset, dataset_root, require_labels
from .cv_splits import check_cv_split, cv_partition, subfolders
from .errors import BadFileError, DatasetNotFoundError, SizeMismatchError
from .io import _open
from .labels import CLASS_NAMES, IGNORE_INDEX, PALETTE, ClassTable

SPLITS = ("train", "val", "trainval", "test")
# No id map: labels are decoded from colours by GTAVDataset.load_label.
GTAV_CLASSES = ClassTable(names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX)


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_COLOUR_KEYS = _packed(np.asarray(PALETTE, dtype=np.uint8))  # train id i <-> colour PALETTE[i]


def colours_to_train_ids(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) uint8 train ids (255 for unknown colours)."""
    keys = _packed(rgb)
    out = np.full(keys.shape, IGNORE_INDEX, dtype=np.uint8)
    for train_id, key in enumerate(_COLOUR_KEYS):
        out[keys == key] = train_id
    return out


def read_colour_label(path: str | Path) -> np.ndarray:
    """A colour label file as (H, W, 3) uint8; single-channel id images are refused."""
    im = _open(path, "label")
    if im.mode not in ("RGB", "RGBA", "P", "PA"):
        raise BadFileError(path, f"GTAV labels are colour images (RGB or palette); this one has mode {im.mode!r}")
    return np.asarray(im.convert("RGB"))


def expected_tree(root: str | Path) -> str:
    return "\n".join([
        f"Expected GTAV layout under {root}:",
        f"  {root}/",
        "  ├── images/",
        "  │   ├── train/<folder>/<name>.png",
        "  │   ├── val/<folder>/<name>.png",
        "  │   └── test/<folder>/<name>.png     (optional)",
        "  └── labels/",
        "      ├── train/<folder>/<name>.png    (colour labels, Cityscapes colours)",
        "      ├── val/<folder>/<name>.png",
        "      └── test/<folder>/<name>.png",
    ])


class GTAVDataset(SegmentationDataset):
    """GTAV with colour labels; ``cv_split`` 0..2 as the original's ``--cv``."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 skip_corrupt: bool = False, cv_split: int = 0):
        root = dataset_root("GTAV", root, split, SPLITS, expected_tree)
        cv_split = check_cv_split(cv_split, "GTAV")
        self.cv_split = cv_split
        if split == "test":
            groups = [("test", f) for f in subfolders(self._dir(root, "images", "test"))]
        else:
            found = {s: subfolders(self._dir(root, "images", s)) for s in ("train", "val")}
            parts = cv_partition(found["train"], found["val"], cv_split)
            groups = [g for part in (("train", "val") if split == "trainval" else (split,)) for g in parts[part]]
        pairs = [p for src, folder in groups for p in self._folder_pairs(root, src, folder)]
        if not pairs:
            raise DatasetNotFoundError(f"GTAV: no images for split {split!r}.\n" + expected_tree(root))
        super().__init__(pairs, GTAV_CLASSES, transform=transform, skip_corrupt=skip_corrupt, root=root,
                         split=split, identity=f"gtav:{root.resolve()}:{split}:cv{cv_split}")

    @staticmethod
    def _dir(root: Path, kind: str, split: str) -> Path:
        folder = root / kind / split
        if not folder.is_dir():
            raise DatasetNotFoundError(f"GTAV: no folder {folder}.\n" + expected_tree(root))
        return folder

    @classmethod
    def _folder_pairs(cls, root: Path, split: str, folder: str) -> list[Pair]:
        images = sorted((root / "images" / split / folder).glob("*.png"))
        label_dir = cls._dir(root, "labels", split) / folder
        pairs = [Pair(image=p, label=label_dir / p.name, name=p.stem) for p in images]
        return require_labels(pairs, f"GTAV: images in {split}/{folder}")

    def load_label(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) uint8 train ids of sample ``index``, decoded from the label's colours."""
        pair = self.pairs[index]
        rgb = read_colour_label(pair.label)
        if size is not None and rgb.shape[:2] != tuple(size):
            raise SizeMismatchError(pair.label, f"label is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but its "
                                                f"image {pair.image} is {size[1]}x{size[0]}")
        return colours_to_train_ids(rgb)
