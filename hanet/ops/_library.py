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


_FLOATING = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# Argument checks of the fake kernels: the ones of csrc/checks.cpp, so that a call the
# real kernels reject fails on meta/fake tensors too, and a call whose tensors sit on
# different devices (a CPU tensor with a meta one dispatches here) raises instead of
# returning an uninitialised tensor.  torch._check keeps symbolic sizes traceable.
def _check_tensor(op: str, name: str, t, dim: int, shape: str) -> None:
    torch._check(
        isinstance(t, torch.Tensor), lambda: f"{op}: {name} must be a Tensor, got {type(t).__name__}"
    )
    torch._check(
        t.dim() == dim,
        lambda: f"{op}: {name} must be a {dim}-D tensor {shape}, got a {t.dim()}-D tensor "
        f"of shape {tuple(t.shape)}",
    )
    torch._check(
        t.dtype in _FLOATING,
        lambda: f"{op}: {name} must be a float32, float16, bfloat16 or float64 tensor, got {t.dtype}",
    )
    torch._check(
        t.numel() > 0,
        lambda: f"{op}: {name} is empty (shape {tuple(t.shape)}); every dimension must be at least 1",
    )


def _check_same_device(op: str, name_a: str, a, name_b: str, b) -> None:
    torch._check(
        a.device == b.device,
        lambda: f"{op}: {name_a} and {name_b} must be on the same device, got {a.device} and {b.device}",
    )


def _check_same_device_dtype(op: str, name_a: str, a, name_b: str, b) -> None:
    _check_same_device(op, name_a, a, name_b, b)
    torch._check(
        a.dtype == b.dtype,
        lambda: f"{op}: {name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}",
    )


def _check_positive(op: str, name: str, value) -> None:
    torch._check(value >= 1, lambda: f"{op}: {name} must be >= 1, got {value}")


def _check_mode(op: str, mode) -> bool:
    torch._check(mode in ("mean", "max"), lambda: f'{op}: mode must be "mean" or "max", got {mode!r}')
    return mode == "max"


def _check_rescale(op: str, feat, logits) -> None:
    _check_tensor(op, "feat", feat, 4, "(B, C, H, W)")
    _check_tensor(op, "logits", logits, 3, "(B, C, h)")
    _check_same_device_dtype(op, "feat", feat, "logits", logits)
    torch._check(
        feat.shape[0] == logits.shape[0],
        lambda: f"{op}: batch mismatch: feat has {feat.shape[0]} images, logits has {logits.shape[0]}",
    )
    torch._check(
        feat.shape[1] == logits.shape[1],
        lambda: f"{op}: channel mismatch: feat has {feat.shape[1]} channels, logits has "
        f"{logits.shape[1]}",
    )


def register_fakes(ns: str) -> None:
    """Fake kernels for ops defined in C++ (triton_op ops get theirs from tracing)."""

    @torch.library.register_fake(f"{ns}::width_pool")
    def _(x, rows, mode="mean"):
        op = f"{ns}.width_pool"
        _check_tensor(op, "x", x, 4, "(B, C, H, W)")
        _check_positive(op, "rows", rows)
        is_max = _check_mode(op, mode)
        B, C = x.shape[0], x.shape[1]
        out = x.new_empty((B, C, rows))
        idx_shape = (B, C, rows) if is_max else (0,)
        return out, x.new_empty(idx_shape, dtype=torch.long)

    @torch.library.register_fake(f"{ns}::width_pool_backward")
    def _(grad, indices, height, width, mode, channels_last):
        op = f"{ns}.width_pool_backward"
        _check_tensor(op, "grad", grad, 3, "(B, C, rows)")
        for value in (height, width):
            torch._check(
                value >= 1, lambda: f"{op}: height and width must be >= 1, got {height} and {width}"
            )
        _check_same_device(op, "indices", indices, "grad", grad)
        if _check_mode(op, mode):
            torch._check(
                indices.dtype == torch.long, lambda: f"{op}: indices must be int64, got {indices.dtype}"
            )
            torch._check(
                indices.shape == grad.shape,
                lambda: f"{op}: indices shape {tuple(indices.shape)} must equal grad shape "
                f"{tuple(grad.shape)}",
            )
        # allocated in that format as the kernels do (.contiguous(memory_format=...) of a
        # C = 1 tensor would keep its NCHW strides: both formats hold, strides differ)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(
            (grad.shape[0], grad.shape[1], height, width),
            dtype=grad.dtype,
            device=grad.device,
            memory_format=fmt,
        )

    @torch.library.register_fake(f"{ns}::height_interp")
    def _(a, size):
        op = f"{ns}.height_interp"
        _check_tensor(op, "a", a, 3, "(B, C, h)")
        _check_positive(op, "size", size)
        return a.new_empty((a.shape[0], a.shape[1], size))

    @torch.library.register_fake(f"{ns}::height_interp_backward")
    def _(grad, in_size):
        op = f"{ns}.height_interp_backward"
        _check_tensor(op, "grad", grad, 3, "(B, C, size)")
        _check_positive(op, "in_size", in_size)
        return grad.new_empty((grad.shape[0], grad.shape[1], in_size))

    @torch.library.register_fake(f"{ns}::attention_rescale")
    def _(feat, logits):
        _check_rescale(f"{ns}.attention_rescale", feat, logits)
        return torch.empty_like(feat, memory_format=_layout(feat))

    @torch.library.register_fake(f"{ns}::attention_rescale_backward")
    def _(grad, feat, logits):
        op = f"{ns}.attention_rescale_backward"
        _check_rescale(op, feat, logits)
        _check_same_device_dtype(op, "grad", grad, "feat", feat)
        torch._check(
            grad.shape == feat.shape,
            lambda: f"{op}: grad shape {tuple(grad.shape)} must equal feat shape {tuple(feat.shape)}",
        )
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
