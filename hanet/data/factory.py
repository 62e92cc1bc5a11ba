"""``build_dataset``: one entry point for the dataset kinds, by name."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import SegmentationDataset
from .bdd100k import BDD100KDataset
from .camvid import CamVidDataset
from .cityscapes import CityscapesDataset
from .errors import DatasetNotFoundError
from .folder import FolderDataset
from .gtav import GTAVDataset
from .kitti import KITTIDataset
from .labels import ClassTable, load_class_table
from .mapillary import MapillaryDataset

DATASETS = ("cityscapes", "bdd100k", "mapillary", "gtav", "camvid", "kitti", "folder")
_WITH_CV = ("cityscapes", "gtav", "kitti")  # the datasets whose original reader uses --cv


def build_dataset(name: str, root: str | Path, split: str | None = "train", transform: Callable | None = None,
                  *, quality: str = "fine", classes: ClassTable | str | Path | None = None,
                  label_suffix: str = "", skip_corrupt: bool = False, cv_split: int = 0) -> SegmentationDataset:
    """A dataset by kind:

    * ``"cityscapes"``: :class:`CityscapesDataset` (``quality`` "fine"/"coarse");
    * ``"bdd100k"``: :class:`BDD100KDataset`;
    * ``"mapillary"`` (Vistas v1.2), ``"gtav"``, ``"camvid"``, ``"kitti"``: the
      readers of :mod:`hanet.data.mapillary`, ``gtav``, ``camvid``, ``kitti``;
    * ``"folder"``: :class:`FolderDataset` over ``<root>/images/<split>`` and
      ``<root>/labels/<split>`` (or ``<root>/images`` and ``<root>/labels`` when
      ``split`` is None), with ``classes`` a :class:`ClassTable` or a class-table
      file (JSON/YAML, see ``load_class_table``) and ``label_suffix`` as there.

    ``cv_split`` (the original's ``--cv``, 0..2) picks a cross-validation split of
    Cityscapes, GTAV or KITTI; the other kinds have none and refuse 1 or 2.
    """
    key = name.lower()
    key = "bdd100k" if key == "bdd" else key
    if cv_split != 0 and key not in _WITH_CV:
        raise ValueError(f"build_dataset({name!r}): cv_split={cv_split!r}, but only {', '.join(_WITH_CV)} "
                         "have cross-validation splits")
    named = split or "train"  # "folder" alone gives split None a meaning
    if key == "cityscapes":
        return CityscapesDataset(root, named, quality=quality, transform=transform, skip_corrupt=skip_corrupt,
                                 cv_split=cv_split)
    if key == "bdd100k":
        return BDD100KDataset(root, named, transform=transform, skip_corrupt=skip_corrupt)
    if key == "mapillary":
        return MapillaryDataset(root, named, transform=transform, skip_corrupt=skip_corrupt)
    if key == "gtav":
        return GTAVDataset(root, named, transform=transform, skip_corrupt=skip_corrupt, cv_split=cv_split)
    if key == "camvid":
        return CamVidDataset(root, named, transform=transform, skip_corrupt=skip_corrupt)
    if key == "kitti":
        return KITTIDataset(root, named, transform=transform, skip_corrupt=skip_corrupt, cv_split=cv_split)
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
