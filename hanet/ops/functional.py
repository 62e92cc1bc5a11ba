"""Public entry points of the HANet ops: validate, pick a backend, call it."""
from __future__ import annotations

import torch

from . import _extension, _library, contract, dispatch, reference
from .dispatch import eager_triton_registration, resolve, triton_ops

if _extension.extension_loaded():
    _library.register_fakes("hanet")
    _library.register_autograd("hanet")

# Register the Triton ops now wherever they can run (CUDA present, or the interpreter
# asked for), not lazily inside the first call: torch.compile cannot trace the
# registration.  Elsewhere triton is not imported at all.
if eager_triton_registration():
    triton_ops()


def _validate(op: str, *values) -> None:
    """The contract's checks, with the public API's stricter int rule."""
    contract.check(op, values, f"hanet.ops.{op}", strict=True)


_kernels = dispatch.kernel_ops


def width_pool(
    x: torch.Tensor, rows: int, mode: str = "mean", backend: str | None = None
) -> torch.Tensor:
    """Pool each row band of ``x`` over the width: (B, C, H, W) -> (B, C, rows).

    Equal to ``F.adaptive_avg_pool2d(x, (rows, 1))`` (``mode="mean"``) or
    ``F.adaptive_max_pool2d(x, (rows, 1))`` (``mode="max"``) with the last dim
    squeezed: output row i pools input rows [floor(i*H/rows), ceil((i+1)*H/rows))
    over all W columns, so rows > H repeats input rows.  Differentiable; the max
    gradient goes to the arg-max element.  ``x`` may be NCHW or channels_last.
    """
    _validate("width_pool", x, rows, mode)
    backend = resolve(backend, x.device)
    if backend == "reference":
        return reference.width_pool(x, rows, mode)
    return _kernels(backend).width_pool(x, rows, mode)[0]


def height_interp(a: torch.Tensor, size: int, backend: str | None = None) -> torch.Tensor:
    """Linearly resample the last dim: (B, C, h) -> (B, C, size).

    Equal to ``F.interpolate(a, size, mode="linear", align_corners=False)``.
    """
    _validate("height_interp", a, size)
    backend = resolve(backend, a.device)
    if backend == "reference":
        return reference.height_interp(a, size)
    return _kernels(backend).height_interp(a, size)


def attention_rescale(
    feat: torch.Tensor, logits: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """HANet's rescale: ``feat * height_interp(sigmoid(logits), H)[..., None]``.

    feat (B, C, H, W) (NCHW or channels_last, kept in the output), logits (B, C, h):
    the attention of each row of each channel, broadcast over the width.  Sigmoid
    first, then interpolation, as the original.  One pass over ``feat``; the
    backward returns both gradients from one pass over ``grad`` and the output (it
    keeps the output, not ``feat``, so ``feat`` can be freed after the forward).
    """
    _validate("attention_rescale", feat, logits)
    backend = resolve(backend, feat.device)
    if backend == "reference":
        return reference.attention_rescale(feat, logits)
    return _kernels(backend).attention_rescale(feat, logits)


class _ReluRescale(torch.autograd.Function):
    """relu(feat) * A, keeping only what the rescale's backward needs: in fp32 / fp64
    the output (contract.RESCALE_SAVES_OUTPUT), from which the ReLU's mask is read too
    (A > 0, so out > 0 exactly where relu(feat) > 0, short of an underflow of a positive
    feat * A to 0); in half types relu(feat), as a separate ReLU would keep.  So neither
    feat nor relu(feat) outlives the forward in fp32, and the backward runs the same two
    passes as ReLU + rescale (threshold_backward, as ReLU's own)."""

    @staticmethod
    def forward(ctx, feat, logits, ops):
        return rescale_saving_less(ctx, ops, feat, logits, relu=True)

    @staticmethod
    def backward(ctx, grad):
        return (*rescale_saved_grads(ctx, grad), None)


def rescale_saving_less(ctx, ops, feat, logits, relu: bool, attention_grad: bool = False):
    """Forward of an autograd node around ``ops.attention_rescale(relu(feat) if relu else
    feat, logits)`` that saves (on ``ctx``) the output in fp32 / fp64, else the rescale's
    input, and the logits; :func:`rescale_saved_grads` is its backward.  ``attention_grad``:
    the backward returns A's gradient (B, C, H) in the logits' place."""
    x = torch.relu(feat) if relu else feat
    out = ops.attention_rescale(x, logits)
    ctx.rescale = (ops, relu, attention_grad, feat.dtype in contract.RESCALE_SAVES_OUTPUT)
    ctx.save_for_backward(out if ctx.rescale[3] else x, logits)
    return out


def rescale_saved_grads(ctx, grad):
    """(grad of feat, grad of the logits or of A) of a :func:`rescale_saving_less` node."""
    ops, relu, attention_grad, feat_is_output = ctx.rescale
    saved, logits = ctx.saved_tensors
    grad_x, grad_second = ops.attention_rescale_backward(grad, saved, logits, feat_is_output, attention_grad)
    # relu: out > 0 exactly where relu(feat) > 0 (A > 0), so the saved tensor gives the mask
    return (torch.ops.aten.threshold_backward(grad_x, saved, 0) if relu else grad_x), grad_second


def relu_attention_rescale(
    feat: torch.Tensor, logits: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """``attention_rescale(relu(feat), logits)`` with the ReLU fused into the autograd
    node: for a HANet site whose ``x_high`` ends in a ReLU (a ResNet stage, the
    decoder's ``final1``), the site takes the pre-activation and neither it nor the
    activation is kept for the backward (fp32 / fp64; issue 13: HANet's added memory).
    Same values as the two ops in sequence; gradients too, except where a positive
    feat * A underflows to 0 (feat below ~1e-38 / A), whose gradient is then 0 as
    where feat <= 0."""
    _validate("attention_rescale", feat, logits)
    backend = resolve(backend, feat.device)
    if backend == "reference":
        return reference.attention_rescale(torch.relu(feat), logits)
    if not (torch.is_grad_enabled() and (feat.requires_grad or logits.requires_grad)):
        return _kernels(backend).attention_rescale(torch.relu(feat), logits)
    return _ReluRescale.apply(feat, logits, _kernels(backend))
