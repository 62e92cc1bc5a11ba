"""What our checkpoint files hold: the one place their layout is written down.

A **model checkpoint** (:func:`hanet.checkpoints.save`, ``hanet convert-official``)
is a ``torch.save`` of a dict::

    format        "hanet-checkpoint"
    version       1
    model_config  ModelConfig.to_dict(): the architecture, so that loading needs no flags
    state_dict    {name: tensor}: the weights (CPU, no DDP ``module.`` prefix)
    meta          plain values: a converted file's converted_from, command, mean_iu, epoch;
                  a training checkpoint's iteration and best_miou

A **training checkpoint** (``<output_dir>/checkpoints/last.pt`` and ``best.pt``) is a
model checkpoint (so every model loader reads it) with one more entry::

    training      iteration   steps done
                  optimizer   torch optimizer state_dict
                  scheduler   torch LR scheduler state_dict
                  scaler      torch.amp.GradScaler state_dict
                  rng         one RNG state per rank (hanet.training.rng.capture(), plain types)
                  world_size  the number of processes that wrote it
                  best_miou   the best validation mIoU so far (-inf before the first)
                  config      the training Config, as a dict (read back only for defaults)

:class:`ModelCheckpoint` and :class:`TrainingState` are these two layouts as typed
dataclasses: ``to_payload()`` gives the dict to save (keys in the order above),
``from_payload()`` checks a loaded dict and gives the dataclass, with a
:class:`CheckpointError` that names the file and what is wrong.  The official
HANet files have their own layout: :mod:`hanet.checkpoints.official`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hanet.models.config import ModelConfig

from .io import CheckpointError

__all__ = ["FORMAT", "TRAINING_KEYS", "VERSION", "ModelCheckpoint", "TrainingState", "is_ours", "parse_model_config"]

FORMAT = "hanet-checkpoint"
VERSION = 1
# The entries of "training" that resuming needs ("config" is optional: older files may lack it).
TRAINING_KEYS = ("iteration", "optimizer", "scheduler", "scaler", "rng", "world_size", "best_miou")


def is_ours(ckpt: dict) -> bool:
    """Is this loaded dict in our format (rather than an official file or a bare state dict)?"""
    return ckpt.get("format") == FORMAT


def parse_model_config(cfg: dict, source: str) -> ModelConfig:
    """ModelConfig of a checkpoint's config dict; CheckpointError naming `source` if invalid."""
    try:
        return ModelConfig.from_dict(cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: invalid model_config: {exc}") from None


def _require_dicts(ckpt: dict, source: str) -> None:
    for key in ("model_config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{source}: a hanet checkpoint needs a '{key}' dict, "
                                  f"got {type(ckpt.get(key)).__name__}")


@dataclass
class ModelCheckpoint:
    """A model in our format: its configuration, its weights and free-form plain metadata."""
    model_config: ModelConfig
    state_dict: dict
    meta: dict = field(default_factory=dict)

    def to_payload(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model_config": self.model_config.to_dict(),
                "state_dict": self.state_dict, "meta": dict(self.meta)}

    @classmethod
    def from_payload(cls, ckpt: dict, source: str, **overrides) -> "ModelCheckpoint":
        """Checks version and entries; ``overrides`` replace model_config fields (e.g. ``backend``)."""
        if ckpt.get("version") != VERSION:
            raise CheckpointError(f"{source}: unsupported hanet checkpoint version {ckpt.get('version')!r}")
        _require_dicts(ckpt, source)
        meta = ckpt.get("meta")
        return cls(parse_model_config({**ckpt["model_config"], **overrides}, source), ckpt["state_dict"],
                   dict(meta) if isinstance(meta, dict) else {})


@dataclass
class TrainingState:
    """Everything a training run saves to resume exactly: the model (config and
    weights) and the state of the optimisation.  ``rng[r]`` is rank r's RNG state."""
    model_config: ModelConfig
    state_dict: dict
    iteration: int
    optimizer: dict
    scheduler: dict
    scaler: dict
    rng: list
    world_size: int
    best_miou: float
    config: dict = field(default_factory=dict)

    @property
    def meta(self) -> dict:
        return {"iteration": self.iteration, "best_miou": self.best_miou}

    def to_payload(self) -> dict:
        payload = ModelCheckpoint(self.model_config, self.state_dict, self.meta).to_payload()
        payload["training"] = {
            "iteration": self.iteration,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "rng": self.rng,
            "world_size": self.world_size,
            "best_miou": self.best_miou,
            "config": self.config,
        }
        return payload

    @classmethod
    def from_payload(cls, ckpt: dict, source: str) -> "TrainingState":
        """The training state of a loaded training checkpoint; CheckpointError naming
        `source` for a model-only file, a missing entry or a value of the wrong kind.
        (Whether the optimizer state fits the model is for the trainer to find out.)"""
        if "training" not in ckpt:
            raise CheckpointError(f"{source} holds no training state (model-only checkpoint); cannot resume from it")
        t = ckpt["training"]
        missing = [k for k in TRAINING_KEYS if not isinstance(t, dict) or k not in t]
        bad = [k for k in ("model_config", "state_dict") if not isinstance(ckpt.get(k), dict)]
        if missing or bad:
            raise CheckpointError(f"{source} is not a complete training checkpoint: "
                                  + (f"training state lacks {', '.join(missing)}" if missing else
                                     f"{', '.join(bad)} missing or not a dict"))
        model_config = parse_model_config(ckpt["model_config"], source)
        try:
            numbers = {"iteration": int(t["iteration"]), "best_miou": float(t["best_miou"]),
                       "world_size": int(t["world_size"])}
        except (TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"{source}: malformed training state ({type(exc).__name__}: {exc})") from None
        config = t.get("config")
        return cls(model_config=model_config, state_dict=ckpt["state_dict"], optimizer=t["optimizer"],
                   scheduler=t["scheduler"], scaler=t["scaler"], rng=t["rng"],
                   config=config if isinstance(config, dict) else {}, **numbers)
