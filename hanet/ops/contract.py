"""The op contract: one declarative entry per op, the single Python description of
its name, arguments and their rules, output shapes / dtypes / layouts, backward op
and backends.

Read by the public API's validation (:mod:`hanet.ops.functional`), the fake kernels
and autograd of both namespaces (:mod:`hanet.ops._library`) and the Triton launchers
(:mod:`hanet.ops.triton`).  ``csrc/contract.cpp`` mirrors the rules in C++ and
``tests/ops/test_contract.py`` checks that both reject exactly the same inputs.

Rules are checked in order; the first that fails raises.  Sizes are ints >= 1; a
tensor argument has a fixed rank, a floating dtype, and every dimension but the batch
(dim 0) at least 1 (an empty batch is valid, as in ``torch.nn.functional``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Sequence, Tuple

import torch

FLOATING = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
BACKENDS = ("reference", "cpu", "cuda", "triton")


# ----------------------------------------------------------------------------
# How a failed rule is reported
# ----------------------------------------------------------------------------


class Checker:
    """Eager checks: raises ``type_error`` / ``value_error`` with the message."""

    def __init__(self, prefix: str, type_error=TypeError, value_error=ValueError):
        self.prefix, self.type_error, self.value_error = prefix, type_error, value_error

    def require(self, ok, kind: str, msg: Callable[[], str]) -> None:
        if not ok:
            raise (self.type_error if kind == "type" else self.value_error)(f"{self.prefix}: {msg()}")


class SymbolicChecker(Checker):
    """Fake-kernel checks: torch._check keeps symbolic sizes traceable."""

    def require(self, ok, kind: str, msg: Callable[[], str]) -> None:
        torch._check(ok, lambda: f"{self.prefix}: {msg()}")


# ----------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """A floating tensor of the rank of ``shape`` (e.g. "(B, C, H, W)")."""

    name: str
    shape: str

    @property
    def ndim(self) -> int:
        return self.shape.count(",") + 1

    def check(self, v: Dict[str, Any], c: Checker) -> None:
        t, n = v[self.name], self.name
        c.require(isinstance(t, torch.Tensor), "type",
                  lambda: f"{n} must be a torch.Tensor, got {type(t).__name__}")
        c.require(t.dim() == self.ndim, "value",
                  lambda: f"{n} must be a {self.ndim}-D tensor {self.shape}, got a {t.dim()}-D "
                  f"tensor of shape {tuple(t.shape)}")
        c.require(t.dtype in FLOATING, "type",
                  lambda: f"{n} must be a float32, float16, bfloat16 or float64 tensor, got {t.dtype}")
        for d in range(1, t.dim()):
            c.require(t.shape[d] >= 1, "value",
                      lambda: f"{n} is empty (shape {tuple(t.shape)}); every dimension but the "
                      "batch must be at least 1")


@dataclass(frozen=True)
class Size:
    """An int >= 1 (``strict``: the public API also refuses bools and non-ints, which the
    schema's SymInt would convert)."""

    name: str
    label: str = ""

    def check(self, v: Dict[str, Any], c: Checker, strict: bool = False) -> None:
        x, label = v[self.name], self.label or self.name
        if strict:
            c.require(not isinstance(x, bool) and isinstance(x, (int, torch.SymInt)), "type",
                      lambda: f"{self.name} must be an int, got {type(x).__name__}")
        c.require(x >= 1, "value", lambda: f"{label} must be >= 1, got {x}")


@dataclass(frozen=True)
class Choice:
    name: str
    choices: Tuple[str, ...]

    def check(self, v: Dict[str, Any], c: Checker) -> None:
        x = v[self.name]
        names = " or ".join(f'"{s}"' for s in self.choices)
        c.require(isinstance(x, str) and x in self.choices, "value",
                  lambda: f"{self.name} must be {names}, got {x!r}")


@dataclass(frozen=True)
class SameDevice:
    a: str
    b: str
    dtype: bool = True  # also the same dtype

    def check(self, v: Dict[str, Any], c: Checker) -> None:
        x, y = v[self.a], v[self.b]
        c.require(isinstance(y, torch.Tensor), "type",
                  lambda: f"{self.a} must be a torch.Tensor, got {type(y).__name__}")
        c.require(x.device == y.device, "value",
                  lambda: f"{self.a} and {self.b} must be on the same device, got {x.device} and "
                  f"{y.device}")
        if self.dtype:
            c.require(x.dtype == y.dtype, "type",
                      lambda: f"{self.a} and {self.b} must have the same dtype, got {x.dtype} and "
                      f"{y.dtype}")


@dataclass(frozen=True)
class SameSize:
    """Dimension ``dim`` of ``a`` equals that of ``b`` (``what``: "batch", "channel"),
    or with dim=None the whole shape."""

    a: str
    b: str
    dim: int | None = None
    what: str = ""
    unit: str = ""

    def check(self, v: Dict[str, Any], c: Checker) -> None:
        x, y = v[self.a].shape, v[self.b].shape
        if self.dim is None:
            c.require(x == y, "value",
                      lambda: f"{self.a} shape {tuple(x)} must equal {self.b} shape {tuple(y)}")
        else:
            c.require(x[self.dim] == y[self.dim], "value", lambda: f"{self.what} mismatch: "
                      f"{self.a} has {x[self.dim]} {self.unit}, {self.b} has {y[self.dim]}")


@dataclass(frozen=True)
class MaxIndices:
    """Max-pool indices of ``grad``: int64 and grad's shape (mean mode ignores them)."""

    name: str
    like: str

    def check(self, v: Dict[str, Any], c: Checker) -> None:
        if v["mode"] != "max":
            return
        t = v[self.name]
        c.require(t.dtype == torch.int64, "type", lambda: f"{self.name} must be int64, got {t.dtype}")
        SameSize(self.name, self.like).check(v, c)


# ----------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------


def _empty(shape, like: torch.Tensor, dtype=None, fmt=torch.contiguous_format) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def kept_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format a kernel keeps: NCHW when contiguous, else channels_last when
    dense in that order, else (copied) contiguous."""
    if t.is_contiguous():
        return torch.contiguous_format
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@dataclass(frozen=True)
class Op:
    """One op: ``name(args)`` with ``rules``; ``outputs(**args)`` allocates its (empty)
    outputs with the shapes, dtypes and layouts the kernels return; ``backward`` names
    the op its autograd calls (None: not differentiable itself)."""

    name: str
    args: Tuple[str, ...]
    rules: Tuple[Any, ...]
    outputs: Callable[..., Any]
    doc: str
    backward: str | None = None
    # autograd: setup(ctx, inputs, output) saves what grad(ops, ctx, *grad_outputs) needs
    # to call ops.<backward> (ops: the namespace, torch.ops.hanet or .hanet_triton)
    setup: Callable[..., None] | None = None
    grad: Callable[..., Any] | None = None
    public: bool = False
    backends: Tuple[str, ...] = BACKENDS
    defaults: Dict[str, Any] = field(default_factory=dict)

    def bind(self, values: Sequence[Any], kwargs: Dict[str, Any] | None = None) -> Dict[str, Any]:
        v = dict(self.defaults)
        v.update(zip(self.args, values))
        v.update(kwargs or {})
        return v

    def check(self, v: Dict[str, Any], c: Checker, strict: bool = False) -> None:
        for rule in self.rules:
            if isinstance(rule, Size):
                rule.check(v, c, strict)
            else:
                rule.check(v, c)


def _pool_out(x, rows, mode="mean"):
    B, C = x.shape[0], x.shape[1]
    return (_empty((B, C, rows), x),
            _empty((B, C, rows) if mode == "max" else (0,), x, torch.int64))


def _pool_backward_out(grad, indices, height, width, mode, channels_last):
    # allocated in that format as the kernels do (.contiguous(memory_format=...) of a
    # C = 1 tensor would keep its NCHW strides: both formats hold, strides differ)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return _empty((grad.shape[0], grad.shape[1], height, width), grad, fmt=fmt)


def _pool_setup(ctx, inputs, output):
    # no zero gradient materialised for the (non-differentiable) indices output
    ctx.set_materialize_grads(False)
    x, _, ctx.mode = inputs
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.height, ctx.width = x.shape[2], x.shape[3]
    ctx.channels_last = kept_format(x) == torch.channels_last


def _pool_grad(ops, ctx, grad_out, _grad_indices):
    if grad_out is None:  # only the indices reached the loss: no gradient for x
        return None, None, None
    (indices,) = ctx.saved_tensors
    if ctx.mode == "max":
        return (ops.width_pool_backward(grad_out, indices, ctx.height, ctx.width, ctx.mode,
                                        ctx.channels_last), None, None)
    # The mean-pool gradient is constant along W: compute it per row, (B, C, H, 1) from
    # the kernel at width 1 with grad / W, and expand it over W with stride 0.  Autograd
    # then adds it into x's other gradients in one pass, with no dense (B, C, H, W)
    # tensor written first.
    rows = ops.width_pool_backward(grad_out / ctx.width, indices, ctx.height, 1, "mean", False)
    return rows.expand(-1, -1, -1, ctx.width), None, None


def _pool_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.rows, ctx.mode = inputs[0].shape[2], inputs[4]


def _pool_backward_grad(ops, ctx, gg):
    # width_pool_backward is linear in grad: its adjoint is mean pooling, or for max the
    # gather at the arg-max indices (so width_pool is twice differentiable)
    (indices,) = ctx.saved_tensors
    if ctx.mode == "max":
        g = gg.flatten(2).gather(2, indices)
    else:
        g = ops.width_pool(gg, ctx.rows, "mean")[0]
    return g, None, None, None, None, None


def _once_differentiable(name: str):
    def grad(ops, ctx, *grads):
        raise RuntimeError(
            f"{name} is differentiable once: its backward has no derivative (double backward, "
            f"e.g. gradgradcheck or create_graph=True through it); use backend='reference' for that")
    return grad


def _interp_setup(ctx, inputs, output):
    ctx.in_size = inputs[0].shape[2]


#: dtypes whose rescale backward keeps the output instead of feat (hanet_math.h
#: feat_dot_from_result): out / A recovers feat to about 1 ulp, as precise as the
#: reference's own backward in fp32 / fp64; in fp16 / bf16 the rounding of out would
#: cost the logits gradient ~2^-9 relative, so those keep feat.
RESCALE_SAVES_OUTPUT = (torch.float32, torch.float64)


def _rescale_setup(ctx, inputs, output):
    # Keeping the output rather than feat lets feat be freed after the forward
    # wherever nothing else holds it (the next layer keeps the output anyway): one
    # full-size tensor less per HANet site (issue 13).
    feat, logits = inputs
    ctx.feat_is_output = feat.dtype in RESCALE_SAVES_OUTPUT
    ctx.save_for_backward(output if ctx.feat_is_output else feat, logits)


def _rescale_grad(ops, ctx, grad):
    feat, logits = ctx.saved_tensors
    return tuple(ops.attention_rescale_backward(grad, feat, logits, ctx.feat_is_output))


OPS: Dict[str, Op] = {op.name: op for op in (
    Op("width_pool", ("x", "rows", "mode"),
       (Tensor("x", "(B, C, H, W)"), Size("rows"), Choice("mode", ("mean", "max"))),
       _pool_out, "(B, C, H, W) -> (B, C, rows), and the arg-max flat index h*W+w for mode='max'",
       backward="width_pool_backward", setup=_pool_setup, grad=_pool_grad, public=True,
       defaults={"mode": "mean"}),
    Op("width_pool_backward", ("grad", "indices", "height", "width", "mode", "channels_last"),
       (Tensor("grad", "(B, C, rows)"), Size("height", "height and width"),
        Size("width", "height and width"),
        # both modes: an indices tensor on another device would reroute the call
        SameDevice("indices", "grad", dtype=False), Choice("mode", ("mean", "max")),
        MaxIndices("indices", "grad")),
       _pool_backward_out, "(B, C, rows) -> (B, C, height, width)",
       setup=_pool_backward_setup, grad=_pool_backward_grad),
    Op("height_interp", ("a", "size"), (Tensor("a", "(B, C, h)"), Size("size")),
       lambda a, size: _empty((a.shape[0], a.shape[1], size), a),
       "(B, C, h) -> (B, C, size), linear, align_corners=False",
       backward="height_interp_backward", setup=_interp_setup,
       grad=lambda ops, ctx, g: (ops.height_interp_backward(g, ctx.in_size), None), public=True),
    Op("height_interp_backward", ("grad", "in_size"), (Tensor("grad", "(B, C, size)"), Size("in_size")),
       lambda grad, in_size: _empty((grad.shape[0], grad.shape[1], in_size), grad),
       "(B, C, size) -> (B, C, in_size), the adjoint of height_interp",
       # linear: its own adjoint is height_interp (so height_interp is twice differentiable)
       setup=lambda ctx, inputs, output: setattr(ctx, "size", inputs[0].shape[2]),
       grad=lambda ops, ctx, gg: (ops.height_interp(gg, ctx.size), None)),
    Op("attention_rescale", ("feat", "logits"),
       (Tensor("feat", "(B, C, H, W)"), Tensor("logits", "(B, C, h)"), SameDevice("feat", "logits"),
        SameSize("feat", "logits", 0, "batch", "images"),
        SameSize("feat", "logits", 1, "channel", "channels")),
       lambda feat, logits: _empty(feat.shape, feat, fmt=kept_format(feat)),
       "feat (B, C, H, W) * interp(sigmoid(logits (B, C, h)), H)[..., None]",
       backward="attention_rescale_backward", setup=_rescale_setup,
       grad=_rescale_grad, public=True),
    Op("attention_rescale_backward", ("grad", "feat", "logits", "feat_is_output", "attention_grad"),
       (Tensor("feat", "(B, C, H, W)"), Tensor("logits", "(B, C, h)"), SameDevice("feat", "logits"),
        SameSize("feat", "logits", 0, "batch", "images"),
        SameSize("feat", "logits", 1, "channel", "channels"),
        Tensor("grad", "(B, C, H, W)"), SameDevice("grad", "feat"), SameSize("grad", "feat")),
       lambda grad, feat, logits, feat_is_output=False, attention_grad=False: (
           _empty(feat.shape, feat, fmt=kept_format(feat)),
           _empty(tuple(feat.shape[:3]) if attention_grad else logits.shape, logits)),
       "(grad_feat, grad_logits) of attention_rescale; with feat_is_output, `feat` is its "
       "output feat * A; with attention_grad, (grad_feat, grad_A): the gradient (B, C, H) "
       "of A = interp(sigmoid(logits), H), the row sums of grad * feat",
       defaults={"feat_is_output": False, "attention_grad": False},
       setup=lambda ctx, inputs, output: None,
       grad=_once_differentiable("attention_rescale")),
)}


def check(op: str, values: Sequence[Any], prefix: str, checker: type = Checker,
          strict: bool = False, **errors) -> Dict[str, Any]:
    """Checks a call of ``op`` and returns its arguments by name.  ``prefix`` starts
    every message (e.g. "hanet.ops.width_pool"); ``errors`` may override the
    ``type_error`` / ``value_error`` classes."""
    spec = OPS[op]
    v = spec.bind(values)
    spec.check(v, checker(prefix, **errors), strict)
    return v
