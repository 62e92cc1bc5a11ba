"""Checkpoint files: the one schema of what ours hold, reading and writing them, and
reading the official HANet files.

* :mod:`.schema`: our layout, written down once: :class:`ModelCheckpoint` (a model and
  its config) and :class:`TrainingState` (what the trainer saves to resume exactly);
* :mod:`.io`: safe reading (:func:`safe_load`, never executes code) and atomic writing;
* :mod:`.weights`: weights into a model, strictly or by name and shape (``init_from``);
* :mod:`.ours`: :func:`save` and reading our format;
* :mod:`.official`: the original project's format (:func:`load_official`,
  :func:`convert_official`), apart from ours;
* :mod:`.loading`: :func:`load`, either format.

This package builds on :mod:`hanet.models` (ModelConfig, DeepLabV3Plus); the old
paths ``hanet.models.load/save/load_official`` and the modules
``hanet.models.checkpoint``/``hanet.models.official`` re-export from here.
"""
from .io import CheckpointError, atomic_save, safe_load
from .loading import load
from .official import OfficialCheckpoint, config_from_command, convert_official, load_official
from .ours import model_payload, save
from .schema import FORMAT, TRAINING_KEYS, VERSION, ModelCheckpoint, TrainingState, is_ours, parse_model_config
from .weights import MatchReport, load_matching, model_with_weights, strict_load_state_dict

__all__ = [
    "FORMAT",
    "TRAINING_KEYS",
    "VERSION",
    "CheckpointError",
    "MatchReport",
    "ModelCheckpoint",
    "OfficialCheckpoint",
    "TrainingState",
    "atomic_save",
    "config_from_command",
    "convert_official",
    "is_ours",
    "load",
    "load_matching",
    "load_official",
    "model_payload",
    "model_with_weights",
    "parse_model_config",
    "safe_load",
    "save",
    "strict_load_state_dict",
]
