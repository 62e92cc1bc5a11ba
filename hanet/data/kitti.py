"""KITTI semantic segmentation (the 200 training images), as the original HANet
reads it.

Layout under ``root`` (``data_semantics`` of the KITTI download)::

    training/image_2/<nnnnnn>_10.png
    training/semantic/<nnnnnn>_10.png     (Cityscapes label ids)

KITTI has no official val split: the original sorts the 200 training images by name
and holds out 21 of them by index, with three fixed lists (``cv_split`` 0..2), the
rest being ``train``; ``trainval`` is train followed by val.  Its KITTI recipe
validates on ``trainval``.  ``val`` images (and labels) are resized to 1242x376
(bicubic / nearest) as the original does; train images keep their size.

Label ids 0..33 map to the 19 Cityscapes train ids by the Cityscapes table; 255 is
kept as ignore (the original leaves ids it does not know unchanged, so 255 stays
255); any other value is an error.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import Pair, SegmentationDataset, dataset_root, require_labels
from .cv_splits import check_cv_split
from .errors import DatasetNotFoundError
from .labels import CLASS_NAMES, IGNORE_INDEX, LABEL_TO_TRAIN, PALETTE
from .position import position_map
from .strict_labels import StrictClassTable

SPLITS = ("train", "val", "trainval")
NUM_IMAGES = 200
VAL_SIZE = (1242, 376)  # (W, H) of the original's val resize

# Indices (into the 200 images sorted by name) of the val images of each cv split.
VAL_INDICES = (
    (1, 5, 11, 29, 35, 49, 57, 68, 72, 82, 93, 115, 119, 130, 145, 154, 156, 167, 169, 189, 198),
    (0, 12, 24, 31, 42, 50, 63, 71, 84, 96, 101, 112, 121, 133, 141, 155, 164, 171, 187, 191, 197),
    (3, 6, 13, 21, 41, 54, 61, 73, 88, 91, 110, 121, 126, 131, 142, 149, 150, 163, 173, 183, 199),
)

KITTI_CLASSES = StrictClassTable(
    names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX,
    id_to_train={**{i: int(LABEL_TO_TRAIN[i]) for i in range(34)}, 255: IGNORE_INDEX},
)


def expected_tree(root: str | Path) -> str:
    return "\n".join([
        f"Expected KITTI semantics layout under {root}:",
        f"  {root}/",
        "  └── training/",
        f"      ├── image_2/<nnnnnn>_10.png     ({NUM_IMAGES} images)",
        "      └── semantic/<nnnnnn>_10.png    (Cityscapes label ids, same names)",
    ])


def split_indices(split: str, cv_split: int) -> list[int]:
    """Indices into the sorted 200 images of ``split`` in cross-validation split ``cv_split``."""
    val = VAL_INDICES[cv_split]
    train = [i for i in range(NUM_IMAGES) if i not in val]
    return {"train": train, "val": list(val), "trainval": train + list(val)}[split]


class KITTIDataset(SegmentationDataset):
    """KITTI semantics, 19 Cityscapes classes; items as :class:`SegmentationDataset`'s."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 skip_corrupt: bool = False, cv_split: int = 0):
        root = dataset_root("KITTI", root, split, SPLITS, expected_tree, " (the original has no test split)")
        cv_split = check_cv_split(cv_split, "KITTI")
        self.cv_split = cv_split
        everything = self._find_pairs(root)
        pairs = [everything[i] for i in split_indices(split, cv_split)]
        super().__init__(pairs, KITTI_CLASSES, transform=transform, skip_corrupt=skip_corrupt, root=root,
                         split=split, identity=f"kitti:{root.resolve()}:{split}:cv{cv_split}")

    @staticmethod
    def _find_pairs(root: Path) -> list[Pair]:
        image_dir, label_dir = root / "training" / "image_2", root / "training" / "semantic"
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise DatasetNotFoundError(f"KITTI: no folder {folder}.\n" + expected_tree(root))
        images = sorted(image_dir.glob("*.png"))
        # The split lists index the official 200 images; another count would shift them.
        if len(images) != NUM_IMAGES:
            raise DatasetNotFoundError(f"KITTI: {image_dir} holds {len(images)} .png images; the train/val "
                                       f"lists index exactly the {NUM_IMAGES} of KITTI semantics.\n"
                                       + expected_tree(root))
        pairs = [Pair(image=p, label=label_dir / p.name, name=p.stem) for p in images]
        return require_labels(pairs, "KITTI: images")

    def load(self, index: int) -> dict:
        sample = super().load(index)
        if self.split != "val":
            return sample
        # The original evaluates KITTI val at one fixed size.
        image = sample["image"].resize(VAL_SIZE, Image.BICUBIC)
        label = Image.fromarray(sample["label"].numpy()).resize(VAL_SIZE, Image.NEAREST)
        return {"image": image, "label": torch.from_numpy(np.array(label)),
                "pos_h": position_map(VAL_SIZE[1], VAL_SIZE[0])}
