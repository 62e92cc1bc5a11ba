"""height_interp: every kernel backend against the float64 reference, the Triton
kernels' own cases, gradcheck."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from hanet.ops import reference as ref
from op_cases import (DTYPES, KERNELS, NAMESPACES, NS_IDS, check_against_truth, close,
                      kernel_cases, make, namespace, needs_triton, x_)

CASES, IDS = kernel_cases()
T = namespace("triton") if "triton" in KERNELS else None

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_height_interp_kernels(backend, shape, dtype):
    B, C, H, _, h = shape
    a = make((B, C, h), dtype, "nchw", seed=4)
    for size in (H, 1, 2 * h + 1):
        check_against_truth(
            lambda t: hops.height_interp(t, size, backend=backend),
            lambda t: reference.height_interp(t, size),
            [a],
            dtype,
            f"height_interp[{backend}, size={size}]",
        )


INTERP_CASES = [(4, 11), (16, 96), (5, 5), (7, 3), (1, 6), (6, 1), (3, 20)]


@needs_triton
@pytest.mark.parametrize("h,size", INTERP_CASES)
def test_triton_height_interp(h, size):
    for dtype in (torch.float32, torch.float64):
        a = x_((2, 3, h), dtype)
        out = T.height_interp(a, size)
        assert out.shape == (2, 3, size) and out.dtype == dtype
        close(out, ref.height_interp(a, size), dtype)
        a = a.detach().requires_grad_(True)
        grad = x_((2, 3, size), dtype, seed=4)
        (ga,) = torch.autograd.grad(ref.height_interp(a, size), a, grad)
        gi = T.height_interp_backward(grad, h)
        assert gi.shape == (2, 3, h) and gi.dtype == dtype
        close(gi, ga, dtype)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_triton_height_interp_half(dtype):
    a = x_((2, 3, 5), dtype)
    close(T.height_interp(a, 13), ref.height_interp(a.double(), 13), dtype)
    grad = x_((2, 3, 13), dtype, seed=4)
    a64 = a.double().requires_grad_(True)
    (ga,) = torch.autograd.grad(ref.height_interp(a64, 13), a64, grad.double())
    close(T.height_interp_backward(grad, 5), ga, dtype)


@needs_triton
def test_triton_height_interp_backward_sweep():
    # every (h, size) pair in a range: the gather window must find every tap
    for h in range(1, 9):
        for size in (1, 2, 3, 5, 8, 13, 17, 31):
            a = x_((1, 2, h), torch.float64).requires_grad_(True)
            grad = x_((1, 2, size), torch.float64, seed=h * 100 + size)
            (ga,) = torch.autograd.grad(ref.height_interp(a, size), a, grad)
            close(T.height_interp_backward(grad, h), ga, torch.float64)


def _req(t):
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("size", [1, 4, 13])
@pytest.mark.parametrize("backend", KERNELS)
def test_gradcheck_height_interp(backend, size):
    a = _req(make((2, 3, 5), torch.float64, "nchw", seed=4))
    assert torch.autograd.gradcheck(lambda t: hops.height_interp(t, size, backend=backend), (a,))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ns_name,ns", NAMESPACES, ids=NS_IDS)
def test_opcheck_height_interp(ns_name, ns, dtype):
    """Schema, fake kernel, autograd registration and AOT dispatch of both ops (3-D
    tensors have one layout)."""
    ops = ns()
    a = make((2, 3, 4), dtype, "nchw", seed=6).requires_grad_()
    torch.library.opcheck(ops.height_interp, (a, 9))
    torch.library.opcheck(ops.height_interp_backward, (make((2, 3, 9), dtype, "nchw").requires_grad_(), 4))


@pytest.mark.parametrize("backend", KERNELS)
def test_gradgradcheck_height_interp(backend):
    """Twice differentiable: height_interp_backward is linear, its adjoint height_interp."""
    a = _req(make((2, 3, 5), torch.float64, "nchw", seed=4))
    assert torch.autograd.gradgradcheck(lambda t: hops.height_interp(t, 7, backend=backend), (a,))


@pytest.mark.parametrize("backend", KERNELS)
def test_empty_batch_height_interp(backend):
    """B = 0 is accepted as by F.interpolate."""
    a = make((0, 3, 4), torch.float32, "nchw").requires_grad_()
    out = hops.height_interp(a, 9, backend=backend)
    assert out.shape == (0, 3, 9) == reference.height_interp(a.detach(), 9).shape
    (ga,) = torch.autograd.grad(out.sum(), a)
    assert ga.shape == a.shape
