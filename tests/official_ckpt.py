"""Builds synthetic checkpoints in the official HANet file format from the key
lists in shared/spec/official_keys/ (random values, every layout quirk of a real
file: `module.` prefixes, numpy float64 mean_iu, --local_rank=0 in the command,
optimizer_at/scheduler_at entries, an aux head)."""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "official_keys"


def spec_file(name: str) -> Path:
    path = SPEC / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"spec key list not found: {path} (shared/ must sit beside the repository)")
    return path


def official_state_dict(name: str, seed: int = 0) -> tuple[dict, str]:
    spec = json.loads(spec_file(name).read_text())
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape, dtype in spec["state_dict"]:
        if dtype == "int64":
            value = torch.tensor(1234, dtype=torch.int64)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", ".bias")):
            value = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:  # BN weights
            value = 1 + torch.randn(shape, generator=g) * 0.1
        elif "pos_layer" in key:
            value = torch.randn(shape, generator=g)
        else:  # conv weights, He-scaled so activations stay finite through the trunk
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)
        state[key] = value
    return state, spec["command"]


def write_official_checkpoint(name: str, path: Path, seed: int = 0) -> dict:
    state, command = official_state_dict(name, seed)
    ckpt = {
        "state_dict": OrderedDict(("module." + k, v) for k, v in state.items()),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "params": [0, 1]}]},
        "optimizer_at": {"state": {}, "param_groups": [{"lr": 0.01, "weight_decay": 1e-4, "params": [2]}]},
        "scheduler": {"base_lrs": [0.01], "last_epoch": 40, "lr_lambdas": [None]},
        "scheduler_at": {"base_lrs": [0.01], "last_epoch": 40, "lr_lambdas": [None]},
        "epoch": 41,
        "mean_iu": np.float64(0.8221),
        "command": command,
    }
    torch.save(ckpt, path)
    return state
