"""HANet models: the add-on module, positional encodings, DeepLabV3+ with the
original's trunks, official checkpoint loading and our own checkpoint format."""
from .build import build_model
from .checkpoint import CheckpointError, load, save, safe_load
from .config import ModelConfig
from .deeplab import DeepLabV3Plus, SegmentationOutput, logits_of
from .hanet_module import HANet
from .official import config_from_command, convert_official, load_official
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
