"""HANet models: the add-on module, positional encodings, DeepLabV3+ with the
original's trunks, ImageNet trunk weights.  The checkpoint functions (``load``,
``save``, ``load_official``, ...) live in :mod:`hanet.checkpoints`, which builds on
this package; the names here are aliases of it, imported on first use (importing it
from here at start-up would be an import cycle)."""
from .build import build_model
from .config import ModelConfig
from .deeplab import DeepLabV3Plus, SegmentationOutput, logits_of
from .hanet_module import HANet
from .pretrained import load_pretrained_trunk
from .pos_encoding import HeightPositionTable, sinusoid_table, whole_frame_positions
from .registry import ORIGINAL_ARCHS, our_archs, parse_arch

__all__ = [
    "CheckpointError",
    "DeepLabV3Plus",
    "HANet",
    "HeightPositionTable",
    "ModelConfig",
    "ORIGINAL_ARCHS",
    "SegmentationOutput",
    "build_model",
    "config_from_command",
    "convert_official",
    "load",
    "load_official",
    "load_pretrained_trunk",
    "logits_of",
    "our_archs",
    "parse_arch",
    "safe_load",
    "save",
    "sinusoid_table",
    "whole_frame_positions",
]

# Aliases of hanet.checkpoints, resolved on first access.
_CHECKPOINT_ALIASES = ("CheckpointError", "config_from_command", "convert_official", "load", "load_official",
                       "safe_load", "save")


def __getattr__(name):
    if name in _CHECKPOINT_ALIASES:
        import hanet.checkpoints

        value = getattr(hanet.checkpoints, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hanet.models' has no attribute {name!r}")
