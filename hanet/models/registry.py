"""Architecture names: ours (``deeplabv3plus_r101_os8``) and the original's
(``DeepR101V3PlusD_HANet_OS8``, with or without the ``network.deepv3.`` prefix)."""
from __future__ import annotations

from .backbones import TRUNKS, supported_output_strides

# Our short trunk names.
SHORT_TRUNKS = {
    "r50": "resnet-50", "r101": "resnet-101", "r152": "resnet-152",
    "rx50": "resnext-50", "rx101": "resnext-101", "wrn50": "wide_resnet-50", "wrn101": "wide_resnet-101",
    "mbv2": "mobilenetv2", "shufflenetv2": "shufflenetv2", "mnasnet05": "mnasnet_05", "mnasnet10": "mnasnet_10",
}
_TRUNK_SHORT = {v: k for k, v in SHORT_TRUNKS.items()}

# Every architecture the original's network/deepv3.py defines: (trunk, output stride).
ORIGINAL_ARCHS = {
    "DeepR50V3PlusD_HANet_OS8": ("resnet-50", 8),
    "DeepR50V3PlusD_HANet": ("resnet-50", 16),
    "DeepR101V3PlusD_HANet": ("resnet-101", 16),
    "DeepR101V3PlusD_HANet_OS8": ("resnet-101", 8),
    "DeepR152V3PlusD_HANet_OS8": ("resnet-152", 8),
    "DeepResNext50V3PlusD_HANet": ("resnext-50", 16),
    "DeepResNext101V3PlusD_HANet": ("resnext-101", 16),
    "DeepResNext101V3PlusD_HANet_OS8": ("resnext-101", 8),
    "DeepResNext101V3PlusD_HANet_OS4": ("resnext-101", 4),
    "DeepWideResNet50V3PlusD_HANet": ("wide_resnet-50", 16),
    "DeepWideResNet50V3PlusD_HANet_OS8": ("wide_resnet-50", 8),
    "DeepWideResNet101V3PlusD_HANet": ("wide_resnet-101", 16),
    "DeepWideResNet101V3PlusD_HANet_OS8": ("wide_resnet-101", 8),
    "DeepShuffleNetV3PlusD_HANet": ("shufflenetv2", 16),
    "DeepShuffleNetV3PlusD_HANet_OS8": ("shufflenetv2", 8),
    "DeepShuffleNetV3PlusD_HANet_OS32": ("shufflenetv2", 32),
    "DeepMNASNet05V3PlusD_HANet": ("mnasnet_05", 16),
    "DeepMNASNet10V3PlusD_HANet": ("mnasnet_10", 16),
    "DeepMobileNetV3PlusD_HANet": ("mobilenetv2", 16),
    "DeepMobileNetV3PlusD_HANet_OS8": ("mobilenetv2", 8),
}


def our_name(trunk: str, output_stride: int) -> str:
    return f"deeplabv3plus_{_TRUNK_SHORT[trunk]}_os{output_stride}"


def our_archs() -> list[str]:
    return [our_name(t, os) for t in TRUNKS for os in supported_output_strides(t)]


def parse_arch(arch: str) -> tuple[str, int]:
    """(trunk, output_stride) of an architecture name (ours or the original's)."""
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a string, got {type(arch).__name__}")
    name = arch.removeprefix("network.deepv3.")
    if name in ORIGINAL_ARCHS:
        return ORIGINAL_ARCHS[name]
    parts = name.lower().split("_")
    if len(parts) == 3 and parts[0] == "deeplabv3plus" and parts[1] in SHORT_TRUNKS and parts[2].startswith("os"):
        trunk = SHORT_TRUNKS[parts[1]]
        try:
            os_ = int(parts[2][2:])
        except ValueError:
            os_ = -1
        if os_ in supported_output_strides(trunk):
            return trunk, os_
    raise ValueError(
        f"unknown arch {arch!r}. Ours: deeplabv3plus_<trunk>_os<stride> with trunk in "
        f"{', '.join(SHORT_TRUNKS)} (e.g. deeplabv3plus_r101_os8); or the original's names: "
        f"{', '.join(ORIGINAL_ARCHS)}"
    )
