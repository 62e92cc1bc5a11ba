"""The original's cross-validation splits (``--cv``) of datasets grouped in folders.

Cityscapes (cities) and GTAV (its sub-folders) are split the same way by the
original: the groups of the official val split, then the groups of the official
train split sorted by name, form one list of N groups.  Split ``k`` (0..2) puts the
window of ``len(val groups)`` groups starting at ``k * N // 3`` into val and the
rest into train.  So split 0 is the official train/val split, and on Cityscapes
(3 val + 18 train cities, offsets 0, 7, 14) split 1 validates on darmstadt,
dusseldorf, erfurt and split 2 on monchengladbach, strasbourg, stuttgart, training
on the 18 other cities (the official val cities included).

The original lists the val groups in directory order (unsorted); here they are
sorted, so the result does not depend on the file system.  This changes nothing
unless a window starts inside the val groups, which never happens for 3 splits
unless the val groups are more than a third of all groups.
"""
from __future__ import annotations

from pathlib import Path

CV_SPLITS = 3  # the original's cfg.DATASET.CV_SPLITS


def check_cv_split(cv_split: int, what: str) -> int:
    """``cv_split`` as an int in 0..CV_SPLITS-1, else a ValueError naming ``what``."""
    if isinstance(cv_split, bool) or not isinstance(cv_split, int) or not 0 <= cv_split < CV_SPLITS:
        raise ValueError(f"{what}: cv_split must be an integer in 0..{CV_SPLITS - 1}, got {cv_split!r}")
    return cv_split


def cv_partition(train_groups: list[str], val_groups: list[str], cv_split: int,
                 n_splits: int = CV_SPLITS) -> dict[str, list[tuple[str, str]]]:
    """{"train": [...], "val": [...]}, each a list of (official split, group) in
    the original's order (val groups first, then train groups by name)."""
    everything = [("val", g) for g in sorted(val_groups)] + [("train", g) for g in sorted(train_groups)]
    offset = cv_split * len(everything) // n_splits
    in_val = range(offset, offset + len(val_groups))
    return {"train": [g for j, g in enumerate(everything) if j not in in_val],
            "val": [g for j, g in enumerate(everything) if j in in_val]}


def subfolders(folder: Path) -> list[str]:
    """Names of the sub-folders of ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir())
