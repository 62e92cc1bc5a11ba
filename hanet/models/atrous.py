"""The ASPP's 3x3 atrous convolution, cheap where its taps read mostly padding.

On a map not much larger than the dilation (the demo's 8x8 OS16 map at rates 6, 12
and 18), most of a 3x3 atrous kernel's taps read zero padding:

* along an axis no longer than the dilation the outer taps never reach the map: the
  conv is computed with the centre row / column of the kernel alone;
* otherwise oneDNN's CPU weight gradient of a dilated conv is slow (25 ms of a 29 ms
  backward at 16x1024x8x8, rate 6, bfloat16, 2 threads): where at most
  ``TAP_FRACTION`` of the kernel's taps x pixels read the map, the weight gradient is
  computed tap by tap, one matrix product over the pixels each tap reads (4.8 ms).

Same parameters and, up to summation order, the same result and gradients (those of
skipped taps are zero either way).  Eager CPU only: an exported or compiled graph must
hold for every input size, and GPUs keep cuDNN's kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the tap-by-tap weight gradient wins below this share of reading taps (measured at
# 16x1024x8x8 rate 6: share 0.25, 5x faster; 4x1024x12x24 rate 6: 0.56, 4x; 32x32 rate 6:
# 0.77, even; 16x16 rate 2: 0.78, 2x slower)
TAP_FRACTION = 0.7


def tap_ranges(n: int, dilation: int) -> list[tuple[int, int]]:
    """For kernel index k = 0, 1, 2 (offset (k - 1) * dilation) the output range
    [lo, hi) along an axis of length n whose tap reads the map (empty when hi <= lo)."""
    return [(max(0, -(k - 1) * dilation), min(n, n - (k - 1) * dilation)) for k in range(3)]


def reading_fraction(h: int, w: int, dilation: int) -> float:
    """The share of the 3x3 kernel's (tap, output pixel) pairs that read the map."""
    rows = sum(max(0, hi - lo) for lo, hi in tap_ranges(h, dilation))
    cols = sum(max(0, hi - lo) for lo, hi in tap_ranges(w, dilation))
    return rows * cols / (9 * h * w)


def _kernel_and_padding(weight: torch.Tensor, h: int, w: int, d: int):
    """The kernel taps that can reach an h x w map at dilation d (the centre row / column
    along an axis no longer than d) and the conv padding that goes with them."""
    rows, cols = h <= d, w <= d
    kernel = weight[:, :, slice(1, 2) if rows else slice(None), slice(1, 2) if cols else slice(None)]
    return kernel, (0 if rows else d, 0 if cols else d)


def _conv(x, weight, bias, d):
    kernel, padding = _kernel_and_padding(weight, x.shape[-2], x.shape[-1], d)
    return F.conv2d(x, kernel, bias, 1, padding, d)


def tap_weight_grad(grad: torch.Tensor, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """d loss / d weight (O, C, 3, 3) of a 3x3 conv, padding = dilation = d, groups 1:
    for each tap, (O, pixels) @ (pixels, C) over the output pixels whose tap reads x."""
    out = grad.new_zeros(grad.shape[1], x.shape[1], 3, 3)
    rows, cols = tap_ranges(grad.shape[-2], dilation), tap_ranges(grad.shape[-1], dilation)
    for a, (r0, r1) in enumerate(rows):
        for b, (c0, c1) in enumerate(cols):
            if r1 <= r0 or c1 <= c0:
                continue
            dr, dc = (a - 1) * dilation, (b - 1) * dilation
            g = grad[:, :, r0:r1, c0:c1].transpose(0, 1).reshape(grad.shape[1], -1)
            xs = x[:, :, r0 + dr:r1 + dr, c0 + dc:c1 + dc].transpose(0, 1).reshape(x.shape[1], -1)
            out[:, :, a, b] = g @ xs.T
    return out


class _TapGradConv(torch.autograd.Function):
    """conv2d forward (oneDNN); backward: oneDNN's input gradient, the weight gradient tap by tap."""

    @staticmethod
    def forward(ctx, x, weight, bias, dilation):
        ctx.save_for_backward(x, weight)
        ctx.dilation, ctx.has_bias = dilation, bias is not None
        return _conv(x, weight, bias, dilation)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        d = ctx.dilation
        grad = grad.to(x.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            kernel, padding = _kernel_and_padding(weight, x.shape[-2], x.shape[-1], d)
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, kernel, None, [1, 1], list(padding), [d, d], False, [0, 0], 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = tap_weight_grad(grad, x, d).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class AtrousConv2d(nn.Conv2d):
    """A 3x3 atrous convolution (padding = dilation) that skips the taps reading only
    zero padding, and on the CPU computes its weight gradient tap by tap where most
    taps read padding (module docstring).  Same parameters and state-dict keys as
    ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # traced graphs (torch.export, ONNX, compile) take any size: the full conv (and
        # no test of the symbolic size, which would specialise the graph)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return super().forward(x)
        d = self.dilation[0]
        h, w = x.shape[-2:]
        if (x.device.type == "cpu" and x.dim() == 4 and self.groups == 1 and torch.is_grad_enabled()
                and self.weight.requires_grad and reading_fraction(h, w, d) <= TAP_FRACTION):
            return self._tap_grad_forward(x, d)
        if h > d and w > d:
            return super().forward(x)
        return _conv(x, self.weight, self.bias, d)

    def _tap_grad_forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        # autocast does not reach into an autograd.Function: cast as it would (the
        # casts are differentiable, so the float32 weight gets a float32 gradient)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast("cpu", enabled=False):
            return _TapGradConv.apply(x.to(dtype), self.weight.to(dtype), bias, d)
