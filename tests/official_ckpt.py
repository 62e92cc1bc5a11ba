"""Builds synthetic checkpoints in the official HANet file format from the key
lists in tests/data/official_keys/ (random values, every layout quirk of a real
file: `module.` prefixes, numpy float64 mean_iu, --local_rank=0 in the command,
optimizer_at/scheduler_at entries, an aux head), and on request the rest of what
the original's files can hold: its loss buffers (``criterion.weight`` ...), real SGD
and LambdaLR states, the legacy (torch < 1.6) file format and numpy 1.x pickle names."""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

SPEC = Path(__file__).resolve().parent / "data" / "official_keys"  # see tests/data/README.md


def spec_file(name: str) -> Path:
    path = SPEC / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"spec key list not found: {path} (tests/data/official_keys/ of the repository)")
    return path


def spec_command_of(name: str) -> str:
    """The training command line the spec's checkpoint was written with."""
    return json.loads(spec_file(name).read_text())["command"]


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


def loss_buffers(keys, num_classes: int = 19, seed: int = 0) -> OrderedDict:
    """Class-weight vectors under the original's loss-buffer keys (float32, one entry
    per class, values around 1 as its class weights are)."""
    g = torch.Generator().manual_seed(1000 + seed)
    return OrderedDict((k, 0.8 + 0.4 * torch.rand(num_classes, generator=g)) for k in keys)


def real_optimizer_states(seed: int = 0) -> dict:
    """optimizer/optimizer_at/scheduler/scheduler_at as torch's SGD (momentum) and
    LambdaLR (poly) write them after a few steps, as the original's HANet runs do
    (small parameters: only the structure matters)."""
    g = torch.Generator().manual_seed(seed)
    base = [torch.nn.Parameter(torch.randn(4, 3, generator=g)), torch.nn.Parameter(torch.randn(4, generator=g))]
    att = [torch.nn.Parameter(torch.randn(2, 2, generator=g))]
    opt = torch.optim.SGD(base, lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt_at = torch.optim.SGD(att, lr=0.01, momentum=0.9, weight_decay=1e-4)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda it: (1 - it / 90000) ** 0.9) for o in (opt, opt_at)]
    for _ in range(3):
        opt.zero_grad()
        opt_at.zero_grad()
        sum((p ** 2).sum() for p in base + att).backward()
        opt.step()
        opt_at.step()
        for s in scheds:
            s.step()
    return {"optimizer": opt.state_dict(), "optimizer_at": opt_at.state_dict(),
            "scheduler": scheds[0].state_dict(), "scheduler_at": scheds[1].state_dict()}


def write_official_checkpoint(name: str, path: Path, seed: int = 0, *, extra: dict | None = None,
                              command: str | None = None, real_optimizers: bool = False,
                              legacy_format: bool = False, numpy1_pickle: bool = False,
                              state: dict | None = None) -> dict:
    """Writes the checkpoint and returns its model tensors (without ``module.`` and
    without `extra`, the non-model tensors such as loss buffers, which go first in
    the state dict as in the original: its criterion is assigned before the layers).
    ``numpy1_pickle`` (legacy format only) names numpy's scalar as numpy 1.x does.
    ``state`` reuses tensors made by official_state_dict(name) (it is slow for big trunks)."""
    if state is None:
        state, spec_command = official_state_dict(name, seed)
    else:
        spec_command = spec_command_of(name)
    saved = OrderedDict(("module." + k, v) for k, v in {**(extra or {}), **state}.items())
    if real_optimizers:
        training = real_optimizer_states(seed)
    else:
        training = {
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                                                         "params": [0, 1]}]},
            "optimizer_at": {"state": {}, "param_groups": [{"lr": 0.01, "weight_decay": 1e-4, "params": [2]}]},
            "scheduler": {"base_lrs": [0.01], "last_epoch": 40, "lr_lambdas": [None]},
            "scheduler_at": {"base_lrs": [0.01], "last_epoch": 40, "lr_lambdas": [None]},
        }
    ckpt = {
        "state_dict": saved,
        **training,
        "epoch": 41,
        "mean_iu": np.float64(0.8221),
        "command": spec_command if command is None else command,
    }
    if legacy_format:
        torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(ckpt, path)
    if numpy1_pickle:
        if not legacy_format:
            raise ValueError("numpy1_pickle needs legacy_format (a zip record cannot be edited in place)")
        data = Path(path).read_bytes()
        new, old = b"numpy._core.multiarray\nscalar\n", b"numpy.core.multiarray\nscalar\n"
        if data.count(new) != 1:
            raise RuntimeError(f"expected one pickled numpy scalar in {path}, found {data.count(new)}")
        Path(path).write_bytes(data.replace(new, old))
    return state
