"""Checks of the keys that reproduce the original's training flags: values the
original would crash on, silently ignore, or treat as something else are errors
here, each naming the key and the original's flag."""
from __future__ import annotations

import math


def validate_original_semantics(cfg) -> None:
    from .config import ConfigError

    t, d, m = cfg.train, cfg.data, cfg.model
    # The original tests "> 0": a negative rate would silently mean "no group of its own".
    for key, v in (("train.hanet_lr", t.hanet_lr), ("train.backbone_lr", t.backbone_lr),
                   ("train.hanet_poly_exp", t.hanet_poly_exp)):
        if v < 0:
            raise ConfigError(f"{key} must be >= 0 (0 is the original's 'same as the main group'), got {v}")
    if not 0.0 <= d.color_aug <= 0.5:
        # It is also the hue range; the original's adjust_hue raises beyond +-0.5.
        raise ConfigError(f"data.color_aug (the original's --color_aug) must be in [0, 0.5], got {d.color_aug}")
    if d.rrotate < 0:
        raise ConfigError(f"data.rrotate (the original's --rrotate, degrees) must be >= 0, got {d.rrotate}")
    if d.pre_size is not None and d.pre_size < 1:
        raise ConfigError(f"data.pre_size (the original's --pre_size) must be >= 1 or null, got {d.pre_size}")
    if not math.isfinite(t.wt_bound):
        raise ConfigError(f"train.wt_bound must be finite, got {t.wt_bound}")
    if not t.img_wt_loss and (t.batch_weighting or t.wt_bound != 1.0):
        raise ConfigError("train.batch_weighting and train.wt_bound (the original's --batch_weighting, --wt_bound) "
                          "only change train.img_wt_loss's weights; without it they have no effect")
    if d.no_pos_dataset:
        if m.aux_loss:
            raise ConfigError("data.no_pos_dataset with model.aux_loss: the original's --no_pos_dataset loader gives "
                              "the aux head no labels and its training crashes; set model.aux_loss=false")
        if any(m.hanet) and m.hanet_pos[0] != 0:
            raise ConfigError(
                "data.no_pos_dataset gives HANet no row positions, so the original adds no positional term at any "
                f"site; set model.hanet_pos=[0, {m.hanet_pos[1]}] to train that same model")
