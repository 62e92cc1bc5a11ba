"""Old home of the official-checkpoint reader, kept so that ``hanet.models.official``
imports keep working: it now lives in :mod:`hanet.checkpoints.official`.  Nothing in
hanet imports this module."""
from hanet.checkpoints.official import (LOSS_BUFFERS, OfficialCheckpoint, _parse_command, _strip_module,
                                        config_from_command, convert_official, is_official, load_official,
                                        model_from_official, split_loss_buffers)

__all__ = ["LOSS_BUFFERS", "OfficialCheckpoint", "config_from_command", "convert_official", "is_official",
           "load_official", "model_from_official", "split_loss_buffers"]
