"""Class tables: names, colours and id maps of the segmentation classes.

The Cityscapes tables are derived from the dataset's label list
(:mod:`hanet.data.cityscapes_labels`, checked against ``cityscapesscripts`` by the tests):

* ``LABEL_TO_TRAIN``: uint8[256], labelId -> trainId, 255 for ignored ids and for
  values the table does not know;
* ``TRAIN_TO_LABEL``: uint8[256], trainId -> labelId, for submission files (the ignore
  value 255 and unused entries map to 0, "unlabeled");
* ``CLASS_NAMES`` (19 names by trainId) and ``PALETTE`` (19 RGB colours by trainId).

A :class:`ClassTable` describes the classes of any dataset; ``CITYSCAPES`` is the one
of Cityscapes (BDD100K uses the same 19 classes, its masks hold trainIds directly).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .cityscapes_labels import LABELS as _CS_LABELS

IGNORE_INDEX = 255
NUM_CLASSES = 19


def _cityscapes_tables():
    """Build the four Cityscapes tables from the label list."""
    label_to_train = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    train_to_label = np.zeros(256, dtype=np.uint8)
    names: dict[int, str] = {}
    colours: dict[int, tuple[int, int, int]] = {}
    for lab in _CS_LABELS:
        if not 0 <= lab.id < 256:  # 'license plate' has id -1: never in a label image
            continue
        evaluated = 0 <= lab.trainId < IGNORE_INDEX
        label_to_train[lab.id] = lab.trainId if evaluated else IGNORE_INDEX
        if evaluated and lab.trainId not in names:
            names[lab.trainId] = lab.name
            colours[lab.trainId] = tuple(int(c) for c in lab.color)
            train_to_label[lab.trainId] = lab.id
    if sorted(names) != list(range(NUM_CLASSES)):
        raise RuntimeError(f"the Cityscapes label table has train ids {sorted(names)}, expected 0..18")
    label_to_train.setflags(write=False)
    train_to_label.setflags(write=False)
    return (label_to_train, train_to_label, tuple(names[i] for i in range(NUM_CLASSES)),
            tuple(colours[i] for i in range(NUM_CLASSES)))


LABEL_TO_TRAIN, TRAIN_TO_LABEL, CLASS_NAMES, PALETTE = _cityscapes_tables()

# labelId -> colour for every Cityscapes labelId (void ids included), as the
# gtFine *_color.png files use.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    lab.id: tuple(int(c) for c in lab.color) for lab in _CS_LABELS if 0 <= lab.id < 256
}
# Cityscapes label name -> labelId (e.g. "ego vehicle" -> 1).
LABEL_IDS: dict[str, int] = {lab.name: lab.id for lab in _CS_LABELS if 0 <= lab.id < 256}


@dataclass(frozen=True, eq=False)
class ClassTable:
    """The classes of a dataset.

    ``names`` and ``palette`` are indexed by train id (0..num_classes-1);
    ``ignore_index`` marks pixels left out of loss and metrics.  ``id_to_train``
    (optional) maps the raw values stored in label files to train ids: a mapping
    {raw: train} or a sequence/array indexed by raw value (0..255); raw values it does
    not cover become ``ignore_index``.  Without it, label files must already hold
    train ids (or ``ignore_index``).
    """

    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    id_to_train: np.ndarray | Mapping[int, int] | Sequence[int] | None = None

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        palette = tuple(tuple(int(c) for c in rgb) for rgb in self.palette)
        if not names:
            raise ValueError("ClassTable: names is empty")
        if len(palette) != len(names):
            raise ValueError(f"ClassTable: {len(names)} names but {len(palette)} palette colours")
        if any(len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb) for rgb in palette):
            raise ValueError("ClassTable: every palette entry must be 3 values in 0..255")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < len(names):
            raise ValueError(f"ClassTable: ignore_index {self.ignore_index} must be in "
                             f"{len(names)}..255 (outside the train ids)")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "palette", palette)
        object.__setattr__(self, "id_to_train", self._lookup(self.id_to_train))

    def _lookup(self, mapping) -> np.ndarray | None:
        """The id map as a read-only uint8[256] lookup table (or None)."""
        if mapping is None:
            return None
        lut = np.full(256, self.ignore_index, dtype=np.uint8)
        if isinstance(mapping, Mapping):
            items = [(int(k), int(v)) for k, v in mapping.items()]
        else:
            values = np.asarray(mapping).reshape(-1)
            if values.size > 256:
                raise ValueError(f"ClassTable: id_to_train has {values.size} entries, at most 256 raw ids")
            items = [(i, int(v)) for i, v in enumerate(values)]
        for raw, train in items:
            if not 0 <= raw <= 255:
                raise ValueError(f"ClassTable: raw label id {raw} outside 0..255")
            if not (0 <= train < len(self.names) or train in (self.ignore_index, 255, -1)):
                raise ValueError(f"ClassTable: raw id {raw} maps to {train}, not a train id "
                                 f"(0..{len(self.names) - 1}) or the ignore index")
            lut[raw] = train if 0 <= train < len(self.names) else self.ignore_index
        lut.setflags(write=False)
        return lut

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_train_ids(self, raw: np.ndarray) -> np.ndarray:
        """Raw label values -> uint8 train ids.

        With an id map, every value 0..255 is mapped (unknown ones to ignore).
        Without one, values must already be train ids or ``ignore_index``; anything
        else raises ``ValueError`` (a label file of another dataset, most likely).
        """
        raw = np.asarray(raw)
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise ValueError(f"label values span {int(raw.min())}..{int(raw.max())}, expected 0..255")
        raw = raw.astype(np.uint8, copy=False)
        if self.id_to_train is not None:
            return self.id_to_train[raw]
        bad = (raw >= self.num_classes) & (raw != self.ignore_index)
        if bad.any():
            values = sorted({int(v) for v in np.unique(raw[bad])[:8]})
            raise ValueError(f"label holds values {values} that are neither train ids (0.."
                             f"{self.num_classes - 1}) nor the ignore index {self.ignore_index}; "
                             f"give the class table an id_to_train map")
        return raw

    def colorize(self, train_ids: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) uint8 colours; ignored/unknown pixels are black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return lut[np.asarray(train_ids).astype(np.uint8, copy=False)]


CITYSCAPES = ClassTable(names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX,
                        id_to_train=LABEL_TO_TRAIN)


def train_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) Cityscapes train ids -> labelIds, as the benchmark's submission format wants."""
    return TRAIN_TO_LABEL[np.asarray(train_ids).astype(np.uint8, copy=False)]


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """n well-spread colours (hues stepped by the golden ratio), for tables without one."""
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65 + 0.35 * (i % 2), 0.95 - 0.3 * (i % 3 == 2))
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(out)


def load_class_table(path) -> ClassTable:
    """A ClassTable from a JSON or YAML file with keys ``names`` (list), optional
    ``palette`` (list of [r, g, b]), ``ignore_index`` (default 255) and ``id_to_train``
    (mapping raw label value -> train id)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read class table: {exc}") from exc
    if not isinstance(data, dict) or "names" not in data:
        raise ValueError(f"{path}: a class table needs a mapping with a 'names' list")
    names = data["names"]
    try:
        return ClassTable(names=tuple(names), palette=tuple(data.get("palette") or default_palette(len(names))),
                          ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
                          id_to_train=data.get("id_to_train"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
