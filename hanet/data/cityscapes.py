"""Cityscapes in its official folder layout.

Accepted layouts under ``root`` (the first that exists wins, per folder):

* flat:   ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
          ``gtFine/<split>/<city>/*_gtFine_labelIds.png``
* nested, as unzipped from the official zips (HANet's README):
          ``leftImg8bit_trainvaltest/leftImg8bit/<split>/...`` and
          ``gtFine_trainvaltest/gtFine/<split>/...``
* coarse: ``gtCoarse/<split>/<city>/*_gtCoarse_labelIds.png`` (or ``gtCoarse/gtCoarse/...``),
          with the extra images in ``leftImg8bit/train_extra`` or
          ``leftImg8bit_trainextra/leftImg8bit/train_extra``.

Splits: ``train``, ``val``, ``test``, ``trainval`` (train + val, the original's
``--city_mode trainval``) and, for coarse labels, ``train_extra``.  ``cv_split``
1 or 2 (the original's ``--cv``) moves whole cities between train and val as the
original does (see :mod:`hanet.data.cv_splits`); 0 is the official split.  LabelIds are
mapped to the 19 train ids with the Cityscapes label table.  The official test labels
are dummies: test images load with whatever label file exists, and with every pixel
ignored when there is none.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Pair, SegmentationDataset
from .cv_splits import check_cv_split, cv_partition, subfolders
from .errors import DatasetNotFoundError
from .labels import CITYSCAPES

SPLITS = ("train", "val", "test", "trainval", "train_extra")
QUALITIES = {"fine": "gtFine", "coarse": "gtCoarse"}
_IMAGE_SUFFIX = "_leftImg8bit.png"


def expected_tree(root: str | Path, quality: str = "fine") -> str:
    """The folder layouts this reader accepts, drawn as a tree under ``root``."""
    if quality == "coarse":
        return "\n".join([
            f"Expected Cityscapes (coarse) layout under {root}:",
            f"  {root}/",
            "  ├── leftImg8bit/{train,val,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png",
            "  └── gtCoarse/{train,val,train_extra}/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png",
            "or, as unzipped from the official archives:",
            f"  {root}/",
            "  ├── leftImg8bit_trainvaltest/leftImg8bit/{train,val}/<city>/...",
            "  ├── leftImg8bit_trainextra/leftImg8bit/train_extra/<city>/...",
            "  └── gtCoarse/gtCoarse/{train,val,train_extra}/<city>/...",
        ])
    return "\n".join([
        f"Expected Cityscapes layout under {root}:",
        f"  {root}/",
        "  ├── leftImg8bit/",
        "  │   ├── train/<city>/<city>_<seq>_<frame>_leftImg8bit.png",
        "  │   ├── val/<city>/...",
        "  │   └── test/<city>/...",
        "  └── gtFine/",
        "      ├── train/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png",
        "      ├── val/<city>/...",
        "      └── test/<city>/...   (dummy labels; optional)",
        "or, as unzipped from the official archives (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip):",
        f"  {root}/",
        "  ├── leftImg8bit_trainvaltest/leftImg8bit/{train,val,test}/<city>/...",
        "  └── gtFine_trainvaltest/gtFine/{train,val,test}/<city>/...",
    ])


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def _image_dirs(root: Path, split: str) -> list[Path]:
    return [root / "leftImg8bit" / split,
            root / "leftImg8bit_trainvaltest" / "leftImg8bit" / split,
            root / "leftImg8bit_trainextra" / "leftImg8bit" / split]


def _label_dirs(root: Path, split: str, gt: str) -> list[Path]:
    return [root / gt / split, root / f"{gt}_trainvaltest" / gt / split, root / gt / gt / split]


class CityscapesDataset(SegmentationDataset):
    """Cityscapes images with fine or coarse labels (see the module docstring).

    ``root``: the dataset folder; ``split``: train | val | test | trainval |
    train_extra (coarse only); ``quality``: "fine" (gtFine) or "coarse" (gtCoarse);
    ``transform``: a joint transform on the sample dict (``hanet.data.transforms``);
    ``skip_corrupt``: drop unreadable pairs at construction and count them in
    ``num_skipped`` instead of failing when they are loaded; ``cv_split``: 0, 1 or 2,
    the original's cross-validation split of the cities (fine labels only).
    """

    def __init__(self, root: str | Path, split: str = "train", quality: str = "fine",
                 transform: Callable | None = None, skip_corrupt: bool = False, cv_split: int = 0):
        if split not in SPLITS:
            raise ValueError(f"Cityscapes: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if quality not in QUALITIES:
            raise ValueError(f"Cityscapes: quality must be 'fine' or 'coarse', got {quality!r}")
        if quality == "fine" and split == "train_extra":
            raise ValueError("Cityscapes: split 'train_extra' has coarse labels only; use quality='coarse'")
        if quality == "coarse" and split == "test":
            raise ValueError("Cityscapes: there are no coarse labels for the test split")
        cv_split = check_cv_split(cv_split, "Cityscapes")
        if cv_split and quality == "coarse":  # the original asserts cv 0 for coarse sets
            raise ValueError("Cityscapes: cv_split applies to fine labels only; coarse sets use the official split")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(f"Cityscapes root {root} does not exist or is not a folder.\n"
                                       + expected_tree(root, quality))
        self.quality = quality
        self.cv_split = cv_split
        parts = ("train", "val") if split == "trainval" else (split,)
        gt = QUALITIES[quality]
        if cv_split and split != "test":
            groups = self.cv_cities(root, cv_split)
            pairs = [p for part in parts for src, city in groups[part]
                     for p in self._find_pairs(root, src, gt, cities=[city])]
        else:
            pairs = [p for part in parts for p in self._find_pairs(root, part, gt)]
        cv = f":cv{cv_split}" if cv_split else ""  # cv 0 keeps the identity (and centroid cache) it had
        super().__init__(pairs, CITYSCAPES, transform=transform, skip_corrupt=skip_corrupt, root=root,
                         split=split, identity=f"cityscapes:{root.resolve()}:{split}:{quality}{cv}")

    @staticmethod
    def cv_cities(root: str | Path, cv_split: int) -> dict[str, list[tuple[str, str]]]:
        """{"train": [...], "val": [...]}: the (official split, city) pairs of each
        side of cross-validation split ``cv_split``, as the original forms them."""
        root = Path(root).expanduser()
        found = {}
        for split in ("train", "val"):
            image_dir = _first_dir(_image_dirs(root, split))
            if image_dir is None:
                looked = "\n".join(f"  {p}" for p in _image_dirs(root, split))
                raise DatasetNotFoundError(f"Cityscapes: cv_split needs the {split!r} image folder; looked in:\n"
                                           f"{looked}\n" + expected_tree(root))
            found[split] = subfolders(image_dir)
        return cv_partition(found["train"], found["val"], check_cv_split(cv_split, "Cityscapes"))

    @staticmethod
    def _find_pairs(root: Path, split: str, gt: str, cities: list[str] | None = None) -> list[Pair]:
        quality = "fine" if gt == "gtFine" else "coarse"
        image_dir = _first_dir(_image_dirs(root, split))
        if image_dir is None:
            looked = "\n".join(f"  {p}" for p in _image_dirs(root, split))
            raise DatasetNotFoundError(f"Cityscapes: no image folder for split {split!r}; looked in:\n{looked}\n"
                                       + expected_tree(root, quality))
        if cities is None:
            images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
        else:
            images = [p for city in cities for p in sorted((image_dir / city).glob(f"*{_IMAGE_SUFFIX}"))]
        if not images:
            where = image_dir if cities is None else ", ".join(str(image_dir / c) for c in cities)
            raise DatasetNotFoundError(f"Cityscapes: {where} holds no <city>/*{_IMAGE_SUFFIX} files.\n"
                                       + expected_tree(root, quality))
        label_dir = _first_dir(_label_dirs(root, split, gt))
        if label_dir is None and split != "test":
            looked = "\n".join(f"  {p}" for p in _label_dirs(root, split, gt))
            raise DatasetNotFoundError(f"Cityscapes: no {gt} label folder for split {split!r}; looked in:\n"
                                       f"{looked}\n" + expected_tree(root, quality))
        pairs, missing = [], []
        for image in images:
            name = image.name[: -len(_IMAGE_SUFFIX)]
            label = None
            if label_dir is not None:
                label = label_dir / image.parent.name / f"{name}_{gt}_labelIds.png"
                if not label.is_file():
                    if split != "test":
                        missing.append(label)
                    label = None
            pairs.append(Pair(image=image, label=label, name=name))
        if missing:
            shown = "\n".join(f"  {p}" for p in missing[:5])
            more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetNotFoundError(f"Cityscapes: {len(missing)} of {len(images)} images of split {split!r} "
                                       f"have no label file:\n{shown}{more}")
        return pairs
