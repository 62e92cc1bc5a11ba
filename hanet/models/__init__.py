"""HANet models: the add-on module, positional encodings, DeepLabV3+ with the
original's trunks, official checkpoint loading and our own checkpoint format."""
from .build import build_model
from .config import ModelConfig
from .deeplab import DeepLabV3Plus
from .hanet_module import HANet
from .pos_encoding import HeightPositionTable, sinusoid_table, whole_frame_positions
from .registry import ORIGINAL_ARCHS, our_archs, parse_arch

__all__ = [
    "DeepLabV3Plus",
    "HANet",
    "HeightPositionTable",
    "ModelConfig",
    "ORIGINAL_ARCHS",
    "build_model",
    "our_archs",
    "parse_arch",
    "sinusoid_table",
    "whole_frame_positions",
]
