"""Our checkpoint format (see :mod:`hanet.checkpoints.schema`): a model with its full
:class:`ModelConfig`, so that :func:`load` rebuilds it without flags."""
from __future__ import annotations

import os

from hanet.models.deeplab import DeepLabV3Plus

from .io import atomic_save
from .schema import ModelCheckpoint
from .weights import model_state_dict, model_with_weights, unwrap

__all__ = ["model_from_payload", "model_payload", "save"]


def model_payload(model: DeepLabV3Plus, meta: dict | None = None) -> dict:
    """The dict our checkpoint format stores for a model (a DDP wrapper is looked through)."""
    return ModelCheckpoint(unwrap(model).config, model_state_dict(model), dict(meta or {})).to_payload()


def save(model: DeepLabV3Plus, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Writes ``model`` (weights + configuration) in our format, atomically."""
    atomic_save(model_payload(model, meta), path)


def model_from_payload(ckpt: dict, source: str, **overrides) -> DeepLabV3Plus:
    """The model of a loaded checkpoint in our format (model or training checkpoint), in
    eval mode; ``overrides`` change ModelConfig fields (e.g. ``backend``)."""
    saved = ModelCheckpoint.from_payload(ckpt, source, **overrides)
    return model_with_weights(saved.model_config, saved.state_dict, source)
