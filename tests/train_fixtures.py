"""A tiny generated dataset and config for the training, evaluation and predict tests."""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_OVERRIDES = [
    "model.arch=deeplabv3plus_shufflenetv2_os32",
    "model.hanet=[1,1,1,1,1]",
    "model.hanet_set=[3,16,3]",
    "model.dropout=0.1",
    "model.pos_noise=0.5",
    "model.aux_loss=true",
    "data.crop_size=64",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.num_workers=0",
    "data.class_uniform_pct=0.5",
    "data.class_uniform_tile=64",
    "train.device=cpu",
    # The original's optimisation, as the demo trained before it moved to AdamW (the
    # resume and fault tests check the SGD path; test_training covers AdamW's resume).
    "train.optimizer=sgd",
    "train.lr=0.05",
    "train.hanet_lr=0.05",
    "train.warmup_iters=0",
    "data.color_aug=0.25",
    "train.max_iter=6",
    "train.val_every=3",
    "train.log_every=2",
    "train.ckpt_every=3",
]


@pytest.fixture(scope="session")
def tiny_cityscapes(tmp_path_factory) -> Path:
    from hanet.synthetic import make_synthetic_cityscapes

    root = tmp_path_factory.mktemp("tiny_cityscapes")
    make_synthetic_cityscapes(root, train=8, val=2, test=2, size=(64, 128), seed=3)
    return root


def tiny_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return TINY_OVERRIDES + [f"data.root={root}", f"output_dir={out}"] + list(extra)
