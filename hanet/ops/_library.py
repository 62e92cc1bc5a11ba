"""Fake (meta) kernels and autograd of the custom ops.

The C++ ops (`torch.ops.hanet.*`) and the Triton ops (`torch.ops.hanet_triton.*`)
share schemas, so one set of autograd formulas serves both namespaces: each
forward op's backward calls the `*_backward` op of its own namespace.
"""
from __future__ import annotations

import torch


def _layout(t: torch.Tensor) -> torch.memory_format:
    """The memory format a kernel keeps: NCHW when contiguous, else channels_last
    when dense in that order, else (copied) contiguous."""
    if t.is_contiguous():
        return torch.contiguous_format
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def is_channels_last(t: torch.Tensor) -> bool:
    return _layout(t) == torch.channels_last


def register_fakes(ns: str) -> None:
    """Fake kernels for ops defined in C++ (triton_op ops get theirs from tracing)."""

    @torch.library.register_fake(f"{ns}::width_pool")
    def _(x, rows, mode="mean"):
        B, C = x.shape[0], x.shape[1]
        out = x.new_empty((B, C, rows))
        idx_shape = (B, C, rows) if mode == "max" else (0,)
        return out, x.new_empty(idx_shape, dtype=torch.long)

    @torch.library.register_fake(f"{ns}::width_pool_backward")
    def _(grad, indices, height, width, mode, channels_last):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return grad.new_empty((grad.shape[0], grad.shape[1], height, width)).contiguous(
            memory_format=fmt
        )

    @torch.library.register_fake(f"{ns}::height_interp")
    def _(a, size):
        return a.new_empty((a.shape[0], a.shape[1], size))

    @torch.library.register_fake(f"{ns}::height_interp_backward")
    def _(grad, in_size):
        return grad.new_empty((grad.shape[0], grad.shape[1], in_size))

    @torch.library.register_fake(f"{ns}::attention_rescale")
    def _(feat, logits):
        return torch.empty_like(feat, memory_format=_layout(feat))

    @torch.library.register_fake(f"{ns}::attention_rescale_backward")
    def _(grad, feat, logits):
        return (
            torch.empty_like(feat, memory_format=_layout(feat)),
            torch.empty_like(logits, memory_format=torch.contiguous_format),
        )


def register_autograd(ns: str) -> None:
    ops = getattr(torch.ops, ns)

    def width_pool_setup(ctx, inputs, output):
        x, rows, mode = inputs
        ctx.save_for_backward(output[1])
        ctx.height, ctx.width = x.shape[2], x.shape[3]
        ctx.mode = mode
        ctx.channels_last = is_channels_last(x)
        ctx.mark_non_differentiable(output[1])

    def width_pool_backward(ctx, grad_out, _grad_indices):
        (indices,) = ctx.saved_tensors
        grad_x = ops.width_pool_backward(
            grad_out, indices, ctx.height, ctx.width, ctx.mode, ctx.channels_last
        )
        return grad_x, None, None

    def height_interp_setup(ctx, inputs, output):
        ctx.in_size = inputs[0].shape[2]

    def height_interp_backward(ctx, grad_out):
        return ops.height_interp_backward(grad_out, ctx.in_size), None

    def rescale_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def rescale_backward(ctx, grad_out):
        feat, logits = ctx.saved_tensors
        return tuple(ops.attention_rescale_backward(grad_out, feat, logits))

    torch.library.register_autograd(
        f"{ns}::width_pool", width_pool_backward, setup_context=width_pool_setup
    )
    torch.library.register_autograd(
        f"{ns}::height_interp", height_interp_backward, setup_context=height_interp_setup
    )
    torch.library.register_autograd(
        f"{ns}::attention_rescale", rescale_backward, setup_context=rescale_setup
    )
