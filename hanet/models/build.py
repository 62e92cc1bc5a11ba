"""build_model: a DeepLabV3+ (HANet) from an architecture name and the original's flags."""
from __future__ import annotations

from .config import ModelConfig
from .deeplab import DeepLabV3Plus
from .registry import parse_arch


def build_model(arch: str, num_classes: int = 19, **options) -> DeepLabV3Plus:
    """Builds e.g. ``build_model("DeepR101V3PlusD_HANet_OS8", hanet=[1, 1, 1, 1, 0],
    hanet_set=[3, 64, 3], hanet_pos=[2, 1], pos_rfactor=8, dropout=0.1, aux_loss=True)``.

    ``options`` take the original's flag names and meanings: ``hanet`` (five 0/1
    site flags; all zero gives the plain DeepLabV3+ baseline), ``hanet_set``
    ([kernel, r, layers]), ``hanet_pos`` ([injection 1|2, encoding 1 sinusoid | 0
    learned]), ``pos_rfactor``, ``pooling``, ``dropout``, ``pos_noise``,
    ``aux_loss``; and ``backend`` (the hanet.ops backend).
    """
    trunk, output_stride = parse_arch(arch)
    try:
        config = ModelConfig(trunk=trunk, output_stride=output_stride, num_classes=num_classes, **options)
    except TypeError as exc:
        allowed = ", ".join(f for f in ModelConfig.__dataclass_fields__ if f not in ("trunk", "output_stride", "num_classes"))
        raise TypeError(f"build_model: {exc}; options are: {allowed}") from None
    return DeepLabV3Plus(config)
