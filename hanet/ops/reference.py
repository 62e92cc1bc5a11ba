"""Pure-PyTorch reference versions of the HANet ops: the source of truth.

Every fused kernel (CPU, CUDA, Triton) is tested and benchmarked against these
functions.  They are written the way the original HANet code computes them, as
separate eager PyTorch calls.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["width_pool", "height_interp", "attention_rescale"]


def width_pool(x: torch.Tensor, rows: int, mode: str = "mean") -> torch.Tensor:
    """(B, C, H, W) -> (B, C, rows): adaptive average (or max) pooling to (rows, 1)."""
    if mode == "mean":
        return F.adaptive_avg_pool2d(x, (rows, 1)).squeeze(-1)
    if mode == "max":
        return F.adaptive_max_pool2d(x, (rows, 1)).squeeze(-1)
    raise ValueError(f'width_pool: mode must be "mean" or "max", got {mode!r}')


def width_pool_with_indices(x: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pooling with PyTorch's arg-max indices (flat h*W+w), shape (B, C, rows) each."""
    out, idx = F.adaptive_max_pool2d(x, (rows, 1), return_indices=True)
    return out.squeeze(-1), idx.squeeze(-1)


def height_interp(a: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h) -> (B, C, size): linear interpolation with align_corners=False."""
    return F.interpolate(a, size=size, mode="linear", align_corners=False)


def attention_rescale(feat: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """feat (B, C, H, W) * interp(sigmoid(logits (B, C, h)), H)[..., None].

    Sigmoid first, then interpolation, as the original HANet does.
    """
    attention = height_interp(torch.sigmoid(logits), feat.shape[2])
    return feat * attention.unsqueeze(-1)
