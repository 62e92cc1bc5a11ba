"""width_pool: every kernel backend against the float64 reference (forward, gradients,
dtypes, layouts, shapes), the Triton kernels' own cases, gradcheck."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from hanet.ops import reference as ref
from op_cases import (DTYPES, KERNELS, LAYOUTS, NAMESPACES, NS_IDS, check_against_truth, close,
                      kernel_cases, make, namespace, needs_triton, x_, grad_check_shape)

CASES, IDS = kernel_cases()
T = namespace("triton") if "triton" in KERNELS else None

@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_width_pool_kernels(backend, shape, dtype, layout, mode):
    B, C, H, W, rows = shape
    x = make((B, C, H, W), dtype, layout, seed=3)
    check_against_truth(
        lambda t: hops.width_pool(t, rows, mode, backend=backend),
        lambda t: reference.width_pool(t, rows, mode),
        [x],
        dtype,
        f"width_pool[{backend}, {mode}]",
    )


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_indices_match_pytorch(backend, layout):
    """The arg-max (which the gradient follows) is PyTorch's, ties included."""
    x = make((2, 3, 11, 6), torch.float32, layout, seed=5).round()  # many ties
    ns = namespace(backend)
    out, idx = ns.width_pool(x, 4, "max")
    ref_out, ref_idx = reference.width_pool_with_indices(x, 4)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(idx, ref_idx)


POOL_CASES = [
    (2, 3, 7, 5, 3),
    (1, 2, 3, 4, 5),   # H < rows: bins repeat rows
    (1, 3, 8, 1, 4),   # W = 1
    (2, 1, 9, 6, 1),   # rows = 1, C = 1
    (1, 2, 1, 1, 2),   # 1x1 pixel
    (1, 2, 12, 3, 5),  # overlapping bins
]


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_triton_width_pool_fp32(case, channels_last):
    B, C, H, W, rows = case
    x = x_((B, C, H, W), channels_last=channels_last)
    out, idx = T.width_pool(x, rows, "mean")
    assert out.shape == (B, C, rows) and out.is_contiguous() and out.dtype == x.dtype
    assert idx.shape == (0,) and idx.dtype == torch.int64
    close(out, ref.width_pool(x, rows, "mean"), torch.float32)
    out, idx = T.width_pool(x, rows, "max")
    r_out, r_idx = ref.width_pool_with_indices(x, rows)
    assert idx.dtype == torch.int64 and idx.shape == (B, C, rows)
    torch.testing.assert_close(out, r_out, rtol=0, atol=0)
    torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64],
                         ids=str)
def test_triton_width_pool_dtypes(dtype, channels_last):
    x = x_((2, 3, 7, 5), dtype, channels_last)
    for rows in (3, 9):
        out, _ = T.width_pool(x, rows, "mean")
        close(out, ref.width_pool(x.double(), rows, "mean"), dtype)
        out, idx = T.width_pool(x, rows, "max")
        r_out, r_idx = ref.width_pool_with_indices(x.double(), rows)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), r_out, rtol=0, atol=0)
        torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_triton_width_pool_max_ties_nan_inf(channels_last):
    # Small integers: many exact ties (PyTorch keeps the first in scan order); NaN
    # (the last NaN wins) and -inf-only bins (index of the bin's first element).
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (2, 2, 9, 7), generator=g).float()
    x[0, 0, 1, 2] = float("nan")
    x[0, 0, 2, 5] = float("nan")
    x[0, 1, 3:6] = float("-inf")
    x[1, 1, 6, 0] = float("inf")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    for rows in (4, 3, 12):
        out, idx = T.width_pool(x, rows, "max")
        r_out, r_idx = ref.width_pool_with_indices(x, rows)
        torch.testing.assert_close(out, r_out, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


@needs_triton
def test_triton_width_pool_channels_last_split():
    # Enough bins x channels x pixels that the channels_last plan splits the reduction
    # over several programs and combines partial results (second kernel).
    from hanet.ops.triton.width_pool import plan_width_pool

    B, C, H, W, rows = 1, 2, 64, 40, 1
    assert len(plan_width_pool(B, C, H, W, rows, "max", torch.float32, "nhwc").launches) == 2
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 4, (B, C, H, W), generator=g).float()
    x[0, 1, 33, 7] = float("nan")
    x = x.to(memory_format=torch.channels_last)
    out, idx = T.width_pool(x, rows, "max")
    r_out, r_idx = ref.width_pool_with_indices(x, rows)
    torch.testing.assert_close(out, r_out, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)
    x = x.nan_to_num(0.5)
    out, _ = T.width_pool(x, rows, "mean")
    close(out, ref.width_pool(x, rows, "mean"), torch.float32)


@needs_triton
def test_triton_width_pool_non_contiguous_input():
    x = x_((2, 3, 9, 8))[:, :, 1:, ::2]  # neither NCHW- nor channels_last-contiguous
    out, _ = T.width_pool(x, 4, "mean")
    close(out, ref.width_pool(x, 4, "mean"), torch.float32)
    out, idx = T.width_pool(x, 4, "max")
    r_out, r_idx = ref.width_pool_with_indices(x, 4)
    torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


def _pool_ref_grad(x, rows, mode, grad):
    x = x.detach().double().requires_grad_(True)
    if mode == "mean":
        y = ref.width_pool(x, rows, "mean")
    else:
        y, _ = ref.width_pool_with_indices(x, rows)
    (gx,) = torch.autograd.grad(y, x, grad.double())
    return gx


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_triton_width_pool_backward_fp32(case, mode, channels_last):
    B, C, H, W, rows = case
    g = torch.Generator().manual_seed(1)
    # distinct values: no ties, so the arg-max (hence the gradient) is unambiguous
    x = torch.randperm(B * C * H * W, generator=g).reshape(B, C, H, W).float()
    grad = x_((B, C, rows), seed=2)
    _, idx = T.width_pool(x, rows, mode)
    gx = T.width_pool_backward(grad, idx, H, W, mode, channels_last)
    assert gx.shape == (B, C, H, W) and gx.dtype == grad.dtype
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert gx.is_contiguous(memory_format=fmt)
    close(gx, _pool_ref_grad(x, rows, mode, grad), torch.float32)


@needs_triton
@pytest.mark.parametrize("mode", ["mean", "max"])
def test_triton_width_pool_wide_rows_channels_last(mode):
    # Rows wider than one tile: one (b, h) row per program, several w-blocks (the
    # layout of the real HANet shapes), forward and backward.
    B, C, H, W, rows = 1, 64, 3, 70, 2
    x = torch.randperm(B * C * H * W).reshape(B, C, H, W).float()
    x = x.to(memory_format=torch.channels_last)
    out, idx = T.width_pool(x, rows, mode)
    if mode == "max":
        r_out, r_idx = ref.width_pool_with_indices(x, rows)
        torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)
    else:
        r_out = ref.width_pool(x, rows, "mean")
    close(out, r_out, torch.float32)
    grad = x_((B, C, rows), seed=2)
    gx = T.width_pool_backward(grad, idx, H, W, mode, True)
    assert gx.is_contiguous(memory_format=torch.channels_last)
    close(gx, _pool_ref_grad(x, rows, mode, grad), torch.float32)


@needs_triton
@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_triton_width_pool_backward_dtypes(dtype, mode):
    B, C, H, W, rows = 2, 3, 7, 5, 3
    x = torch.randperm(B * C * H * W).reshape(B, C, H, W).to(dtype)
    grad = x_((B, C, rows), dtype, seed=2)
    for cl in (False, True):
        _, idx = T.width_pool(x, rows, mode)
        gx = T.width_pool_backward(grad, idx, H, W, mode, cl)
        assert gx.dtype == dtype
        close(gx, _pool_ref_grad(x, rows, mode, grad), dtype)


def _req(t):
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("rows", [1, 3, 9])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("backend", KERNELS)
def test_gradcheck_width_pool(backend, layout, rows, mode):
    x = _req(make(grad_check_shape(backend), torch.float64, layout, seed=3))
    assert torch.autograd.gradcheck(lambda t: hops.width_pool(t, rows, mode, backend=backend), (x,))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ns_name,ns", NAMESPACES, ids=NS_IDS)
def test_opcheck_width_pool(ns_name, ns, dtype, layout):
    """Schema, fake kernel, autograd registration and AOT dispatch of both ops."""
    ops = ns()
    x = make((2, 3, 7, 5), dtype, layout, seed=5).requires_grad_()
    for mode in ("mean", "max"):
        torch.library.opcheck(ops.width_pool, (x, 4, mode))
    _, idx = ops.width_pool(x.detach(), 4, "max")
    g = make((2, 3, 4), dtype, "nchw", seed=7)
    for mode, ind in (("mean", torch.empty(0, dtype=torch.long)), ("max", idx)):
        torch.library.opcheck(ops.width_pool_backward, (g, ind, 7, 5, mode, layout == "channels_last"))


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", KERNELS)
def test_gradgradcheck_width_pool(backend, layout, mode):
    """Twice differentiable: the backward op is linear in grad, with a registered adjoint."""
    x = _req(make(grad_check_shape(backend), torch.float64, layout, seed=3))
    assert torch.autograd.gradgradcheck(lambda t: hops.width_pool(t, 3, mode, backend=backend), (x,))


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", KERNELS)
def test_empty_batch_width_pool(backend, layout, mode):
    """B = 0 is accepted as by F.adaptive_*_pool2d: empty outputs and gradients."""
    x = make((0, 3, 7, 5), torch.float32, layout).requires_grad_()
    out = hops.width_pool(x, 4, mode, backend=backend)
    assert out.shape == (0, 3, 4)
    assert out.shape == reference.width_pool(x.detach(), 4, mode).shape
    (gx,) = torch.autograd.grad(out.sum(), x)
    assert gx.shape == x.shape


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", KERNELS)
def test_mean_pool_gradient_is_a_stride0_row_gradient(backend, layout):
    """The mean-pool gradient is constant along W, so it is returned as a (B, C, H, 1) row
    gradient expanded with stride 0 (no dense tensor written); it equals the reference's,
    alone and added into the gradient x gets from another use (as x_low in a model)."""
    x = make((2, 3, 12, 5), torch.float64, layout, seed=11).requires_grad_()
    g = make((2, 3, 5), torch.float64, "nchw", seed=12)  # 5 overlapping bins over 12 rows
    (gx,) = torch.autograd.grad(hops.width_pool(x, 5, "mean", backend=backend), x, g)
    assert gx.stride(3) == 0 and gx.shape == x.shape
    (want,) = torch.autograd.grad(reference.width_pool(x, 5, "mean"), x, g)
    torch.testing.assert_close(gx, want, rtol=1e-12, atol=1e-12)
    # row 0 lies in bin 0 only (rows 0-2 of 12): its gradient is g[..., 0] / (3 rows * 5 columns)
    torch.testing.assert_close(gx[:, :, 0, 2], g[:, :, 0] / 15, rtol=1e-12, atol=1e-12)

    other = make(x.shape, torch.float64, layout, seed=13)
    x.grad = None
    (hops.width_pool(x, 5, "mean", backend=backend) * g).sum().add((x * other).sum()).backward()
    torch.testing.assert_close(x.grad, want + other, rtol=1e-12, atol=1e-12)
