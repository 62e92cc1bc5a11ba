"""Old home of the checkpoint code, kept so that ``hanet.models.checkpoint`` imports
keep working: everything now lives in :mod:`hanet.checkpoints` (the schema in
:mod:`hanet.checkpoints.schema`).  Nothing in hanet imports this module."""
from hanet.checkpoints.io import CheckpointError, atomic_save, safe_load
from hanet.checkpoints.loading import load
from hanet.checkpoints.ours import model_from_payload, model_payload, save
from hanet.checkpoints.schema import FORMAT, VERSION, is_ours, parse_model_config
from hanet.checkpoints.weights import (MatchReport, load_matching, model_with_weights, strict_load_state_dict,
                                       unwrap as _unwrap)

__all__ = ["FORMAT", "VERSION", "CheckpointError", "MatchReport", "atomic_save", "is_ours", "load", "load_matching",
           "model_from_payload", "model_payload", "model_with_weights", "parse_model_config", "safe_load", "save",
           "strict_load_state_dict"]
