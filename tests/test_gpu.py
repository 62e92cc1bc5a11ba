"""The CUDA and Triton kernels on a real GPU, against the pure-PyTorch reference.

Runs only where torch sees a CUDA device (CI has none: there the CUDA code is
compile-checked by test_cuda_build.py and the Triton code runs in the interpreter).
Set HANET_REQUIRE_GPU=1 to make a missing GPU a failure instead of a skip.  Run with
TRITON_INTERPRET=0 so that Triton compiles real GPU code:

    TRITON_INTERPRET=0 HANET_REQUIRE_GPU=1 pytest tests/test_gpu.py
"""
from __future__ import annotations

import os

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from op_cases import DTYPES, LARGE_SHAPES, LAYOUTS, SHAPES, assert_close_to_truth, make

HAVE_GPU = torch.cuda.is_available()
if not HAVE_GPU and os.environ.get("HANET_REQUIRE_GPU") == "1":
    raise RuntimeError("HANET_REQUIRE_GPU=1 but torch sees no CUDA device")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA device")]

GPU_BACKENDS = ["cuda", "triton"]
# Model-sized shapes besides the odd ones: the four HANet sites of R101-OS8 at 768 crop
# (scaled down in batch) and a tall one past one CUDA grid row.
GPU_SHAPES = SHAPES + LARGE_SHAPES + [(2, 256, 96, 96, 16), (1, 64, 193, 385, 32), (1, 3, 4100, 5, 64)]
CASES = [(b, s) for b in GPU_BACKENDS for s in GPU_SHAPES]
IDS = [f"{b}-{'x'.join(map(str, s))}" for b, s in CASES]


def _gpu(t):
    fmt = torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format
    return t.cuda().contiguous(memory_format=fmt)


def _run(fn, inputs, g_seed=7):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    g = _gpu(make(out.shape, out.dtype, "nchw", seed=g_seed)) if out.is_cuda else make(
        out.shape, out.dtype, "nchw", seed=g_seed)
    grads = torch.autograd.grad(out, inputs, g)
    return out.detach().cpu(), [x.detach().cpu() for x in grads]


def _check(fn_ours, fn_ref, cpu_inputs, dtype, what):
    """Ours on the GPU vs float64 truth (reference on CPU); fp32/fp16/bf16 also vs the
    eager reference in the same dtype on the GPU."""
    gpu_inputs = [_gpu(t) for t in cpu_inputs]
    ours, ours_g = _run(fn_ours, gpu_inputs)
    truth, truth_g = _run(fn_ref, [t.double() for t in cpu_inputs])
    eager, eager_g = None, [None] * len(cpu_inputs)
    if dtype != torch.float64:  # eager PyTorch on the GPU in the same dtype: the yardstick
        eager, eager_g = _run(fn_ref, gpu_inputs)
    assert ours.dtype == dtype
    assert_close_to_truth(ours, truth, eager, dtype, f"{what} forward")
    for i, (a, t, e) in enumerate(zip(ours_g, truth_g, eager_g)):
        assert_close_to_truth(a, t, e, dtype, f"{what} grad of input {i}")


def test_cuda_and_triton_backends_available():
    assert hops.available_backends("cuda") == ["reference", "cuda", "triton"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_attention_rescale(backend, shape, dtype, layout):
    B, C, H, W, h = shape
    feat = make((B, C, H, W), dtype, layout, seed=1)
    logits = make((B, C, h), dtype, "nchw", seed=2, scale=2.0)
    out = hops.attention_rescale(_gpu(feat), _gpu(logits), backend=backend)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert out.is_cuda and out.is_contiguous(memory_format=fmt)
    _check(lambda f, l: hops.attention_rescale(f, l, backend=backend), reference.attention_rescale,
           [feat, logits], dtype, f"attention_rescale[{backend}]")


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_width_pool(backend, shape, dtype, layout, mode):
    B, C, H, W, rows = shape
    x = make((B, C, H, W), dtype, layout, seed=3)
    _check(lambda t: hops.width_pool(t, rows, mode, backend=backend),
           lambda t: reference.width_pool(t, rows, mode), [x], dtype, f"width_pool[{backend}, {mode}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_height_interp(backend, shape, dtype):
    B, C, H, _, h = shape
    a = make((B, C, h), dtype, "nchw", seed=4)
    for size in (H, 1, 2 * h + 1):
        _check(lambda t: hops.height_interp(t, size, backend=backend),
               lambda t: reference.height_interp(t, size), [a], dtype, f"height_interp[{backend}, {size}]")


def _namespace(backend):
    return torch.ops.hanet if backend == "cuda" else hops.dispatch.triton_ops()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_max_pool_indices_match_pytorch(backend, layout):
    x = make((2, 3, 11, 6), torch.float32, layout, seed=5).round()  # many ties
    out, idx = _namespace(backend).width_pool(_gpu(x), 4, "max")
    ref_out, ref_idx = reference.width_pool_with_indices(x, 4)
    torch.testing.assert_close(out.cpu(), ref_out)
    torch.testing.assert_close(idx.cpu(), ref_idx)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_nan_and_inf_propagate_like_pytorch(backend):
    x = make((1, 4, 9, 7), torch.float32, "nchw", seed=8)
    x[0, 0, 1, 2] = float("nan")
    x[0, 1, 3, 0] = float("inf")
    x[0, 2, 5, 6] = -float("inf")
    logits = make((1, 4, 3), torch.float32, "nchw", seed=9)
    logits[0, 3, 1] = float("nan")
    for mode in ("mean", "max"):
        torch.testing.assert_close(hops.width_pool(_gpu(x), 4, mode, backend=backend).cpu(),
                                   reference.width_pool(x, 4, mode), equal_nan=True)
    torch.testing.assert_close(hops.attention_rescale(_gpu(x), _gpu(logits), backend=backend).cpu(),
                               reference.attention_rescale(x, logits), equal_nan=True)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_other_strides_are_copied_not_misread(backend):
    base = _gpu(make((2, 6, 10, 16), torch.float32, "nchw", seed=6))
    x = base[:, ::2, :, 3:12]
    logits = _gpu(make((2, 3, 4), torch.float32, "nchw", seed=7))
    torch.testing.assert_close(hops.attention_rescale(x, logits, backend=backend),
                               reference.attention_rescale(x.contiguous(), logits))
    torch.testing.assert_close(hops.width_pool(x, 5, backend=backend), reference.width_pool(x.contiguous(), 5))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gradcheck(backend, layout):
    feat = _gpu(make((2, 3, 7, 5), torch.float64, layout, seed=1)).requires_grad_()
    logits = _gpu(make((2, 3, 4), torch.float64, "nchw", seed=2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda f, l: hops.attention_rescale(f, l, backend=backend), (feat, logits))
    for mode in ("mean", "max"):
        for rows in (1, 3, 9):
            assert torch.autograd.gradcheck(lambda t: hops.width_pool(t, rows, mode, backend=backend), (feat,))
    a = _gpu(make((2, 3, 5), torch.float64, "nchw", seed=4)).requires_grad_()
    for size in (1, 4, 13):
        assert torch.autograd.gradcheck(lambda t: hops.height_interp(t, size, backend=backend), (a,))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_opcheck(backend):
    ops = _namespace(backend)
    feat = _gpu(make((2, 3, 7, 5), torch.float32, "nchw", seed=1)).requires_grad_()
    logits = _gpu(make((2, 3, 4), torch.float32, "nchw", seed=2)).requires_grad_()
    torch.library.opcheck(ops.attention_rescale, (feat, logits))
    torch.library.opcheck(ops.attention_rescale_backward,
                          (torch.randn_like(feat), feat.detach(), logits.detach()))
    torch.library.opcheck(ops.attention_rescale_backward,
                          (torch.randn_like(feat), feat.detach(), logits.detach(), True))
    torch.library.opcheck(ops.attention_rescale_backward,
                          (torch.randn_like(feat), feat.detach(), logits.detach(), True, True))
    for mode in ("mean", "max"):
        torch.library.opcheck(ops.width_pool, (feat, 4, mode))
    torch.library.opcheck(ops.height_interp, (logits, 9))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_backward_from_the_output_and_the_fused_relu(backend, dtype, layout):
    """The rescale backward from its output (feat_is_output, the autograd path in
    fp32 / fp64) and relu_attention_rescale on the GPU, against the float64 reference
    (wide rows: split width sums on channels_last)."""
    feat = _gpu(make((2, 64, 5, 300), dtype, layout, seed=1))
    feat[:, :, 0] = 0
    logits = _gpu(make((2, 64, 4), dtype, "nchw", seed=2, scale=2.0))
    grad = _gpu(make((2, 64, 5, 300), dtype, "nchw", seed=3))
    f64, l64 = feat.double().requires_grad_(), logits.double().requires_grad_()
    want = reference.attention_rescale(torch.relu(f64), l64)
    r_gf, r_gl = torch.autograd.grad(want, (f64, l64), grad.double())
    f, lg = feat.clone().requires_grad_(), logits.clone().requires_grad_()
    out = hops.relu_attention_rescale(f, lg, backend=backend)
    gf, gl = torch.autograd.grad(out, (f, lg), grad)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype != torch.bfloat16 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out.double(), want, **tol)
    torch.testing.assert_close(gf.double(), r_gf, **tol)
    scale = max(1.0, r_gl.abs().max().item())
    torch.testing.assert_close(gl.double(), r_gl, rtol=tol["rtol"], atol=tol["atol"] * scale)
    if dtype != torch.bfloat16:
        ops = _namespace(backend)
        x = torch.relu(feat)
        y = ops.attention_rescale(x, logits)
        gx, gl2 = ops.attention_rescale_backward(grad, y, logits, True)
        x64, l64 = x.double().requires_grad_(), logits.double().requires_grad_()
        r_gx, r_gl2 = torch.autograd.grad(reference.attention_rescale(x64, l64), (x64, l64), grad.double())
        torch.testing.assert_close(gx.double(), r_gx, **tol)
        torch.testing.assert_close(gl2.double(), r_gl2, rtol=tol["rtol"],
                                   atol=tol["atol"] * max(1.0, r_gl2.abs().max().item()))


@pytest.mark.parametrize("shape", [(2, 64, 5, 300), (2, 256, 24, 24)], ids=["wide_rows", "site_like"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_attention_grad_on_the_gpu(backend, dtype, layout, shape):
    """attention_rescale_backward(..., attention_grad=True): the gradient of the attention
    rows A (B, C, H), written by the streaming pass itself (or, channels_last with width
    splits, summed by a second kernel), against autograd of feat * A in float64."""
    B, C, H, W = shape
    feat = _gpu(make(shape, dtype, layout, seed=1))
    logits = _gpu(make((B, C, 4), dtype, "nchw", seed=2, scale=2.0))
    grad = _gpu(make(shape, dtype, "nchw", seed=3))
    A = reference.height_interp(torch.sigmoid(logits.double()), H).requires_grad_()
    f64 = feat.double().requires_grad_()
    r_gf, r_ga = torch.autograd.grad(f64 * A.unsqueeze(-1), (f64, A), grad.double())
    ops = _namespace(backend)
    from_output = dtype != torch.bfloat16  # as autograd calls it
    saved = ops.attention_rescale(feat, logits) if from_output else feat
    gf, ga = ops.attention_rescale_backward(grad, saved, logits, from_output, True)
    assert ga.shape == (B, C, H) and ga.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype != torch.bfloat16 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gf.double(), r_gf, **tol)
    torch.testing.assert_close(ga.double(), r_ga, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, r_ga.abs().max().item()))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_compile_fullgraph_hanet_module(backend):
    """The HANet module under torch.compile(fullgraph=True, inductor) on the GPU equals eager."""
    from hanet.models import HANet

    torch._dynamo.reset()
    torch.manual_seed(0)
    m = HANet(in_channels=64, out_channels=32, kernel_size=3, r_factor=16, layers=3, pos_injection=2,
              pos_encoding="sinusoid", pos_rfactor=8, pooling="mean", backend=backend).cuda().eval()
    x = torch.randn(2, 64, 48, 48, device="cuda", requires_grad=True)
    feat = torch.randn(2, 32, 96, 96, device="cuda", requires_grad=True)
    eager = m(x, feat)
    eager.square().sum().backward()
    ge = (x.grad.clone(), feat.grad.clone())
    x.grad = feat.grad = None
    compiled = torch.compile(m, fullgraph=True)
    out = compiled(x, feat)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, ge[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feat.grad, ge[1], rtol=1e-4, atol=1e-4)


def test_mixed_devices_are_refused():
    feat = torch.randn(1, 2, 4, 4, device="cuda")
    logits = torch.randn(1, 2, 4)
    with pytest.raises((ValueError, RuntimeError), match="device"):
        hops.attention_rescale(feat, logits)
