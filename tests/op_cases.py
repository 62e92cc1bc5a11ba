"""Shared cases and tolerances of the op tests (Liger-Kernel style: every op
against its PyTorch reference with per-dtype tolerances)."""
from __future__ import annotations

import torch

import hanet.ops as hops

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
LAYOUTS = ["nchw", "channels_last"]

# (B, C, H, W, rows_or_h): odd sizes, W = 1, H < rows, rows = 1, a single pixel,
# C = 1, and C / W not multiples of any vector width.
SHAPES = [
    (2, 5, 13, 7, 4),
    (1, 3, 8, 1, 16),
    (2, 4, 6, 9, 1),
    (1, 1, 1, 1, 3),
    (1, 70, 10, 12, 8),
    (1, 1, 32, 33, 16),
]
# Extra shapes for the compiled backends only (the Triton interpreter is slow):
# large C, HANet-like aspect.
LARGE_SHAPES = [(2, 256, 24, 40, 16), (1, 1024, 6, 6, 16)]


def kernel_backends() -> list[str]:
    """Every backend usable on CPU tensors in this process."""
    return hops.available_backends("cpu")


def make(shape, dtype, layout, seed=0, scale=1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    if layout == "channels_last" and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def _max_err(value: torch.Tensor, truth: torch.Tensor) -> float:
    return (value.double() - truth.double()).abs().max().item()


def assert_close_to_truth(value, truth, eager=None, dtype=None, what=""):
    """fp64: tight tolerance against the float64 truth.  fp32: tight, or at most twice
    eager PyTorch's fp32 error when `eager` is given.  fp16/bf16: error at most twice
    that of eager PyTorch in the same dtype (plus one ulp of scale)."""
    assert value.shape == truth.shape, f"{what}: shape {tuple(value.shape)} != {tuple(truth.shape)}"
    dtype = dtype or value.dtype
    scale = max(truth.double().abs().max().item(), 1e-3)
    err = _max_err(value, truth)
    if dtype == torch.float64:
        assert err <= 1e-10 * scale, f"{what}: float64 error {err}"
    elif dtype == torch.float32:
        # Tight, unless eager PyTorch in fp32 is given and itself strays further (long
        # reductions, interpolation coordinates of thousands of rows): then 2x eager's error.
        bound = 2e-6 * scale if eager is None else max(2e-6 * scale, 2 * _max_err(eager, truth))
        assert err <= bound, f"{what}: float32 error {err} > {bound} (scale {scale})"
    else:
        assert eager is not None
        eager_err = _max_err(eager, truth)
        bound = 2 * eager_err + torch.finfo(dtype).eps * scale
        assert err <= bound, f"{what}: {dtype} error {err} > 2 x eager error {eager_err} (+ulp)"
