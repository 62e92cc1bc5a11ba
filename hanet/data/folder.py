"""A generic segmentation dataset: a folder of images and a folder of label images.

Images and labels are matched by file stem: image ``<stem>.<ext>`` goes with label
``<stem><label_suffix>.<ext>`` (any image extension; PNG is the usual choice for
labels).  Label values are raw ids mapped through the class table's
``id_to_train`` when it has one, otherwise they must be train ids already.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Pair, SegmentationDataset
from .errors import DatasetNotFoundError
from .io import IMAGE_EXTENSIONS
from .labels import ClassTable


def _by_stem(folder: Path, suffix: str, recursive: bool) -> dict[str, Path]:
    """{stem without suffix: file} of the image files in ``folder``; rejects duplicate stems."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    found: dict[str, Path] = {}
    for f in sorted(files):
        if not f.is_file() or f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        rel = f.relative_to(folder).with_suffix("").as_posix()
        if suffix:
            if not rel.endswith(suffix):
                continue
            rel = rel[: -len(suffix)]
        if rel in found:
            raise DatasetNotFoundError(f"{folder}: two files share the stem {rel!r}: {found[rel].name} and {f.name}")
        found[rel] = f
    return found


class FolderDataset(SegmentationDataset):
    """Images in ``images_dir`` with labels in ``labels_dir`` (matched by stem).

    ``classes``: the dataset's :class:`ClassTable`; ``label_suffix``: what label stems
    add to image stems (e.g. ``"_labelIds"``); ``recursive``: also look in
    sub-folders (stems are then relative paths).  ``labels_dir=None`` loads the
    images unlabelled (every pixel ignored).  An image without a label is an error.
    """

    def __init__(self, images_dir: str | Path, labels_dir: str | Path | None, classes: ClassTable,
                 transform: Callable | None = None, label_suffix: str = "", recursive: bool = False,
                 skip_corrupt: bool = False, split: str | None = None):
        images_dir = Path(images_dir).expanduser()
        tree = (f"Expected:\n  {images_dir}/<stem>.png|jpg...\n"
                f"  {labels_dir}/<stem>{label_suffix}.png   (one label per image, same stem)")
        if not images_dir.is_dir():
            raise DatasetNotFoundError(f"image folder {images_dir} does not exist.\n{tree}")
        images = _by_stem(images_dir, "", recursive)
        if not images:
            raise DatasetNotFoundError(f"{images_dir} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).\n{tree}")
        if labels_dir is None:
            pairs = [Pair(image=p, label=None, name=stem) for stem, p in images.items()]
        else:
            labels_dir = Path(labels_dir).expanduser()
            if not labels_dir.is_dir():
                raise DatasetNotFoundError(f"label folder {labels_dir} does not exist.\n{tree}")
            labels = _by_stem(labels_dir, label_suffix, recursive)
            missing = [p for stem, p in images.items() if stem not in labels]
            if missing:
                shown = "\n".join(f"  {p}" for p in missing[:5])
                raise DatasetNotFoundError(f"{len(missing)} of {len(images)} images have no label "
                                           f"'<stem>{label_suffix}.<ext>' in {labels_dir}:\n{shown}")
            pairs = [Pair(image=p, label=labels[stem], name=stem) for stem, p in images.items()]
        super().__init__(pairs, classes, transform=transform, skip_corrupt=skip_corrupt, root=images_dir,
                         split=split, identity=f"folder:{images_dir.resolve()}:"
                                  f"{labels_dir.resolve() if labels_dir else None}:{label_suffix}")
