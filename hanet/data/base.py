"""The dataset class shared by every labelled dataset: a list of (image, label) file
pairs plus a :class:`ClassTable`.

Subclasses (Cityscapes, BDD100K, plain folders) only find the pairs; loading,
checking, label mapping, the position map and the transform live here.

An item is a dict:

* ``image``: the RGB image, a uint8 PIL image without a transform, else whatever
  the transform makes of it (a float 3xHxW tensor for the standard pipelines);
* ``label``: int64 (H, W) train ids, ``ignore_index`` where unlabelled;
* ``pos_h``: int64 (H, W) row positions (see :mod:`hanet.data.position`), 128 on padding;
* ``name``: the image's stem without dataset suffixes (e.g. ``aachen_000000_000019``);
* ``path``: the image file, as a string.

Transforms receive and return the dict ``{"image", "label", "pos_h"}`` (plus
``"centroid"`` when class-uniform sampling asks for a crop around a point).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import BadFileError, DatasetNotFoundError, SizeMismatchError, report_skipped
from .io import read_image, read_label
from .labels import ClassTable
from .position import position_map



def dataset_root(kind: str, root: str | Path, split: str, splits: Iterable[str],
                 expected_tree: Callable[[Path], str], split_note: str = "") -> Path:
    """Checks a reader's split name and root folder; returns the root as a Path.  An
    unknown split is a ValueError listing the known ones; a missing root is a
    DatasetNotFoundError drawing the layout the reader expects."""
    splits = tuple(splits)
    if split not in splits:
        raise ValueError(f"{kind}: unknown split {split!r}; choose one of {', '.join(splits)}{split_note}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"{kind} root {root} does not exist or is not a folder.\n" + expected_tree(root))
    return root


def require_labels(pairs: list, what: str) -> list:
    """Returns `pairs` when every label file exists; else a DatasetNotFoundError
    naming how many of `what` (e.g. "CamVid: images of split 'val'") lack one, and the first five."""
    missing = [p.label for p in pairs if not p.label.is_file()]
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:5])
        raise DatasetNotFoundError(f"{what}: {len(missing)} of {len(pairs)} have no label file:\n{shown}")
    return pairs

@dataclass(frozen=True)
class Pair:
    """One sample's files; ``label`` None means unlabelled (every pixel ignored)."""

    image: Path
    label: Path | None
    name: str


def _writable(arr: np.ndarray) -> np.ndarray:
    # torch.from_numpy warns on read-only arrays (PIL's buffers are read-only).
    return arr if arr.flags.writeable and arr.flags.c_contiguous else np.array(arr, order="C")


class SegmentationDataset(Dataset):
    """Labelled image pairs with shared loading; see the module docstring for items.

    ``skip_corrupt=True`` decodes every pair once at construction (in threads) and
    drops the pairs whose image or label cannot be read, or whose sizes differ;
    ``skipped`` lists them as (path, reason), ``num_skipped`` counts them, and a
    warning on the ``hanet.data`` logger reports them.  With
    ``skip_corrupt=False`` a bad pair raises a :class:`BadFileError` naming the file
    when it is loaded.
    """

    def __init__(self, pairs: Iterable[Pair], classes: ClassTable, transform: Callable | None = None,
                 skip_corrupt: bool = False, root: str | Path | None = None, split: str | None = None,
                 identity: str | None = None):
        self.pairs: list[Pair] = list(pairs)
        self.classes = classes
        self.transform = transform
        self.root = Path(root) if root is not None else None
        self.split = split
        # What the class-centroid cache is keyed by (with the tile size).
        self.identity = identity or f"{type(self).__name__}:{self.root}:{split}"
        self.skipped: list[tuple[str, str]] = []
        if skip_corrupt:
            self._drop_bad_pairs()
            if not self.pairs:
                raise DatasetNotFoundError(f"{self.identity}: no readable image/label pair "
                                           f"({self.num_skipped} skipped, first: {self.skipped[0]})")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.pairs)

    # -- loading -------------------------------------------------------------------------------

    def load_label(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) uint8 train ids of sample ``index``; all ignore when it has no label file.

        ``size`` (H, W), when given, must match the label's size.
        """
        pair = self.pairs[index]
        if pair.label is None:
            if size is None:
                raise ValueError(f"{pair.image}: has no label file, so its size must be given")
            return np.full(size, self.classes.ignore_index, dtype=np.uint8)
        raw = read_label(pair.label)
        if size is not None and raw.shape != tuple(size):
            raise SizeMismatchError(pair.label, f"label is {raw.shape[1]}x{raw.shape[0]} (WxH) but its "
                                                f"image {pair.image} is {size[1]}x{size[0]}")
        try:
            return self.classes.to_train_ids(raw)
        except ValueError as exc:
            raise BadFileError(pair.label, str(exc)) from None

    def load(self, index: int) -> dict:
        """The untransformed sample: PIL image, uint8 (H, W) label and position map.

        With ``cache_decoded`` set, each sample is decoded once and kept in memory (a
        copy is returned, so transforms never touch the kept one): for small datasets
        read many times over, where decoding is a large part of a step (the demo's 400
        scenes of 128x256 take 52 MB)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if not getattr(self, "cache_decoded", False):
            return self._decode(index)
        index %= len(self)
        cache = self.__dict__.setdefault("_decoded", {})
        if index not in cache:
            cache[index] = self._decode(index)
        kept = cache[index]
        return {"image": kept["image"].copy(), "label": kept["label"].clone(), "pos_h": kept["pos_h"].clone()}

    def _decode(self, index: int) -> dict:
        image = read_image(self.pairs[index].image)
        w, h = image.size
        label = self.load_label(index, size=(h, w))
        return {"image": image, "label": torch.from_numpy(_writable(label)), "pos_h": position_map(h, w)}

    def get(self, index: int, centroid: tuple[int, int] | None = None) -> dict:
        """Sample ``index`` after the transform; ``centroid`` (row, col) asks a
        centroid-aware crop to keep that pixel (class-uniform sampling)."""
        pair = self.pairs[index]
        sample = self.load(index)
        if centroid is not None:
            sample["centroid"] = (int(centroid[0]), int(centroid[1]))
        if self.transform is not None:
            sample = self.transform(sample)
        sample.pop("centroid", None)
        sample["label"] = torch.as_tensor(sample["label"]).to(torch.int64)
        sample["pos_h"] = torch.as_tensor(sample["pos_h"]).to(torch.int64)
        sample["name"] = pair.name
        sample["path"] = str(pair.image)
        return sample

    def __getitem__(self, index: int) -> dict:
        return self.get(index)

    # -- checks --------------------------------------------------------------------------------

    def _problem(self, index: int) -> tuple[str, str] | None:
        try:
            self.load(index)
        except BadFileError as exc:
            return exc.path, exc.problem
        return None

    def _drop_bad_pairs(self) -> None:
        workers = max(1, min(8, os.cpu_count() or 1))
        # PIL releases the GIL while decoding, so threads overlap the reads.
        with ThreadPoolExecutor(workers) as pool:
            problems = list(pool.map(self._problem, range(len(self.pairs))))
        self.skipped = [p for p in problems if p is not None]
        report_skipped(self.identity, self.skipped, len(self.pairs))
        self.pairs = [pair for pair, p in zip(self.pairs, problems) if p is None]
