"""Class-uniform sampling, as the original's ``--class_uniform_pct`` and
``--class_uniform_tile``.

1. Centroids.  Each label image is cut into ``tile`` x ``tile`` tiles (the last
   ones smaller); for every class present in a tile, one point stands for it: the
   class pixel nearest to the mean position of that class's pixels in the tile (the
   mean itself when it lies on the class; a point on the class guarantees that a
   crop around it contains the class, which a plain centre of mass does not for
   ring- or L-shaped regions).  Computing them reads every label once, so they are
   cached on disk as JSON, keyed by the dataset's identity (kind, root, split,
   quality) and the tile size; the cache stores a signature of the label files
   (paths, sizes, modification times) and is recomputed when that changes.

2. Epochs.  ``UniformClassDataset.build_epoch(epoch)`` draws the epoch's samples
   from a generator seeded by (seed, epoch): a fraction ``class_uniform_pct`` of
   them are class-uniform (classes in equal shares, remainder to random classes;
   within a class, a centroid uniformly among all its centroids over all images),
   the rest are images drawn uniformly (a shuffled pass over the images).  A
   class-uniform sample asks the transform to crop around its centroid
   (``RandomCrop`` does).  Every process that builds the same epoch gets the same
   list, so a ``DistributedSampler`` (or ``hanet.training``'s sampler) can split it;
   call ``build_epoch`` on every rank before each epoch.  With DataLoader workers,
   do not use ``persistent_workers=True``: workers would keep the old epoch's list.

3. Coarse boosting (optional, simple): pass ``coarse=`` a second dataset (e.g.
   Cityscapes ``train_extra`` with ``quality="coarse"``) and
   ``coarse_boost_classes=`` train ids.  The coarse images' centroids of those
   classes join those classes' pools, so rare classes are drawn from fine and
   coarse images alike; coarse images are used for nothing else.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from torch.utils.data import Dataset

from .base import SegmentationDataset

CACHE_FORMAT = "hanet-class-centroids-1"


def tile_centroids(label: np.ndarray, num_classes: int, tile: int) -> dict[int, list[tuple[int, int]]]:
    """{class: [(row, col), ...]} of one (H, W) train-id label: one point per class
    present in each tile (see the module docstring).  Values >= num_classes (ignore)
    are skipped."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    label = np.asarray(label)
    h, w = label.shape
    out: dict[int, list[tuple[int, int]]] = {}
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            t = label[y0:y0 + tile, x0:x0 + tile]
            th, tw = t.shape
            flat = t.reshape(-1).astype(np.int64)
            flat = np.where(flat < num_classes, flat, num_classes)  # one bin for everything ignored
            count = np.bincount(flat, minlength=num_classes + 1)[:num_classes]
            present = np.flatnonzero(count)
            if present.size == 0:
                continue
            rows = np.repeat(np.arange(th, dtype=np.float64), tw)
            cols = np.tile(np.arange(tw, dtype=np.float64), th)
            mean_r = np.bincount(flat, weights=rows, minlength=num_classes + 1)[present] / count[present]
            mean_c = np.bincount(flat, weights=cols, minlength=num_classes + 1)[present] / count[present]
            for c, mr, mc in zip(present.tolist(), mean_r, mean_c):
                r, q = int(round(mr)), int(round(mc))
                if t[r, q] != c:  # the mean is off the class: take its nearest class pixel
                    idx = np.flatnonzero(flat == c)
                    rr, cc = np.divmod(idx, tw)
                    k = int(np.argmin((rr - mr) ** 2 + (cc - mc) ** 2))
                    r, q = int(rr[k]), int(cc[k])
                out.setdefault(c, []).append((y0 + r, x0 + q))
    return out


def _signature(dataset: SegmentationDataset) -> str:
    """Hash of the label files (path, size, mtime): changes when the file list does."""
    h = hashlib.sha1()
    for pair in dataset.pairs:
        h.update(str(pair.image).encode())
        if pair.label is not None:
            st = pair.label.stat()
            h.update(f"|{pair.label}|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update(b"\n")
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$HANET_CACHE/centroids``, else ``~/.cache/hanet/centroids``."""
    base = os.environ.get("HANET_CACHE") or Path.home() / ".cache" / "hanet"
    return Path(base) / "centroids"


def cache_path(dataset: SegmentationDataset, tile: int, cache_dir: str | Path | None = None) -> Path:
    """Where the centroids of ``dataset`` at ``tile`` are cached."""
    key = hashlib.sha1(f"{dataset.identity}|tile={tile}".encode()).hexdigest()[:20]
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"centroids-{key}.json"


def _compute(dataset: SegmentationDataset, tile: int) -> dict[int, list[tuple[int, int, int]]]:
    n = dataset.classes.num_classes

    def one(i):
        if dataset.pairs[i].label is None:
            return {}
        return tile_centroids(dataset.load_label(i), n, tile)

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # decoding PNGs releases the GIL
        per_image = list(pool.map(one, range(len(dataset))))
    out: dict[int, list[tuple[int, int, int]]] = {}
    for i, cents in enumerate(per_image):
        for c, pts in cents.items():
            out.setdefault(c, []).extend((i, r, q) for r, q in pts)
    return out


def class_centroids(dataset: SegmentationDataset, tile: int = 1024, cache_dir: str | Path | None = None,
                    refresh: bool = False) -> tuple[dict[int, np.ndarray], bool]:
    """{class: int64 array (n, 3) of (image index, row, col)} for ``dataset``, and
    whether it came from the cache.  ``refresh`` recomputes even with a valid cache."""
    path = cache_path(dataset, tile, cache_dir)
    sig = _signature(dataset)
    if path.is_file() and not refresh:
        try:
            data = json.loads(path.read_text())
            if (data.get("format") == CACHE_FORMAT and data.get("signature") == sig and data.get("tile") == tile
                    and data.get("identity") == dataset.identity):
                return {int(c): np.asarray(v, dtype=np.int64).reshape(-1, 3)
                        for c, v in data["centroids"].items()}, True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"{path}: unreadable centroid cache ({exc}); recomputing", stacklevel=2)
    cents = _compute(dataset, tile)
    data = {"format": CACHE_FORMAT, "identity": dataset.identity, "tile": tile, "signature": sig,
            "num_images": len(dataset), "centroids": {str(c): v for c, v in sorted(cents.items())}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)  # atomic: concurrent ranks never read half a file
    except OSError as exc:
        warnings.warn(f"cannot write the centroid cache {path}: {exc}", stacklevel=2)
    return {c: np.asarray(v, dtype=np.int64).reshape(-1, 3) for c, v in cents.items()}, False


class EpochItem(NamedTuple):
    """One sample of an epoch: ``source`` 0 = base dataset, 1 = coarse; ``class_id``
    -1 and ``centroid`` None for an image drawn uniformly."""

    source: int
    index: int
    class_id: int
    centroid: tuple[int, int] | None


class UniformClassDataset(Dataset):
    """Wraps a labelled dataset with class-uniform sampling (module docstring).

    ``base``: the dataset (its transform must crop around ``centroid``, as
    ``train_transforms`` does); ``class_uniform_pct``: fraction of class-uniform
    samples per epoch (0: plain shuffled passes over the images); ``class_uniform_tile``:
    tile size of the centroids; ``seed``: with the epoch, fixes the epoch's list;
    ``cache_dir``: centroid cache folder (default ``default_cache_dir()``);
    ``coarse``, ``coarse_boost_classes``: coarse boosting; ``epoch_size``: samples per
    epoch (default ``len(base)``).  Call ``build_epoch(epoch)`` before each epoch.

    Attributes: ``items`` (the current epoch's :class:`EpochItem` list), ``epoch``,
    ``pools`` ({class: (n, 4) int64 array of source, image, row, col}) and
    ``from_cache`` (False when centroids had to be computed).
    """

    def __init__(self, base: SegmentationDataset, class_uniform_pct: float = 0.5, class_uniform_tile: int = 1024,
                 seed: int = 0, cache_dir: str | Path | None = None, coarse: SegmentationDataset | None = None,
                 coarse_boost_classes: Iterable[int] = (), epoch_size: int | None = None):
        if not 0.0 <= class_uniform_pct <= 1.0:
            raise ValueError(f"class_uniform_pct must be in [0, 1], got {class_uniform_pct}")
        if len(base) == 0:
            raise ValueError("UniformClassDataset: the base dataset is empty")
        self.base, self.coarse = base, coarse
        self.pct, self.tile, self.seed = float(class_uniform_pct), int(class_uniform_tile), int(seed)
        self.epoch_size = int(epoch_size) if epoch_size is not None else len(base)
        self.num_classes = base.classes.num_classes
        self.boost = sorted({int(c) for c in coarse_boost_classes})
        if self.boost and coarse is None:
            raise ValueError("coarse_boost_classes needs a coarse dataset (coarse=...)")
        if coarse is not None and coarse.transform is None and base.transform is not None:
            raise ValueError("the coarse dataset has no transform; give it the base dataset's")
        self.pools: dict[int, np.ndarray] = {}  # class -> (n, 4): source, image, row, col
        self.from_cache = True
        if self.pct > 0:
            cents, hit = class_centroids(base, self.tile, cache_dir)
            self.from_cache = hit
            self.pools = {c: np.hstack([np.zeros((len(v), 1), np.int64), v]) for c, v in cents.items() if len(v)}
            if coarse is not None and self.boost:
                extra, hit2 = class_centroids(coarse, self.tile, cache_dir)
                self.from_cache = self.from_cache and hit2
                for c in self.boost:
                    if c in extra and len(extra[c]):
                        rows = np.hstack([np.ones((len(extra[c]), 1), np.int64), extra[c]])
                        self.pools[c] = np.vstack([self.pools[c], rows]) if c in self.pools else rows
        self.items: list[EpochItem] = []
        self.epoch = -1
        self.build_epoch(0)

    def build_epoch(self, epoch: int) -> None:
        """Draws the samples of ``epoch`` (same seed and epoch -> same list)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n = self.epoch_size
        classes = sorted(self.pools)
        n_uniform = int(round(n * self.pct)) if classes else 0
        items: list[EpochItem] = []
        if n_uniform:
            share, rest = divmod(n_uniform, len(classes))
            counts = dict.fromkeys(classes, share)
            for c in rng.choice(classes, size=rest, replace=False).tolist():
                counts[c] += 1
            for c in classes:
                pool = self.pools[c]
                for k in rng.integers(0, len(pool), size=counts[c]).tolist():
                    src, img, r, q = (int(v) for v in pool[k])
                    items.append(EpochItem(src, img, c, (r, q)))
        n_images = n - n_uniform
        order = np.concatenate([rng.permutation(len(self.base)) for _ in range(-(-n_images // len(self.base)))]) \
            if n_images else np.zeros(0, np.int64)
        items.extend(EpochItem(0, int(i), -1, None) for i in order[:n_images])
        self.items = [items[i] for i in rng.permutation(len(items)).tolist()]
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        source = self.base if item.source == 0 else self.coarse
        return source.get(item.index, centroid=item.centroid)
