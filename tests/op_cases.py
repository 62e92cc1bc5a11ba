"""Shared cases and tolerances of the op tests (Liger-Kernel style: every op
against its PyTorch reference with per-dtype tolerances)."""
from __future__ import annotations

import pytest
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


# ---- shared by the per-op tests (tests/ops/) -------------------------------

# The fused backends: each is checked against the float64 reference (never the
# reference against itself; tests/ops/test_reference.py checks it on literal values).
KERNELS = [b for b in kernel_backends() if b != "reference"]
needs_triton = pytest.mark.skipif("triton" not in KERNELS, reason="triton backend unavailable")

# Triton-interpreter tolerances (tests on tiny shapes against the float64 reference).
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float16: dict(rtol=1e-2, atol=2e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}


def grad_check_shape(backend: str) -> tuple:
    """(B, C, H, W) of the gradcheck inputs: the Triton interpreter pays ~0.1 s a launch
    and a full numerical Jacobian takes two launches per input element, so its input
    is smaller (60 elements instead of 210; still two images, channels, bins that overlap
    or repeat rows).  Full Jacobians everywhere: fast mode (v^T J u) was tried and let a
    50 % error in one gradient entry through."""
    return (2, 2, 5, 3) if backend == "triton" else (2, 3, 7, 5)


def namespace(backend: str):
    """torch.ops.hanet for "cpu"/"cuda", torch.ops.hanet_triton for "triton"."""
    return hops.dispatch.triton_ops() if backend == "triton" else torch.ops.hanet


def x_(shape, dtype=torch.float32, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x


def close(actual, expected, dtype):
    torch.testing.assert_close(actual.double(), expected.double(), **TOL[dtype])


def run_with_grads(fn, inputs, grad_out_seed=7):
    """Forward, then gradients of sum(out * g) w.r.t. every input."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    g = make(out.shape, out.dtype, "nchw", seed=grad_out_seed)
    grads = torch.autograd.grad(out, inputs, g)
    return out.detach(), [gr.detach() for gr in grads]


def check_against_truth(fn_ours, fn_ref, inputs, dtype, what):
    """`fn_ours` (a kernel backend) forward and every gradient against `fn_ref` in float64
    (and, for fp16/bf16, within twice eager PyTorch's own error in that dtype)."""
    ours, ours_g = run_with_grads(fn_ours, inputs)
    truth, truth_g = run_with_grads(fn_ref, [t.double() for t in inputs])
    eager, eager_g = (None, [None] * len(inputs))
    if dtype in (torch.float16, torch.bfloat16):
        eager, eager_g = run_with_grads(fn_ref, inputs)
    assert ours.dtype == dtype
    assert_close_to_truth(ours, truth, eager, dtype, f"{what} forward")
    for i, (a, t, e) in enumerate(zip(ours_g, truth_g, eager_g)):
        assert a.dtype == dtype
        assert_close_to_truth(a, t, e, dtype, f"{what} grad of input {i}")


def kernel_cases(backends=KERNELS):
    """(backend, shape) rows: every shape, plus the large ones for compiled backends
    (the Triton interpreter is slow)."""
    cases = [(b, s) for b in backends for s in SHAPES + (LARGE_SHAPES if b != "triton" else [])]
    return cases, [f"{b}-{'x'.join(map(str, s))}" for b, s in cases]


def namespaces():
    """(name, namespace getter) of the custom-op namespaces usable here."""
    out = []
    if "cpu" in KERNELS:
        out.append(("hanet", lambda: torch.ops.hanet))
    if "triton" in KERNELS:
        out.append(("hanet_triton", hops.dispatch.triton_ops))
    return out


NAMESPACES = namespaces()
NS_IDS = [n for n, _ in NAMESPACES]
