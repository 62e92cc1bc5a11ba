"""A class table that rejects raw label values its id map does not list.

:class:`ClassTable` maps raw values it does not know to the ignore index.  For
datasets whose label files hold a closed set of ids (Mapillary 0..65, CamVid 0..11,
KITTI's Cityscapes ids 0..33), a value outside that set means a file of another
dataset or a damaged one; the original code would pass it on to the loss, which
fails far from the cause.  Here it is an error naming the values (the dataset turns
it into a :class:`~hanet.data.errors.BadFileError` naming the file).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .labels import ClassTable


@dataclass(frozen=True, eq=False)
class StrictClassTable(ClassTable):
    """A :class:`ClassTable` whose ``id_to_train`` (a mapping) lists every valid raw id."""

    def __post_init__(self):
        mapping = self.id_to_train
        if not isinstance(mapping, Mapping) or not mapping:
            raise TypeError("StrictClassTable: id_to_train must be a non-empty mapping {raw id: train id}")
        known = np.zeros(256, dtype=bool)
        known[[int(k) for k in mapping if 0 <= int(k) <= 255]] = True
        known.setflags(write=False)
        super().__post_init__()  # checks the ids and turns the mapping into a lookup table
        object.__setattr__(self, "known_ids", known)

    def to_train_ids(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.size and raw.min() >= 0 and raw.max() <= 255:  # out-of-range values: the parent's error
            unknown = ~self.known_ids[raw.astype(np.uint8, copy=False)]
            if unknown.any():
                values = [int(v) for v in np.unique(raw[unknown])[:8]]
                valid = np.flatnonzero(self.known_ids)
                raise ValueError(f"label holds values {values} that are not ids of this dataset "
                                 f"(valid: {_ranges(valid)})")
        return super().to_train_ids(raw)


def _ranges(values: np.ndarray) -> str:
    """[0, 1, 2, 5, 255] -> '0..2, 5, 255'."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}..{v}" if v != start else f"{v}")
            start = None
    return ", ".join(out)
