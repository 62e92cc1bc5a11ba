""":func:`load`: a model from any checkpoint file we read, ours or an official one."""
from __future__ import annotations

import os

from hanet.models.deeplab import DeepLabV3Plus

from .io import CheckpointError, safe_load
from .official import is_official, model_from_official
from .ours import model_from_payload
from .schema import is_ours

__all__ = ["load"]


def load(path: str | os.PathLike, **overrides) -> DeepLabV3Plus:
    """Rebuilds a model from a checkpoint: ours (model + config; training checkpoints
    too) or an official HANet one.  Returns it in eval mode.  ``overrides`` change
    non-architectural settings (e.g. ``backend``)."""
    ckpt = safe_load(path)
    if is_ours(ckpt):
        return model_from_payload(ckpt, str(path), **overrides)
    if is_official(ckpt):
        return model_from_official(ckpt, str(path), **overrides)
    raise CheckpointError(
        f"{path} is neither a hanet checkpoint nor an official HANet checkpoint "
        f"(top-level keys: {', '.join(map(str, list(ckpt)[:10]))})"
    )
