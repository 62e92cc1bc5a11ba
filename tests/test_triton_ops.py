"""Correctness of the ``hanet_triton`` ops against hanet/ops/reference.py, run in
Triton's interpreter on CPU tensors (tiny shapes: the interpreter is slow)."""
import os

import pytest

_PREV_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # before triton (and our kernels) are imported

triton = pytest.importorskip("triton")
import torch  # noqa: E402

from hanet.ops import reference as ref  # noqa: E402
from hanet.ops import triton_ops as T  # noqa: E402

# Restore the caller's environment: the kernels above are already interpreted, and
# other test modules of this process must not see TRITON_INTERPRET=1 by surprise.
if _PREV_INTERPRET is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _PREV_INTERPRET

if not T.INTERPRETED:
    pytest.skip("hanet.ops.triton_kernels was imported before TRITON_INTERPRET=1 was set "
                "(its kernels are compiled-GPU kernels): run this file in its own process",
                allow_module_level=True)

ops = torch.ops.hanet_triton

TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float16: dict(rtol=1e-2, atol=2e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _x(shape, dtype=torch.float32, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x


def _close(actual, expected, dtype):
    torch.testing.assert_close(actual.double(), expected.double(), **TOL[dtype])


# (B, C, H, W, rows): odd sizes, W = 1, H < rows, rows = 1, 1x1 pixel, C = 1, overlap
POOL_CASES = [
    (2, 3, 7, 5, 3),
    (1, 2, 3, 4, 5),   # H < rows: bins repeat rows
    (1, 3, 8, 1, 4),   # W = 1
    (2, 1, 9, 6, 1),   # rows = 1, C = 1
    (1, 2, 1, 1, 2),   # 1x1 pixel
    (1, 2, 12, 3, 5),  # overlapping bins
]


# ---------------------------------------------------------------------------
# width_pool / width_pool_backward
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_width_pool_fp32(case, channels_last):
    B, C, H, W, rows = case
    x = _x((B, C, H, W), channels_last=channels_last)
    out, idx = ops.width_pool(x, rows, "mean")
    assert out.shape == (B, C, rows) and out.is_contiguous() and out.dtype == x.dtype
    assert idx.shape == (0,) and idx.dtype == torch.int64
    _close(out, ref.width_pool(x, rows, "mean"), torch.float32)
    out, idx = ops.width_pool(x, rows, "max")
    r_out, r_idx = ref.width_pool_with_indices(x, rows)
    assert idx.dtype == torch.int64 and idx.shape == (B, C, rows)
    torch.testing.assert_close(out, r_out, rtol=0, atol=0)
    torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64],
                         ids=str)
def test_width_pool_dtypes(dtype, channels_last):
    x = _x((2, 3, 7, 5), dtype, channels_last)
    for rows in (3, 9):
        out, _ = ops.width_pool(x, rows, "mean")
        _close(out, ref.width_pool(x.double(), rows, "mean"), dtype)
        out, idx = ops.width_pool(x, rows, "max")
        r_out, r_idx = ref.width_pool_with_indices(x.double(), rows)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), r_out, rtol=0, atol=0)
        torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_width_pool_max_ties_nan_inf(channels_last):
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
        out, idx = ops.width_pool(x, rows, "max")
        r_out, r_idx = ref.width_pool_with_indices(x, rows)
        torch.testing.assert_close(out, r_out, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)


def test_width_pool_channels_last_split():
    # Enough bins x channels x pixels that the channels_last plan splits the reduction
    # over several programs and combines partial results (second kernel).
    from hanet.ops.triton_kernels import plan_width_pool

    B, C, H, W, rows = 1, 2, 64, 40, 1
    assert len(plan_width_pool(B, C, H, W, rows, "max", torch.float32, "nhwc").launches) == 2
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 4, (B, C, H, W), generator=g).float()
    x[0, 1, 33, 7] = float("nan")
    x = x.to(memory_format=torch.channels_last)
    out, idx = ops.width_pool(x, rows, "max")
    r_out, r_idx = ref.width_pool_with_indices(x, rows)
    torch.testing.assert_close(out, r_out, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)
    x = x.nan_to_num(0.5)
    out, _ = ops.width_pool(x, rows, "mean")
    _close(out, ref.width_pool(x, rows, "mean"), torch.float32)


def test_width_pool_non_contiguous_input():
    x = _x((2, 3, 9, 8))[:, :, 1:, ::2]  # neither NCHW- nor channels_last-contiguous
    out, _ = ops.width_pool(x, 4, "mean")
    _close(out, ref.width_pool(x, 4, "mean"), torch.float32)
    out, idx = ops.width_pool(x, 4, "max")
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


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_width_pool_backward_fp32(case, mode, channels_last):
    B, C, H, W, rows = case
    g = torch.Generator().manual_seed(1)
    # distinct values: no ties, so the arg-max (hence the gradient) is unambiguous
    x = torch.randperm(B * C * H * W, generator=g).reshape(B, C, H, W).float()
    grad = _x((B, C, rows), seed=2)
    _, idx = ops.width_pool(x, rows, mode)
    gx = ops.width_pool_backward(grad, idx, H, W, mode, channels_last)
    assert gx.shape == (B, C, H, W) and gx.dtype == grad.dtype
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert gx.is_contiguous(memory_format=fmt)
    _close(gx, _pool_ref_grad(x, rows, mode, grad), torch.float32)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_width_pool_wide_rows_channels_last(mode):
    # Rows wider than one tile: one (b, h) row per program, several w-blocks (the
    # layout of the real HANet shapes), forward and backward.
    B, C, H, W, rows = 1, 64, 3, 70, 2
    x = torch.randperm(B * C * H * W).reshape(B, C, H, W).float()
    x = x.to(memory_format=torch.channels_last)
    out, idx = ops.width_pool(x, rows, mode)
    if mode == "max":
        r_out, r_idx = ref.width_pool_with_indices(x, rows)
        torch.testing.assert_close(idx, r_idx, rtol=0, atol=0)
    else:
        r_out = ref.width_pool(x, rows, "mean")
    _close(out, r_out, torch.float32)
    grad = _x((B, C, rows), seed=2)
    gx = ops.width_pool_backward(grad, idx, H, W, mode, True)
    assert gx.is_contiguous(memory_format=torch.channels_last)
    _close(gx, _pool_ref_grad(x, rows, mode, grad), torch.float32)


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_width_pool_backward_dtypes(dtype, mode):
    B, C, H, W, rows = 2, 3, 7, 5, 3
    x = torch.randperm(B * C * H * W).reshape(B, C, H, W).to(dtype)
    grad = _x((B, C, rows), dtype, seed=2)
    for cl in (False, True):
        _, idx = ops.width_pool(x, rows, mode)
        gx = ops.width_pool_backward(grad, idx, H, W, mode, cl)
        assert gx.dtype == dtype
        _close(gx, _pool_ref_grad(x, rows, mode, grad), dtype)


# ---------------------------------------------------------------------------
# height_interp / height_interp_backward
# ---------------------------------------------------------------------------

INTERP_CASES = [(4, 11), (16, 96), (5, 5), (7, 3), (1, 6), (6, 1), (3, 20)]


@pytest.mark.parametrize("h,size", INTERP_CASES)
def test_height_interp(h, size):
    for dtype in (torch.float32, torch.float64):
        a = _x((2, 3, h), dtype)
        out = ops.height_interp(a, size)
        assert out.shape == (2, 3, size) and out.dtype == dtype
        _close(out, ref.height_interp(a, size), dtype)
        a = a.detach().requires_grad_(True)
        grad = _x((2, 3, size), dtype, seed=4)
        (ga,) = torch.autograd.grad(ref.height_interp(a, size), a, grad)
        gi = ops.height_interp_backward(grad, h)
        assert gi.shape == (2, 3, h) and gi.dtype == dtype
        _close(gi, ga, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_height_interp_half(dtype):
    a = _x((2, 3, 5), dtype)
    _close(ops.height_interp(a, 13), ref.height_interp(a.double(), 13), dtype)
    grad = _x((2, 3, 13), dtype, seed=4)
    a64 = a.double().requires_grad_(True)
    (ga,) = torch.autograd.grad(ref.height_interp(a64, 13), a64, grad.double())
    _close(ops.height_interp_backward(grad, 5), ga, dtype)


def test_height_interp_backward_sweep():
    # every (h, size) pair in a range: the gather window must find every tap
    for h in range(1, 9):
        for size in (1, 2, 3, 5, 8, 13, 17, 31):
            a = _x((1, 2, h), torch.float64).requires_grad_(True)
            grad = _x((1, 2, size), torch.float64, seed=h * 100 + size)
            (ga,) = torch.autograd.grad(ref.height_interp(a, size), a, grad)
            _close(ops.height_interp_backward(grad, h), ga, torch.float64)


# ---------------------------------------------------------------------------
# attention_rescale / attention_rescale_backward
# ---------------------------------------------------------------------------

# (B, C, H, W, h)
RESCALE_CASES = [
    (2, 3, 7, 5, 4),
    (1, 1, 1, 1, 1),   # 1x1 pixel, C = 1, h = 1
    (1, 2, 6, 1, 16),  # W = 1, H < h
    (2, 5, 12, 9, 3),
    (1, 3, 5, 40, 2),  # W wider than one block of the backward tiles
]


def _rescale_ref_grads(feat, logits, grad):
    f = feat.detach().double().requires_grad_(True)
    lg = logits.detach().double().requires_grad_(True)
    y = ref.attention_rescale(f, lg)
    return torch.autograd.grad(y, (f, lg), grad.double())


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", RESCALE_CASES, ids=lambda c: "x".join(map(str, c)))
def test_attention_rescale_fp32(case, channels_last):
    B, C, H, W, h = case
    feat = _x((B, C, H, W), channels_last=channels_last)
    logits = _x((B, C, h), seed=1)
    out = ops.attention_rescale(feat, logits)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.shape == feat.shape and out.dtype == feat.dtype
    assert out.is_contiguous(memory_format=fmt)
    _close(out, ref.attention_rescale(feat, logits), torch.float32)

    grad = _x((B, C, H, W), seed=2)  # NCHW grad: converted to feat's format
    gf, gl = ops.attention_rescale_backward(grad, feat, logits)
    assert gf.is_contiguous(memory_format=fmt) and gl.shape == logits.shape
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    _close(gf, r_gf, torch.float32)
    _close(gl, r_gl, torch.float32)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_attention_rescale_dtypes(dtype, channels_last):
    B, C, H, W, h = 2, 3, 7, 6, 4
    feat = _x((B, C, H, W), dtype, channels_last)
    logits = _x((B, C, h), dtype, seed=1)
    grad = _x((B, C, H, W), dtype, channels_last, seed=2)
    out = ops.attention_rescale(feat, logits)
    assert out.dtype == dtype
    _close(out, ref.attention_rescale(feat.double(), logits.double()), dtype)
    gf, gl = ops.attention_rescale_backward(grad, feat, logits)
    assert gf.dtype == dtype and gl.dtype == dtype
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    _close(gf, r_gf, dtype)
    # grad_logits sums W*H/h products: scale the half tolerance by its magnitude
    tol = dict(TOL[dtype])
    tol["atol"] = tol["atol"] * max(1.0, r_gl.abs().max().item())
    torch.testing.assert_close(gl.double(), r_gl, **tol)


@pytest.mark.parametrize("B,C,H,W,h,layout", [(1, 64, 1, 200, 2, "nhwc"),
                                                (1, 1, 2, 600, 3, "nchw")])
def test_attention_rescale_backward_split(B, C, H, W, h, layout):
    # Images wide enough that the backward reduction over W is split over programs
    # (partial sums, summed by the interp-backward kernel).
    from hanet.ops.triton_kernels import plan_attention_rescale_backward

    plan = plan_attention_rescale_backward(B, C, H, W, h, torch.float32, layout)
    assert plan.temps["part"][0][0] > 1
    feat = _x((B, C, H, W), channels_last=layout == "nhwc")
    logits = _x((B, C, h), seed=1)
    grad = _x((B, C, H, W), seed=2)
    out = ops.attention_rescale(feat, logits)
    _close(out, ref.attention_rescale(feat, logits), torch.float32)
    gf, gl = ops.attention_rescale_backward(grad, feat, logits)
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    _close(gf, r_gf, torch.float32)
    _close(gl, r_gl, torch.float32)


def test_attention_rescale_non_contiguous():
    feat = _x((2, 3, 8, 10))[..., ::2]
    logits = _x((2, 6, 4), seed=1)[:, ::2]
    _close(ops.attention_rescale(feat, logits), ref.attention_rescale(feat, logits),
           torch.float32)


def test_attention_rescale_torch_compile():
    feat = _x((2, 3, 7, 5))
    logits = _x((2, 3, 4), seed=1)

    def f(feat, logits):
        return ops.attention_rescale(feat, logits) * 2.0

    try:
        cf = torch.compile(f, fullgraph=True)
        out = cf(feat, logits)
        out_cl = cf(feat.to(memory_format=torch.channels_last), logits)
    finally:
        torch._dynamo.reset()
    _close(out, 2.0 * ref.attention_rescale(feat, logits), torch.float32)
    _close(out_cl, 2.0 * ref.attention_rescale(feat, logits), torch.float32)
    assert out_cl.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------


def test_validation():
    x = _x((1, 2, 3, 4))
    with pytest.raises(ValueError, match="x must be a 4-D tensor"):
        ops.width_pool(x[0], 2)
    with pytest.raises(RuntimeError, match="rows must be >= 1"):
        ops.width_pool(x, 0)
    with pytest.raises(ValueError, match="mode"):
        ops.width_pool(x, 2, "median")
    with pytest.raises(ValueError, match="float32, float16, bfloat16 or float64"):
        ops.width_pool(x.int(), 2)
    with pytest.raises(ValueError, match="empty"):
        ops.width_pool(x[:, :0], 2)
    g = _x((1, 2, 2))
    with pytest.raises(ValueError, match="indices must be int64"):
        ops.width_pool_backward(g, g, 3, 4, "max", False)
    with pytest.raises(ValueError, match="height and width"):
        ops.width_pool_backward(g, torch.empty(0, dtype=torch.int64), 0, 4, "mean", False)
    with pytest.raises(ValueError, match="size must be >= 1"):
        ops.height_interp(g, 0)
    with pytest.raises(ValueError, match="in_size must be >= 1"):
        ops.height_interp_backward(g, 0)
    with pytest.raises(ValueError, match="batch mismatch"):
        ops.attention_rescale(x, _x((2, 2, 3)))
    with pytest.raises(ValueError, match="channel mismatch"):
        ops.attention_rescale(x, _x((1, 3, 3)))
    with pytest.raises(ValueError, match="same dtype"):
        ops.attention_rescale(x, _x((1, 2, 3)).double())
    with pytest.raises(ValueError, match="logits must be a 3-D tensor"):
        ops.attention_rescale(x, x)
    with pytest.raises(ValueError, match="grad shape"):
        ops.attention_rescale_backward(_x((1, 2, 3, 5)), x, _x((1, 2, 3)))
