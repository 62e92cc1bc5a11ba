"""Every op x every backend available here x dtype x layout x shape, forward and
every gradient, against the pure-PyTorch reference."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from op_cases import DTYPES, LARGE_SHAPES, LAYOUTS, SHAPES, assert_close_to_truth, kernel_backends, make

BACKENDS = kernel_backends()


def _cases(backends):
    for b in backends:
        for s in SHAPES + (LARGE_SHAPES if b != "triton" else []):
            yield b, s


CASES = list(_cases(BACKENDS))
IDS = [f"{b}-{'x'.join(map(str, s))}" for b, s in CASES]


def test_cpu_and_triton_backends_are_tested_here():
    # The kernels under test must really be available: a silently missing
    # backend would make this file test the reference against itself.
    assert "cpu" in BACKENDS, f"C++ extension not loaded: {hops._extension.load_error()}"
    assert "triton" in BACKENDS, "triton backend unavailable under TRITON_INTERPRET=1"


def _run(fn, inputs, grad_out_seed=7):
    """Forward, then gradients of sum(out * g) w.r.t. every input."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    g = make(out.shape, out.dtype, "nchw", seed=grad_out_seed)
    grads = torch.autograd.grad(out, inputs, g)
    return out.detach(), [gr.detach() for gr in grads]


def _check(fn_ours, fn_ref, inputs, dtype, what):
    ours, ours_g = _run(fn_ours, inputs)
    truth, truth_g = _run(fn_ref, [t.double() for t in inputs])
    eager, eager_g = (None, [None] * len(inputs))
    if dtype in (torch.float16, torch.bfloat16):
        eager, eager_g = _run(fn_ref, inputs)
    assert ours.dtype == dtype
    assert_close_to_truth(ours, truth, eager, dtype, f"{what} forward")
    for i, (a, t, e) in enumerate(zip(ours_g, truth_g, eager_g)):
        assert a.dtype == dtype
        assert_close_to_truth(a, t, e, dtype, f"{what} grad of input {i}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_attention_rescale(backend, shape, dtype, layout):
    B, C, H, W, h = shape
    feat = make((B, C, H, W), dtype, layout, seed=1)
    logits = make((B, C, h), dtype, "nchw", seed=2, scale=2.0)
    out = hops.attention_rescale(feat, logits, backend=backend)
    expected_fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert out.is_contiguous(memory_format=expected_fmt), "output must keep feat's layout"
    _check(
        lambda f, l: hops.attention_rescale(f, l, backend=backend),
        reference.attention_rescale,
        [feat, logits],
        dtype,
        f"attention_rescale[{backend}]",
    )


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_width_pool(backend, shape, dtype, layout, mode):
    B, C, H, W, rows = shape
    x = make((B, C, H, W), dtype, layout, seed=3)
    _check(
        lambda t: hops.width_pool(t, rows, mode, backend=backend),
        lambda t: reference.width_pool(t, rows, mode),
        [x],
        dtype,
        f"width_pool[{backend}, {mode}]",
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_height_interp(backend, shape, dtype):
    B, C, H, _, h = shape
    a = make((B, C, h), dtype, "nchw", seed=4)
    for size in (H, 1, 2 * h + 1):
        _check(
            lambda t: hops.height_interp(t, size, backend=backend),
            lambda t: reference.height_interp(t, size),
            [a],
            dtype,
            f"height_interp[{backend}, size={size}]",
        )


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_indices_match_pytorch(backend, layout):
    """The arg-max (which the gradient follows) is PyTorch's, ties included."""
    x = make((2, 3, 11, 6), torch.float32, layout, seed=5).round()  # many ties
    ns = torch.ops.hanet if backend == "cpu" else hops.dispatch.triton_ops()
    out, idx = ns.width_pool(x, 4, "max")
    ref_out, ref_idx = reference.width_pool_with_indices(x, 4)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(idx, ref_idx)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_other_strides_are_copied_not_misread(backend):
    """A sliced (non-dense) input gives the same result as its contiguous copy."""
    base = make((2, 6, 10, 16), torch.float32, "nchw", seed=6)
    x = base[:, ::2, :, 3:12]
    logits = make((2, 3, 4), torch.float32, "nchw", seed=7)[:, :, :]
    torch.testing.assert_close(
        hops.attention_rescale(x, logits, backend=backend),
        reference.attention_rescale(x.contiguous(), logits),
    )
    torch.testing.assert_close(
        hops.width_pool(x, 5, backend=backend), reference.width_pool(x.contiguous(), 5)
    )
