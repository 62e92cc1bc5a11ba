"""Mapillary Vistas v1.2 semantic segmentation, as the original HANet reads it
(the data of ``train_resnext_pretrain.sh``).

Layout under ``root`` (the official v1.2 download)::

    config.json                        (66 labels; checked when present)
    training/images/<key>.jpg    training/labels/<key>.png
    validation/images/<key>.jpg  validation/labels/<key>.png
    testing/images/<key>.jpg     (no labels)

The v2.0 download keeps the v1.2 labels in ``<split>/v1.2/labels`` and the table in
``config_v1.2.json``; both are accepted too.  Label files hold the v1.2 label ids
0..65.  The original trains on 65 classes with train id = label id (its id map is
the identity) and ignores id 65, "Unlabeled" (its ``ignore_label`` is 65); here id
65 becomes 255, the ignore value of this package's losses and crops, which ignores
the same pixels.  Ids above 65 are not v1.2 ids: such a file is an error.

As in the original, every image must have a label and every label an image.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .base import Pair, SegmentationDataset, dataset_root
from .errors import BadFileError, DatasetNotFoundError
from .io import IMAGE_EXTENSIONS
from .labels import IGNORE_INDEX
from .strict_labels import StrictClassTable

SPLITS = ("train", "val", "test")
SPLIT_DIRS = {"train": "training", "val": "validation", "test": "testing"}
UNLABELED_ID = 65  # the original's ignore_label

# The 66 labels of Mapillary Vistas v1.2 (config.json), by label id: readable name, colour.
LABELS_V12: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("Bird", (165, 42, 42)), ("Ground Animal", (0, 192, 0)), ("Curb", (196, 196, 196)),
    ("Fence", (190, 153, 153)), ("Guard Rail", (180, 165, 180)), ("Barrier", (90, 120, 150)),
    ("Wall", (102, 102, 156)), ("Bike Lane", (128, 64, 255)), ("Crosswalk - Plain", (140, 140, 200)),
    ("Curb Cut", (170, 170, 170)), ("Parking", (250, 170, 160)), ("Pedestrian Area", (96, 96, 96)),
    ("Rail Track", (230, 150, 140)), ("Road", (128, 64, 128)), ("Service Lane", (110, 110, 110)),
    ("Sidewalk", (244, 35, 232)), ("Bridge", (150, 100, 100)), ("Building", (70, 70, 70)),
    ("Tunnel", (150, 120, 90)), ("Person", (220, 20, 60)), ("Bicyclist", (255, 0, 0)),
    ("Motorcyclist", (255, 0, 100)), ("Other Rider", (255, 0, 200)),
    ("Lane Marking - Crosswalk", (200, 128, 128)), ("Lane Marking - General", (255, 255, 255)),
    ("Mountain", (64, 170, 64)), ("Sand", (230, 160, 50)), ("Sky", (70, 130, 180)), ("Snow", (190, 255, 255)),
    ("Terrain", (152, 251, 152)), ("Vegetation", (107, 142, 35)), ("Water", (0, 170, 30)),
    ("Banner", (255, 255, 128)), ("Bench", (250, 0, 30)), ("Bike Rack", (100, 140, 180)),
    ("Billboard", (220, 220, 220)), ("Catch Basin", (220, 128, 128)), ("CCTV Camera", (222, 40, 40)),
    ("Fire Hydrant", (100, 170, 30)), ("Junction Box", (40, 40, 40)), ("Mailbox", (33, 33, 33)),
    ("Manhole", (100, 128, 160)), ("Phone Booth", (142, 0, 0)), ("Pothole", (70, 100, 150)),
    ("Street Light", (210, 170, 100)), ("Pole", (153, 153, 153)), ("Traffic Sign Frame", (128, 128, 128)),
    ("Utility Pole", (0, 0, 80)), ("Traffic Light", (250, 170, 30)), ("Traffic Sign (Back)", (192, 192, 192)),
    ("Traffic Sign (Front)", (220, 220, 0)), ("Trash Can", (140, 140, 20)), ("Bicycle", (119, 11, 32)),
    ("Boat", (150, 0, 255)), ("Bus", (0, 60, 100)), ("Car", (0, 0, 142)), ("Caravan", (0, 0, 90)),
    ("Motorcycle", (0, 0, 230)), ("On Rails", (0, 80, 100)), ("Other Vehicle", (128, 64, 64)),
    ("Trailer", (0, 0, 110)), ("Truck", (0, 0, 70)), ("Wheeled Slow", (0, 0, 192)), ("Car Mount", (32, 32, 32)),
    ("Ego Vehicle", (120, 10, 10)), ("Unlabeled", (0, 0, 0)),
)
NUM_CLASSES = UNLABELED_ID  # 65 trained classes: ids 0..64

MAPILLARY_CLASSES = StrictClassTable(
    names=tuple(name for name, _ in LABELS_V12[:NUM_CLASSES]),
    palette=tuple(colour for _, colour in LABELS_V12[:NUM_CLASSES]),
    ignore_index=IGNORE_INDEX,
    id_to_train={**{i: i for i in range(NUM_CLASSES)}, UNLABELED_ID: IGNORE_INDEX},
)


def expected_tree(root: str | Path) -> str:
    return "\n".join([
        f"Expected Mapillary Vistas v1.2 layout under {root}:",
        f"  {root}/",
        "  ├── config.json                      (the v1.2 table of 66 labels)",
        "  ├── training/",
        "  │   ├── images/<key>.jpg",
        "  │   └── labels/<key>.png             (label ids 0..65, 65 = unlabeled)",
        "  ├── validation/",
        "  │   ├── images/<key>.jpg",
        "  │   └── labels/<key>.png",
        "  └── testing/images/<key>.jpg          (no labels)",
        "(from the v2.0 download: <split>/v1.2/labels/<key>.png and config_v1.2.json)",
    ])


def check_config(root: Path) -> Path | None:
    """Checks ``config.json`` (or ``config_v1.2.json``) against the v1.2 table when
    one is there, so that labels of another version are not read as v1.2 ids."""
    for name in ("config.json", "config_v1.2.json"):
        path = root / name
        if path.is_file():
            break
    else:
        return None
    try:
        labels = json.loads(path.read_text())["labels"]
        found = [(str(lab["readable"]), tuple(int(c) for c in lab["color"])) for lab in labels]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadFileError(path, "not a Mapillary config (a 'labels' list with 'readable' and 'color'): "
                                 f"{exc}") from None
    if found != list(LABELS_V12):
        first = next((i for i, (a, b) in enumerate(zip(found, LABELS_V12)) if a != b), min(len(found), 66))
        raise BadFileError(path, f"has {len(found)} labels that differ from the v1.2 table of 66 from label id "
                                 f"{first}; this reader needs the v1.2 labels (ids 0..65)")
    return path


def _image_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


class MapillaryDataset(SegmentationDataset):
    """Mapillary Vistas v1.2; items as :class:`SegmentationDataset`'s (65 classes)."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 skip_corrupt: bool = False):
        root = dataset_root("Mapillary", root, split, SPLITS, expected_tree)
        check_config(root)
        pairs = self._find_pairs(root, split)
        super().__init__(pairs, MAPILLARY_CLASSES, transform=transform, skip_corrupt=skip_corrupt, root=root,
                         split=split, identity=f"mapillary:{root.resolve()}:{split}")

    @staticmethod
    def _find_pairs(root: Path, split: str) -> list[Pair]:
        base = root / SPLIT_DIRS[split]
        image_dir = base / "images"
        if not image_dir.is_dir():
            raise DatasetNotFoundError(f"Mapillary: no image folder {image_dir} for split {split!r}.\n"
                                       + expected_tree(root))
        images = _image_files(image_dir)
        if not images:
            raise DatasetNotFoundError(f"Mapillary: {image_dir} holds no images.\n" + expected_tree(root))
        if split == "test":
            return [Pair(image=p, label=None, name=stem) for stem, p in images.items()]
        label_dir = next((d for d in (base / "labels", base / "v1.2" / "labels") if d.is_dir()), None)
        if label_dir is None:
            raise DatasetNotFoundError(f"Mapillary: no label folder {base / 'labels'} (or {base / 'v1.2' / 'labels'}) "
                                       f"for split {split!r}.\n" + expected_tree(root))
        labels = {p.stem: p for p in sorted(label_dir.glob("*.png"))}
        # The original requires the two folders to hold the same names.
        no_label = [images[s].name for s in images if s not in labels]
        no_image = [labels[s].name for s in labels if s not in images]
        if no_label or no_image:
            raise DatasetNotFoundError(
                f"Mapillary: {image_dir} and {label_dir} do not match: {len(no_label)} image(s) without a label "
                f"{no_label[:3]}, {len(no_image)} label(s) without an image {no_image[:3]}")
        return [Pair(image=p, label=labels[stem], name=stem) for stem, p in images.items()]
