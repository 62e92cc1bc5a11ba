"""Triton implementations of the HANet ops, registered as ``torch.ops.hanet_triton.*``.

The ops have exactly the schemas and behaviour of the C++ ops of the ``hanet``
namespace (``csrc/hanet_ops.cpp``); the math follows ``hanet/ops/reference.py``.
They are defined with :func:`torch.library.triton_op`, every kernel launched through
:func:`torch.library.wrap_triton`, so that ``torch.compile`` sees the kernels.
Autograd is not registered here (see the brief of ``hanet/ops``).

Kernels, block sizes and grids come from the ``plan_*`` functions of
:mod:`hanet.ops.triton_kernels` (the ahead-of-time test compiles those same plans).

With ``TRITON_INTERPRET=1`` set before ``triton`` is imported, the kernels run in
Triton's interpreter on CPU tensors.  ``wrap_triton`` cannot trace interpreted
kernels, so in that mode the ops are kept opaque under ``torch.compile`` (no
decomposition into kernel calls; the fake implementation skips the launches and only
builds the outputs) and the compiled graph calls the op itself.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor
from torch.library import triton_op, wrap_triton

from . import triton_kernels as K

__all__ = [
    "NAMESPACE",
    "INTERPRETED",
    "HanetArgumentError",
    "width_pool",
    "width_pool_backward",
    "height_interp",
    "height_interp_backward",
    "attention_rescale",
    "attention_rescale_backward",
]

NAMESPACE = "hanet_triton"


def _is_interpreted(kernel) -> bool:
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover
        return False
    return isinstance(kernel, InterpretedFunction)


#: True when the kernels run in Triton's interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = _is_interpreted(K._rescale_nchw_kernel)

_FLOATING = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class HanetArgumentError(ValueError, RuntimeError):
    """Invalid argument to a ``hanet_triton`` op (both a ValueError and a RuntimeError,
    the latter like the c10::Error of the C++ ``hanet`` ops)."""


# ----------------------------------------------------------------------------
# Argument checks (cheap: metadata only)
# ----------------------------------------------------------------------------


def _fail(op: str, msg: str):
    raise HanetArgumentError(f"hanet_triton.{op}: {msg}")


def _check_tensor(op: str, name: str, t, dim: int, shape: str) -> None:
    if not isinstance(t, Tensor):
        _fail(op, f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() != dim:
        _fail(op, f"{name} must be a {dim}-D tensor {shape}, got a {t.dim()}-D tensor "
                  f"of shape {tuple(t.shape)}")
    if t.dtype not in _FLOATING:
        _fail(op, f"{name} must be a float32, float16, bfloat16 or float64 tensor, got {t.dtype}")
    if t.numel() == 0:
        _fail(op, f"{name} is empty (shape {tuple(t.shape)}); every dimension must be at least 1")
    dev = t.device.type
    if not INTERPRETED and dev not in ("cuda", "meta"):
        _fail(op, f"{name} must be a CUDA tensor, got a tensor on {t.device} (set "
                  "TRITON_INTERPRET=1 before importing triton to run the kernels on CPU)")


def _check_same(op: str, name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.device != b.device:
        _fail(op, f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        _fail(op, f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")


def _check_mode(op: str, mode: str) -> bool:
    if mode not in ("mean", "max"):
        _fail(op, f'mode must be "mean" or "max", got {mode!r}')
    return mode == "max"


def _check_positive(op: str, name: str, v) -> None:
    if v < 1:
        _fail(op, f"{name} must be >= 1, got {v}")


def _layout(x: Tensor) -> Tuple[Tensor, str]:
    """(x, "nchw") if contiguous, (x, "nhwc") if channels_last-contiguous (NCHW wins
    when both hold), else (x.contiguous(), "nchw")."""
    if x.is_contiguous():
        return x, "nchw"
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, "nhwc"
    return x.contiguous(), "nchw"


def _memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "nhwc" else torch.contiguous_format


# ----------------------------------------------------------------------------
# Launching
# ----------------------------------------------------------------------------


def _is_fake(t: Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return t.device.type == "meta" or is_fake(t)


def _run(plan: K.Plan, tensors: Dict[str, Tensor], device: torch.device) -> None:
    for role, (shape, dtype) in plan.temps.items():
        tensors[role] = torch.empty(shape, dtype=dtype, device=device)
    if INTERPRETED and any(_is_fake(t) for t in tensors.values()):
        # Fake implementation: outputs are built above, interpreted kernels cannot
        # run on fake tensors (and are not traceable anyway).
        return
    for launch in plan.launches:
        wrap_triton(launch.kernel)[launch.grid](**launch.kwargs(tensors),
                                                num_warps=launch.num_warps)


# ----------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------


@triton_op(f"{NAMESPACE}::width_pool", mutates_args=())
def width_pool(x: Tensor, rows: int, mode: str = "mean") -> Tuple[Tensor, Tensor]:
    """(B, C, H, W) -> (B, C, rows) adaptive average or max pooling to (rows, 1), and
    for mode="max" the int64 arg-max flat index h*W + w (else an empty int64 tensor)."""
    op = "width_pool"
    _check_tensor(op, "x", x, 4, "(B, C, H, W)")
    _check_positive(op, "rows", rows)
    is_max = _check_mode(op, mode)
    x, layout = _layout(x)
    B, C, H, W = x.shape
    out = torch.empty((B, C, rows), dtype=x.dtype, device=x.device)
    if is_max:
        idx = torch.empty((B, C, rows), dtype=torch.int64, device=x.device)
    else:
        idx = torch.empty((0,), dtype=torch.int64, device=x.device)
    plan = K.plan_width_pool(int(B), int(C), int(H), int(W), int(rows), mode, x.dtype, layout)
    _run(plan, {"x": x, "out": out, "idx": idx}, x.device)
    return out, idx


@triton_op(f"{NAMESPACE}::width_pool_backward", mutates_args=())
def width_pool_backward(grad: Tensor, indices: Tensor, height: int, width: int, mode: str,
                        channels_last: bool) -> Tensor:
    """(B, C, rows) -> (B, C, height, width), channels_last memory format if the flag."""
    op = "width_pool_backward"
    _check_tensor(op, "grad", grad, 3, "(B, C, rows)")
    if height < 1 or width < 1:
        _fail(op, f"height and width must be >= 1, got {height} and {width}")
    is_max = _check_mode(op, mode)
    # Both modes (mean ignores indices, but one on another device reroutes the call).
    if indices.device != grad.device:
        _fail(op, f"indices and grad must be on the same device, got {indices.device} and "
                  f"{grad.device}")
    if is_max:
        if indices.dtype != torch.int64:
            _fail(op, f"indices must be int64, got {indices.dtype}")
        if indices.shape != grad.shape:
            _fail(op, f"indices shape {tuple(indices.shape)} must equal grad shape "
                      f"{tuple(grad.shape)}")
        indices = indices.contiguous()
    grad = grad.contiguous()
    B, C, rows = grad.shape
    layout = "nhwc" if channels_last else "nchw"
    out = torch.empty((B, C, height, width), dtype=grad.dtype, device=grad.device,
                      memory_format=_memory_format(layout))
    plan = K.plan_width_pool_backward(int(B), int(C), int(rows), int(height), int(width),
                                      mode, grad.dtype, layout)
    _run(plan, {"grad": grad, "idx": indices, "out": out}, grad.device)
    return out


@triton_op(f"{NAMESPACE}::height_interp", mutates_args=())
def height_interp(a: Tensor, size: int) -> Tensor:
    """(B, C, h) -> (B, C, size): F.interpolate(a, size, mode="linear", align_corners=False)."""
    op = "height_interp"
    _check_tensor(op, "a", a, 3, "(B, C, h)")
    _check_positive(op, "size", size)
    a = a.contiguous()
    B, C, h = a.shape
    out = torch.empty((B, C, size), dtype=a.dtype, device=a.device)
    plan = K.plan_height_interp(int(B * C), int(h), int(size), a.dtype)
    _run(plan, {"a": a, "out": out}, a.device)
    return out


@triton_op(f"{NAMESPACE}::height_interp_backward", mutates_args=())
def height_interp_backward(grad: Tensor, in_size: int) -> Tensor:
    """Adjoint of height_interp: (B, C, size) -> (B, C, in_size), deterministic."""
    op = "height_interp_backward"
    _check_tensor(op, "grad", grad, 3, "(B, C, size)")
    _check_positive(op, "in_size", in_size)
    grad = grad.contiguous()
    B, C, size = grad.shape
    out = torch.empty((B, C, in_size), dtype=grad.dtype, device=grad.device)
    plan = K.plan_height_interp_backward(int(B * C), int(in_size), int(size), grad.dtype)
    _run(plan, {"grad": grad, "out": out}, grad.device)
    return out


def _check_rescale(op: str, feat: Tensor, logits: Tensor) -> None:
    _check_tensor(op, "feat", feat, 4, "(B, C, H, W)")
    _check_tensor(op, "logits", logits, 3, "(B, C, h)")
    _check_same(op, "feat", feat, "logits", logits)
    if feat.shape[0] != logits.shape[0]:
        _fail(op, f"batch mismatch: feat has {feat.shape[0]} images, logits has {logits.shape[0]}")
    if feat.shape[1] != logits.shape[1]:
        _fail(op, f"channel mismatch: feat has {feat.shape[1]} channels, logits has "
                  f"{logits.shape[1]}")


@triton_op(f"{NAMESPACE}::attention_rescale", mutates_args=())
def attention_rescale(feat: Tensor, logits: Tensor) -> Tensor:
    """feat * interp(sigmoid(logits), H)[..., None], in feat's memory format; one pass
    over feat, A computed in fp32 (fp64 for fp64) inside the kernel."""
    op = "attention_rescale"
    _check_rescale(op, feat, logits)
    feat, layout = _layout(feat)
    logits = logits.contiguous()
    B, C, H, W = feat.shape
    out = torch.empty_like(feat, memory_format=_memory_format(layout))
    plan = K.plan_attention_rescale(int(B), int(C), int(H), int(W), int(logits.shape[2]),
                                    feat.dtype, layout)
    _run(plan, {"feat": feat, "logits": logits, "out": out}, feat.device)
    return out


@triton_op(f"{NAMESPACE}::attention_rescale_backward", mutates_args=())
def attention_rescale_backward(grad: Tensor, feat: Tensor, logits: Tensor) -> Tuple[Tensor, Tensor]:
    """(grad_feat, grad_logits): grad_feat = grad * A in feat's memory format;
    grad_logits = height_interp_backward(sum_w grad * feat) * s * (1 - s)."""
    op = "attention_rescale_backward"
    _check_rescale(op, feat, logits)
    _check_tensor(op, "grad", grad, 4, "(B, C, H, W)")
    _check_same(op, "grad", grad, "feat", feat)
    if grad.shape != feat.shape:
        _fail(op, f"grad shape {tuple(grad.shape)} must equal feat shape {tuple(feat.shape)}")
    feat, layout = _layout(feat)
    fmt = _memory_format(layout)
    grad = grad.contiguous(memory_format=fmt)  # no copy when already in feat's format
    logits = logits.contiguous()
    B, C, H, W = feat.shape
    grad_feat = torch.empty_like(feat, memory_format=fmt)
    grad_logits = torch.empty_like(logits)
    plan = K.plan_attention_rescale_backward(int(B), int(C), int(H), int(W),
                                             int(logits.shape[2]), feat.dtype, layout)
    _run(plan, {"grad": grad, "feat": feat, "logits": logits, "grad_feat": grad_feat,
                "out": grad_logits}, feat.device)
    return grad_feat, grad_logits


_OPS = {
    "width_pool": (width_pool, ("pool_nchw", "pool_nhwc", "pool_finish")),
    "width_pool_backward": (width_pool_backward, ("pool_bwd_nchw", "pool_bwd_nhwc")),
    "height_interp": (height_interp, ("height_interp",)),
    "height_interp_backward": (height_interp_backward, ("height_interp_backward",)),
    "attention_rescale": (attention_rescale, ("rescale_nchw", "rescale_nhwc")),
    "attention_rescale_backward": (attention_rescale_backward,
                                   ("rescale_bwd_nchw", "rescale_bwd_nhwc",
                                    "height_interp_backward")),
}


def _finish_registration() -> None:
    # The kernels are launched through plans, which the static scan of triton_op cannot
    # follow: list them for the AOTAutograd cache key (best effort, private API).
    try:
        from torch._library import triton as _lib_triton

        for name, (_, kernels) in _OPS.items():
            _lib_triton.triton_ops_to_kernels[f"{NAMESPACE}::{name}"] = [
                K.KERNELS[k] for k in kernels]
    except Exception:  # pragma: no cover
        pass
    if INTERPRETED:
        # Interpreted kernels cannot be captured by wrap_triton: keep the ops opaque
        # under torch.compile instead of decomposing them into (untraceable) launches.
        from torch._subclasses.functional_tensor import FunctionalTensorMode

        def _opaque(mode, op, types, args, kwargs):
            return mode.__torch_dispatch__(op, types, args, kwargs)

        for fn, _ in _OPS.values():
            fn.register_torch_dispatch(FunctionalTensorMode, _opaque)


_finish_registration()
