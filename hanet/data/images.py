"""Plain images for inference: a folder, a glob pattern, a file, or a list of them.

Items are dicts with ``image`` (PIL RGB, or the transform's output), ``pos_h``
(int64 (H, W) row positions of the whole frame, see :mod:`hanet.data.position`),
``name`` (file stem), ``path`` and ``size`` ((H, W) of the file).  Transforms get
``{"image", "pos_h"}`` (no label), so ``eval_transforms()`` applies as is.
"""
from __future__ import annotations

import glob
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .errors import CorruptFileError, DatasetNotFoundError, report_skipped
from .io import IMAGE_EXTENSIONS, read_image
from .position import position_map


def _expand(source: str | Path, recursive: bool) -> list[Path]:
    text = str(source)
    if any(ch in text for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = path.rglob("*") if recursive else path.iterdir()
        return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    raise DatasetNotFoundError(f"{path}: no such file or folder")


class ImageFolder(Dataset):
    """Unlabelled images (see the module docstring).

    ``source``: a folder (searched recursively unless ``recursive=False``), a glob
    pattern, an image file, or a list of these.  An unreadable file raises a
    :class:`CorruptFileError` naming it when loaded; with ``skip_corrupt=True`` all
    files are decoded once at construction and the unreadable ones are dropped,
    listed in ``skipped`` (path, reason), counted in ``num_skipped`` and reported
    as a warning on the ``hanet.data`` logger.
    """

    def __init__(self, source: str | Path | Iterable[str | Path], transform: Callable | None = None,
                 recursive: bool = True, skip_corrupt: bool = False):
        sources = [source] if isinstance(source, (str, Path)) else list(source)
        self.files: list[Path] = [f for s in sources for f in _expand(s, recursive)]
        if not self.files:
            raise DatasetNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {sources}")
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []
        if skip_corrupt:
            kept = []
            for f in self.files:
                try:
                    read_image(f)
                    kept.append(f)
                except CorruptFileError as exc:
                    self.skipped.append((exc.path, exc.problem))
            report_skipped(f"images in {', '.join(map(str, sources))}", self.skipped, len(self.files))
            self.files = kept
            if not kept:
                raise DatasetNotFoundError(f"none of the {len(self.skipped)} image files could be read; "
                                           f"first: {self.skipped[0]}")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        image = read_image(path)
        w, h = image.size
        sample = {"image": image, "pos_h": position_map(h, w)}
        if self.transform is not None:
            sample = self.transform(sample)
        sample["pos_h"] = torch.as_tensor(sample["pos_h"]).to(torch.int64)
        sample.update(name=path.stem, path=str(path), size=(h, w))
        return sample
