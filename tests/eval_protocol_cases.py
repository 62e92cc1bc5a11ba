"""The cases on which tests/test_eval_protocol.py checks ``infer.protocol=original`` against
predictions of the original eval.py (stored in tests/data/original_eval_oracle.npz, see
tests/data/README.md): a seeded DeepLabV3+ ShuffleNetV2 HANet written as an official
checkpoint file, and generated urban scenes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

ORACLE = Path(__file__).resolve().parent / "data" / "original_eval_oracle.npz"
COMMAND = ("--dataset cityscapes --arch network.deepv3.DeepShuffleNetV3PlusD_HANet --hanet 1 1 1 1 0 "
           "--hanet_set 3 16 3 --hanet_pos 2 1 --pos_rfactor 8 --dropout 0.1 --aux_loss --local_rank=0")
# name: (scene size HxW, mode, scales, flip, crop)
CASES = {
    "whole_single": ((128, 256), "whole", [1.0], False, 128),
    "whole_multi_flip": ((128, 256), "whole", [0.5, 1.0, 2.0], True, 128),
    "sliding_single": ((128, 256), "sliding", [1.0], False, 128),
    "sliding_multi_flip": ((128, 256), "sliding", [0.5, 1.0, 2.0], True, 128),
    "sliding_grid": ((256, 384), "sliding", [1.0], False, 128),  # 4 x 3 windows, each with its own rows
}


def official_file(path: Path, calibration: Image.Image) -> Path:
    """A seeded model in the original's checkpoint layout (module. prefixes, command).
    Its classifier bias is set so that every class has the same mean logit on the
    `calibration` image: the prediction then changes class all over the image, so any
    difference in the protocol shows in the labels."""
    from torchvision.transforms import functional as TF

    from hanet.models import build_model

    torch.manual_seed(0)
    model = build_model("DeepShuffleNetV3PlusD_HANet", hanet=[1, 1, 1, 1, 0], hanet_set=[3, 16, 3],
                        hanet_pos=[2, 1], pos_rfactor=8, dropout=0.1, aux_loss=True, backend="reference").eval()
    x = TF.normalize(TF.to_tensor(calibration), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]
    with torch.no_grad():
        model.final2[0].bias -= model(x).logits.mean(dim=(0, 2, 3))
    state = model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "command": COMMAND,
                "epoch": 1, "mean_iu": np.float64(0.5)}, path)
    return path


def scene(root: Path, size: tuple[int, int]) -> Image.Image:
    """The first generated validation scene of the given size."""
    from hanet.synthetic import make_synthetic_cityscapes

    out = make_synthetic_cityscapes(root / f"scenes_{size[0]}x{size[1]}", train=0, val=1, size=size, seed=3)
    return Image.open(next((out / "leftImg8bit" / "val").rglob("*.png"))).convert("RGB")
