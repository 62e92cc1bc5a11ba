"""Bilinear resizing with align_corners=True (the original's decoder and logits upsampling).

On the CPU a bilinear resize is a product of two small interpolation matrices with the
map, (H_out, H_in) @ x @ (W_in, W_out): each output takes the same two taps per axis and
the same weights as ``F.interpolate``, and on small maps the matrix products run 2-3x
faster than PyTorch's CPU bilinear kernel forward and backward (``python -m hanet.bench
resize``, 2 threads, the demo's 16 crops: 16x19x16x16 -> 128x128 16.1 against 5.7 ms in
float32, 18.7 against 10.3 ms in bfloat16 (float32 math); 16x256x8x8 -> 16x16 4.7 against
1.4 ms).  Their work per output grows with the input (about W_in + H_in * W_in / W_out
multiply-adds), so on large maps the kernel wins (R101-OS8's 2x19x192x192 -> 768x768:
0.79x in float32, 0.50x in bfloat16): above ``MATMUL_MAX_TAPS`` the kernel is used.
GPUs, compiled and exported graphs keep ``F.interpolate`` (a single Resize op in ONNX).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

_MATMUL_DTYPES = (torch.float32, torch.bfloat16, torch.float64)
# multiply-adds per output (W_in + H_in * W_in / W_out) up to which the matrix products
# win (measured: 18 at 16x16 -> 128x128, 2.8x; 12 at 8x8 -> 16x16, 3.4x; 144 at 96x96 ->
# 192x192, 1.18x in float32 but 0.66x in bfloat16; 240 at 192x192 -> 768x768, 0.79x)
MATMUL_MAX_TAPS = 64


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_out, n_in): row o holds the weights of the two input samples output o reads,
    computed as PyTorch's CPU kernel computes them for align_corners=True (source
    position o * (n_in - 1) / (n_out - 1) in float32, float64 for float64 maps)."""
    with torch.inference_mode(False):  # cached: a tensor made under inference_mode could not serve training
        return _matrix(n_in, n_out, dtype)


def _matrix(n_in: int, n_out: int, dtype: torch.dtype) -> torch.Tensor:
    math_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    scale = torch.tensor((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0, dtype=math_dtype)
    src = scale * torch.arange(n_out, dtype=math_dtype)
    i0 = src.long().clamp(max=n_in - 1)
    lam = (src - i0.to(math_dtype)).clamp(0, 1)
    i1 = torch.where(i0 < n_in - 1, i0 + 1, i0)
    m = torch.zeros(n_out, n_in, dtype=math_dtype)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - lam, accumulate=True)
    m.index_put_((rows, i1), lam, accumulate=True)
    return m.to(dtype)


def resize_bilinear(x: torch.Tensor, size, float32_out: bool = False) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=True)`` for (B, C, H, W).

    ``float32_out``: where the matrix products run (CPU), return their float32 result
    for a bfloat16 map instead of rounding it: the model's full-size logits, which the
    loss would cast back to float32 (two full-size copies forward, two backward, and
    the logits rounded to 8 bits on the way).  Elsewhere the result has x's dtype."""
    if (x.device.type != "cpu" or x.dtype not in _MATMUL_DTYPES or x.dim() != 4
            or torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or x.shape[3] + x.shape[2] * x.shape[3] / max(int(size[1]), 1) > MATMUL_MAX_TAPS):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    out_h, out_w = int(size[0]), int(size[1])
    # float32 math for bfloat16 maps, as the CPU kernel's (bfloat16 weights would be off
    # by up to 2^-9), and no autocast (it would round a float32 map to bfloat16)
    math_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.autocast("cpu", enabled=False):
        rows = interpolation_matrix(x.shape[2], out_h, math_dtype)
        cols = interpolation_matrix(x.shape[3], out_w, math_dtype)
        out = torch.matmul(torch.matmul(rows, x.to(math_dtype)), cols.T)
        return out if float32_out else out.to(x.dtype)
