"""``build_dataset``: one entry point for the dataset kinds, by name."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import SegmentationDataset
from .bdd100k import BDD100KDataset
from .cityscapes import CityscapesDataset
from .errors import DatasetNotFoundError
from .folder import FolderDataset
from .labels import ClassTable, load_class_table

DATASETS = ("cityscapes", "bdd100k", "folder")


def build_dataset(name: str, root: str | Path, split: str | None = "train", transform: Callable | None = None,
                  *, quality: str = "fine", classes: ClassTable | str | Path | None = None,
                  label_suffix: str = "", skip_corrupt: bool = False) -> SegmentationDataset:
    """A dataset by kind:

    * ``"cityscapes"``: :class:`CityscapesDataset` (``quality`` "fine"/"coarse");
    * ``"bdd100k"``: :class:`BDD100KDataset`;
    * ``"folder"``: :class:`FolderDataset` over ``<root>/images/<split>`` and
      ``<root>/labels/<split>`` (or ``<root>/images`` and ``<root>/labels`` when
      ``split`` is None), with ``classes`` a :class:`ClassTable` or a class-table
      file (JSON/YAML, see ``load_class_table``) and ``label_suffix`` as there.
    """
    key = name.lower()
    if key == "cityscapes":
        return CityscapesDataset(root, split or "train", quality=quality, transform=transform,
                                 skip_corrupt=skip_corrupt)
    if key in ("bdd100k", "bdd"):
        return BDD100KDataset(root, split or "train", transform=transform, skip_corrupt=skip_corrupt)
    if key == "folder":
        if classes is None:
            raise ValueError("build_dataset('folder', ...): give classes= (a ClassTable or a class-table file)")
        table = classes if isinstance(classes, ClassTable) else load_class_table(classes)
        root = Path(root).expanduser()
        images, labels = root / "images", root / "labels"
        if split is not None:
            images, labels = images / split, labels / split
        if not images.is_dir():
            sub = f"{split}/" if split else ""
            raise DatasetNotFoundError(f"folder dataset: {images} does not exist.\nExpected:\n  {root}/\n"
                                       f"  ├── images/{sub}<stem>.png|jpg...\n"
                                       f"  └── labels/{sub}<stem>{label_suffix}.png")
        return FolderDataset(images, labels if labels.is_dir() or split != "test" else None, table,
                             transform=transform, label_suffix=label_suffix, skip_corrupt=skip_corrupt, split=split)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
