"""ImageNet weights for the trunks, from a local file the user gives.

Accepted layouts: torchvision's (``resnet50-*.pth``, ``resnext101_32x8d-*.pth``,
``mobilenet_v2-*.pth``, ...) and the deep-stem ResNet-101 layout the original README
names (``pretrained/resnet101-imagenet.pth``: conv1/bn1, conv2/bn2, conv3/bn3 stem).
Nothing is downloaded.

Files written by torch before 0.4.1 (that ResNet-101, and several of torchvision's
own downloads) have no ``num_batches_tracked`` entries; torch's BatchNorm loading
sets those counters to 0 for such files, and so do we.
"""
from __future__ import annotations

import os
import re

import torch

from .deeplab import DeepLabV3Plus

# torchvision stem -> our layer0 (ResNet family).
_RESNET_STEM = {"conv1.": "layer0.0.", "bn1.": "layer0.1."}
_DEEP_STEM = {"conv1.": "layer0.0.", "bn1.": "layer0.1.", "conv2.": "layer0.3.", "bn2.": "layer0.4.",
              "conv3.": "layer0.6.", "bn3.": "layer0.7."}
# features / layers index ranges -> stage, for the mobile trunks (as backbones.py splits them).
_MOBILE_SPLITS = {
    "mobilenetv2": ("features", [range(0, 2), range(2, 7), range(7, 11), range(11, 18), range(18, 19)]),
    "mnasnet_05": ("layers", [range(0, 8), range(8, 10), range(10, 12), range(12, 14), range(14, 17)]),
    "mnasnet_10": ("layers", [range(0, 8), range(8, 10), range(10, 12), range(12, 14), range(14, 17)]),
}
_SHUFFLE = {"conv1.": "layer0.0.", "stage2.": "layer1.", "stage3.": "layer2.", "stage4.": "layer3.",
            "conv5.": "layer4."}
_HEADS = ("fc.", "classifier.")


def _rename_prefix(state: dict, mapping: dict) -> dict:
    out = {}
    for k, v in state.items():
        for old, new in mapping.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def _rename_mobile(state: dict, root: str, splits) -> dict:
    out = {}
    pattern = re.compile(rf"^{root}\.(\d+)\.(.*)$")
    for k, v in state.items():
        m = pattern.match(k)
        if not m:
            out[k] = v
            continue
        i, rest = int(m.group(1)), m.group(2)
        for stage, r in enumerate(splits):
            if i in r:
                out[f"layer{stage}.{i - r.start}.{rest}"] = v
                break
    return out


def trunk_state_from_imagenet(state: dict, trunk: str) -> dict:
    """Renames an ImageNet state dict to our ``layer0``..``layer4`` keys (heads dropped)."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith(_HEADS)}
    if trunk in _MOBILE_SPLITS:
        root, splits = _MOBILE_SPLITS[trunk]
        return _rename_mobile(state, root, splits)
    if trunk == "shufflenetv2":
        return _rename_prefix(state, _SHUFFLE)
    if any(k.startswith("layer0.") for k in state):
        return state  # already in our layout
    deep = "conv2.weight" in state and "conv3.weight" in state
    return _rename_prefix(state, _DEEP_STEM if deep else _RESNET_STEM)


def load_pretrained_trunk(model: DeepLabV3Plus, path: str | os.PathLike) -> None:
    """Loads ImageNet weights into ``model``'s trunk (layer0..layer4), strictly:
    every trunk tensor must be in the file with the right shape."""
    # hanet.checkpoints builds on this package: imported here, not at start-up (no import cycle).
    from hanet.checkpoints.io import CheckpointError, safe_load

    raw = safe_load(path)
    state = raw.get("state_dict", raw) if isinstance(raw.get("state_dict"), dict) else raw
    # Only named tensors can be weights; anything else in the file counts as absent.
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    state = trunk_state_from_imagenet(state, model.config.trunk)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("layer0.", "layer1.", "layer2.", "layer3.", "layer4."))}
    if not any(k.endswith(".num_batches_tracked") for k in state):
        # A file from before BatchNorm counted its batches: every counter starts at 0.
        # (A file that has some counters but lacks others is damaged: reported below.)
        state.update({k: torch.zeros((), dtype=torch.long) for k in own if k.endswith(".num_batches_tracked")})
    missing = [k for k in own if k not in state]
    misshaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or misshaped:
        lines = [f"{path} does not fit the {model.config.trunk} trunk"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing[:15]) + (" ..." if len(missing) > 15 else ""))
        if misshaped:
            lines.append(f"  mis-shaped ({len(misshaped)}): " + "; ".join(misshaped[:15]))
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k])
