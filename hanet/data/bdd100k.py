"""BDD100K semantic segmentation (10k images, the 19 Cityscapes classes).

Accepted layouts under ``root`` (or under ``root/bdd100k``):

* current: ``images/10k/<split>/<stem>.jpg`` with ``labels/sem_seg/masks/<split>/<stem>.png``
* older ("seg" release): ``seg/images/<split>/<stem>.jpg`` with
  ``seg/labels/<split>/<stem>_train_id.png``

Masks hold train ids directly (0..18, 255 ignored).  Splits: train, val, trainval,
test (no public labels: test images load with every pixel ignored).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Pair, SegmentationDataset, dataset_root, require_labels
from .errors import DatasetNotFoundError
from .labels import CLASS_NAMES, IGNORE_INDEX, PALETTE, ClassTable

SPLITS = ("train", "val", "trainval", "test")
# Same classes and colours as Cityscapes, but masks are train ids: no id map.
BDD100K_CLASSES = ClassTable(names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")

# (images folder, masks folder, mask name suffix) of each known layout
_LAYOUTS = (
    (("images", "10k"), ("labels", "sem_seg", "masks"), ".png"),
    (("seg", "images"), ("seg", "labels"), "_train_id.png"),
)


def expected_tree(root: str | Path) -> str:
    return "\n".join([
        f"Expected BDD100K layout under {root} (or {root}/bdd100k):",
        f"  {root}/",
        "  ├── images/10k/{train,val,test}/<name>.jpg",
        "  └── labels/sem_seg/masks/{train,val}/<name>.png      (train ids, 255 = ignore)",
        "or the older release:",
        f"  {root}/seg/",
        "  ├── images/{train,val,test}/<name>.jpg",
        "  └── labels/{train,val}/<name>_train_id.png",
    ])


class BDD100KDataset(SegmentationDataset):
    """BDD100K segmentation; items as :class:`SegmentationDataset`'s."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 skip_corrupt: bool = False):
        root = dataset_root("BDD100K", root, split, SPLITS, expected_tree)
        parts = ("train", "val") if split == "trainval" else (split,)
        pairs = [p for part in parts for p in self._find_pairs(root, part)]
        super().__init__(pairs, BDD100K_CLASSES, transform=transform, skip_corrupt=skip_corrupt, root=root,
                         split=split, identity=f"bdd100k:{root.resolve()}:{split}")

    @staticmethod
    def _find_pairs(root: Path, split: str) -> list[Pair]:
        bases = [root, root / "bdd100k"]
        for base in bases:
            for image_parts, mask_parts, suffix in _LAYOUTS:
                image_dir = base.joinpath(*image_parts, split)
                if not image_dir.is_dir():
                    continue
                images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
                if not images:
                    raise DatasetNotFoundError(f"BDD100K: {image_dir} holds no images.\n" + expected_tree(root))
                mask_dir = base.joinpath(*mask_parts, split)
                if split == "test" or not mask_dir.is_dir():
                    if split != "test":
                        raise DatasetNotFoundError(f"BDD100K: no mask folder {mask_dir} for split {split!r}.\n"
                                                   + expected_tree(root))
                    return [Pair(image=p, label=None, name=p.stem) for p in images]
                pairs = [Pair(image=p, label=mask_dir / f"{p.stem}{suffix}", name=p.stem) for p in images]
                return require_labels(pairs, f"BDD100K: images of split {split!r} (masks)")
        raise DatasetNotFoundError(f"BDD100K: no image folder for split {split!r} under {root}.\n"
                                   + expected_tree(root))
