"""Datasets of a training run, built from the config's data section."""
from __future__ import annotations

import torch

from .config import Config


def _dataset(cfg: Config, split: str, transform):
    from hanet.data import build_dataset

    d = cfg.data
    kwargs = {}
    if d.dataset == "folder":
        if not d.classes_file:
            raise ValueError("data.dataset=folder needs data.classes_file (a YAML/JSON class table)")
        kwargs["classes"] = d.classes_file
    return build_dataset(d.dataset, d.root, split, transform=transform, skip_corrupt=d.skip_corrupt,
                         cv_split=d.cv_split, **kwargs)


def build_train_set(cfg: Config):
    """(training dataset, its class table): augmented crops, class-uniform sampling."""
    from hanet.data import UniformClassDataset, train_transforms

    d = cfg.data
    transform = train_transforms(d.crop_size, d.scale_min, d.scale_max, d.color_aug, d.gblur, crop_nopad=d.crop_nopad,
                                 pre_size=d.pre_size, rrotate=d.rrotate, bblur=d.bblur)
    base = _dataset(cfg, d.train_split, transform)
    base.cache_decoded = d.cache_decoded
    classes = base.classes
    if d.class_uniform_pct > 0:
        coarse = None
        if d.coarse_boost_classes:
            if d.dataset != "cityscapes":
                raise ValueError("data.coarse_boost_classes needs data.dataset=cityscapes (coarse train_extra labels)")
            from hanet.data import build_dataset

            coarse = build_dataset("cityscapes", d.root, "train_extra", transform=transform, quality="coarse",
                                   skip_corrupt=d.skip_corrupt)
        base = UniformClassDataset(base, class_uniform_pct=d.class_uniform_pct,
                                   class_uniform_tile=d.class_uniform_tile, seed=cfg.train.seed,
                                   coarse=coarse, coarse_boost_classes=d.coarse_boost_classes or ())
    return base, classes


def build_val_set(cfg: Config):
    from hanet.data import eval_transforms

    return _dataset(cfg, cfg.data.val_split, eval_transforms())


def collate(samples: list[dict]) -> dict:
    out = {k: torch.stack([s[k] for s in samples]) for k in ("image", "label", "pos_h")}
    out["name"] = [s.get("name", "") for s in samples]
    return out
