"""Argument checks of the public ops, shared by every backend.

Each failure raises ValueError or TypeError with a message that names the op, the
argument and the problem.  The C++ kernels check again (for direct torch.ops calls).
"""
from __future__ import annotations

import torch

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _tensor(op: str, name: str, t, ndim: int, shape: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(
            f"{op}: {name} must be a {ndim}-D tensor {shape}, got a {t.dim()}-D tensor "
            f"of shape {tuple(t.shape)}"
        )
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} must be float32, float16, bfloat16 or float64, got {t.dtype}"
        )
    if t.numel() == 0:
        raise ValueError(
            f"{op}: {name} is empty (shape {tuple(t.shape)}); every dimension must be at least 1"
        )


def _positive_int(op: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{op}: {name} must be >= 1, got {value}")


def width_pool(x, rows, mode) -> None:
    op = "hanet.ops.width_pool"
    _tensor(op, "x", x, 4, "(B, C, H, W)")
    _positive_int(op, "rows", rows)
    if mode not in ("mean", "max"):
        raise ValueError(f'{op}: mode must be "mean" or "max", got {mode!r}')


def height_interp(a, size) -> None:
    op = "hanet.ops.height_interp"
    _tensor(op, "a", a, 3, "(B, C, h)")
    _positive_int(op, "size", size)


def attention_rescale(feat, logits) -> None:
    op = "hanet.ops.attention_rescale"
    _tensor(op, "feat", feat, 4, "(B, C, H, W)")
    _tensor(op, "logits", logits, 3, "(B, C, h)")
    if feat.device != logits.device:
        raise ValueError(
            f"{op}: feat and logits must be on the same device, got {feat.device} and "
            f"{logits.device}"
        )
    if feat.dtype != logits.dtype:
        raise TypeError(
            f"{op}: feat and logits must have the same dtype, got {feat.dtype} and {logits.dtype}"
        )
    if feat.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{op}: batch mismatch: feat has {feat.shape[0]} images, logits has {logits.shape[0]}"
        )
    if feat.shape[1] != logits.shape[1]:
        raise ValueError(
            f"{op}: channel mismatch: feat has {feat.shape[1]} channels, logits has "
            f"{logits.shape[1]}"
        )
