"""attention_rescale: every kernel backend against the float64 reference, the Triton
kernels' own cases, gradcheck."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from hanet.ops import reference as ref
from op_cases import (DTYPES, KERNELS, LAYOUTS, NAMESPACES, NS_IDS, TOL, check_against_truth, close,
                      kernel_cases, make, namespace, needs_triton, x_, grad_check_shape)

CASES, IDS = kernel_cases()
T = namespace("triton") if "triton" in KERNELS else None

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend,shape", CASES, ids=IDS)
def test_attention_rescale_kernels(backend, shape, dtype, layout):
    B, C, H, W, h = shape
    feat = make((B, C, H, W), dtype, layout, seed=1)
    logits = make((B, C, h), dtype, "nchw", seed=2, scale=2.0)
    out = hops.attention_rescale(feat, logits, backend=backend)
    expected_fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert out.is_contiguous(memory_format=expected_fmt), "output must keep feat's layout"
    check_against_truth(
        lambda f, l: hops.attention_rescale(f, l, backend=backend),
        reference.attention_rescale,
        [feat, logits],
        dtype,
        f"attention_rescale[{backend}]",
    )


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


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", RESCALE_CASES, ids=lambda c: "x".join(map(str, c)))
def test_triton_attention_rescale_fp32(case, channels_last):
    B, C, H, W, h = case
    feat = x_((B, C, H, W), channels_last=channels_last)
    logits = x_((B, C, h), seed=1)
    out = T.attention_rescale(feat, logits)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.shape == feat.shape and out.dtype == feat.dtype
    assert out.is_contiguous(memory_format=fmt)
    close(out, ref.attention_rescale(feat, logits), torch.float32)

    grad = x_((B, C, H, W), seed=2)  # NCHW grad: converted to feat's format
    gf, gl = T.attention_rescale_backward(grad, feat, logits)
    assert gf.is_contiguous(memory_format=fmt) and gl.shape == logits.shape
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    close(gf, r_gf, torch.float32)
    close(gl, r_gl, torch.float32)


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_triton_attention_rescale_dtypes(dtype, channels_last):
    B, C, H, W, h = 2, 3, 7, 6, 4
    feat = x_((B, C, H, W), dtype, channels_last)
    logits = x_((B, C, h), dtype, seed=1)
    grad = x_((B, C, H, W), dtype, channels_last, seed=2)
    out = T.attention_rescale(feat, logits)
    assert out.dtype == dtype
    close(out, ref.attention_rescale(feat.double(), logits.double()), dtype)
    gf, gl = T.attention_rescale_backward(grad, feat, logits)
    assert gf.dtype == dtype and gl.dtype == dtype
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    close(gf, r_gf, dtype)
    # grad_logits sums W*H/h products: scale the half tolerance by its magnitude
    tol = dict(TOL[dtype])
    tol["atol"] = tol["atol"] * max(1.0, r_gl.abs().max().item())
    torch.testing.assert_close(gl.double(), r_gl, **tol)


@needs_triton
@pytest.mark.parametrize("B,C,H,W,h,layout", [(1, 64, 1, 200, 2, "nhwc"),
                                                (1, 1, 2, 600, 3, "nchw")])
def test_triton_attention_rescale_backward_split(B, C, H, W, h, layout):
    # Images wide enough that the backward reduction over W is split over programs
    # (partial sums, summed by the interp-backward kernel).
    from hanet.ops.triton.attention_rescale import plan_attention_rescale_backward

    plan = plan_attention_rescale_backward(B, C, H, W, h, torch.float32, layout)
    assert plan.temps["part"][0][0] > 1
    feat = x_((B, C, H, W), channels_last=layout == "nhwc")
    logits = x_((B, C, h), seed=1)
    grad = x_((B, C, H, W), seed=2)
    out = T.attention_rescale(feat, logits)
    close(out, ref.attention_rescale(feat, logits), torch.float32)
    gf, gl = T.attention_rescale_backward(grad, feat, logits)
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    close(gf, r_gf, torch.float32)
    close(gl, r_gl, torch.float32)


@needs_triton
def test_triton_attention_rescale_non_contiguous():
    feat = x_((2, 3, 8, 10))[..., ::2]
    logits = x_((2, 6, 4), seed=1)[:, ::2]
    close(T.attention_rescale(feat, logits), ref.attention_rescale(feat, logits),
           torch.float32)


@needs_triton
def test_triton_attention_rescale_torch_compile():
    feat = x_((2, 3, 7, 5))
    logits = x_((2, 3, 4), seed=1)

    def f(feat, logits):
        return T.attention_rescale(feat, logits) * 2.0

    try:
        cf = torch.compile(f, fullgraph=True)
        out = cf(feat, logits)
        out_cl = cf(feat.to(memory_format=torch.channels_last), logits)
    finally:
        torch._dynamo.reset()
    close(out, 2.0 * ref.attention_rescale(feat, logits), torch.float32)
    close(out_cl, 2.0 * ref.attention_rescale(feat, logits), torch.float32)
    assert out_cl.is_contiguous(memory_format=torch.channels_last)


def _req(t):
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("backend", KERNELS)
def test_gradcheck_attention_rescale(backend, layout):
    B, C, H, W = grad_check_shape(backend)
    feat = _req(make((B, C, H, W), torch.float64, layout, seed=1))
    logits = _req(make((B, C, 4), torch.float64, "nchw", seed=2))
    assert torch.autograd.gradcheck(
        lambda f, l: hops.attention_rescale(f, l, backend=backend), (feat, logits)
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ns_name,ns", NAMESPACES, ids=NS_IDS)
def test_opcheck_attention_rescale(ns_name, ns, dtype, layout):
    """Schema, fake kernel, autograd registration and AOT dispatch of both ops."""
    ops = ns()
    feat = make((2, 3, 7, 5), dtype, layout, seed=1).requires_grad_()
    logits = make((2, 3, 4), dtype, "nchw", seed=2).requires_grad_()
    grad = make((2, 3, 7, 5), dtype, layout, seed=3)
    torch.library.opcheck(ops.attention_rescale, (feat, logits))
    torch.library.opcheck(ops.attention_rescale_backward, (grad, feat.detach(), logits.detach()))


@pytest.mark.parametrize("backend", KERNELS)
def test_double_backward_attention_rescale_raises(backend):
    """Differentiable once: a second derivative through the fused kernels raises a clear
    error instead of returning a wrong (zero) one."""
    feat = _req(make((2, 3, 7, 5), torch.float64, "nchw", seed=1))
    logits = _req(make((2, 3, 4), torch.float64, "nchw", seed=2))
    out = hops.attention_rescale(feat, logits, backend=backend)
    gf, gl = torch.autograd.grad(out.square().sum(), (feat, logits), create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(gf.sum() + gl.sum(), (feat, logits))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", KERNELS)
def test_empty_batch_attention_rescale(backend, layout):
    """B = 0 is accepted as by the eager expression."""
    feat = make((0, 3, 7, 5), torch.float32, layout).requires_grad_()
    logits = make((0, 3, 4), torch.float32, "nchw").requires_grad_()
    out = hops.attention_rescale(feat, logits, backend=backend)
    assert out.shape == feat.shape
    gf, gl = torch.autograd.grad(out.sum(), (feat, logits))
    assert gf.shape == feat.shape and gl.shape == logits.shape


# The backward from the forward's output (feat_is_output): what autograd calls for
# fp32 / fp64, so that the rescale does not keep feat alive (issue 13, memory).
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", RESCALE_CASES + [(1, 2, 3, 600, 3), (1, 64, 1, 200, 2)],
                         ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("ns_name,get_ns", NAMESPACES, ids=NS_IDS)
def test_backward_from_the_output_equals_the_reference(ns_name, get_ns, case, dtype, layout):
    B, C, H, W, h = case
    ns = get_ns()
    feat = x_((B, C, H, W), dtype, layout == "nhwc")
    logits = x_((B, C, h), dtype, seed=1) * 3
    grad = x_((B, C, H, W), dtype, seed=2)
    out = ns.attention_rescale(feat, logits)
    gf, gl = ns.attention_rescale_backward(grad, out, logits, True)
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    close(gf, r_gf, dtype)
    close(gl, r_gl, dtype)
    # without the flag the same call treats `out` as feat: a different (wrong) gradient
    _, gl_as_feat = ns.attention_rescale_backward(grad, out, logits)
    assert not torch.allclose(gl_as_feat.double(), r_gl, **TOL[dtype])


@pytest.mark.parametrize("ns_name,get_ns", NAMESPACES, ids=NS_IDS)
def test_backward_from_the_output_where_the_attention_underflows(ns_name, get_ns):
    # sigmoid(-200) is 0 in fp32: out is 0 on those rows, whose logits gradient is
    # s * (1 - s) * (...) = 0 in the reference too; no 0 / 0.
    ns = get_ns()
    feat = x_((1, 2, 4, 5))
    logits = torch.tensor([[[-200.0, 1.0], [0.5, -200.0]]])
    grad = x_((1, 2, 4, 5), seed=2)
    out = ns.attention_rescale(feat, logits)
    gf, gl = ns.attention_rescale_backward(grad, out, logits, True)
    r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
    assert torch.isfinite(gl).all() and torch.isfinite(gf).all()
    close(gf, r_gf, torch.float32)
    close(gl, r_gl, torch.float32)


def _saved_by_rescale(feat, logits, backend):
    """The tensors autograd saves for the rescale's backward (storage pointers)."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = hops.attention_rescale(feat, logits, backend=backend)
    return out, {t.untyped_storage().data_ptr() for t in saved}


@pytest.mark.parametrize("backend", KERNELS)
def test_autograd_keeps_the_output_not_feat_in_fp32_and_feat_in_bf16(backend):
    for dtype, keeps_output in ((torch.float32, True), (torch.float64, True), (torch.bfloat16, False)):
        feat = x_((2, 3, 6, 5), dtype).requires_grad_()
        logits = x_((2, 3, 4), dtype, seed=1).requires_grad_()
        feat_in = feat * 1  # a non-leaf, as in a model
        out, saved = _saved_by_rescale(feat_in, logits, backend)
        ptr_out, ptr_feat = out.untyped_storage().data_ptr(), feat_in.untyped_storage().data_ptr()
        assert (ptr_out in saved, ptr_feat in saved) == (keeps_output, not keeps_output), dtype
        grad = x_((2, 3, 6, 5), dtype, seed=2)
        gf, gl = torch.autograd.grad(out, (feat, logits), grad)
        r_gf, r_gl = _rescale_ref_grads(feat, logits, grad)
        close(gf, r_gf, dtype)
        torch.testing.assert_close(gl.double(), r_gl, rtol=TOL[dtype]["rtol"],
                                   atol=TOL[dtype]["atol"] * max(1.0, r_gl.abs().max().item()))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", KERNELS + ["reference"])
def test_relu_attention_rescale_equals_relu_then_rescale(backend, dtype, layout):
    """relu_attention_rescale (the ReLU fused into the rescale's autograd node) against
    the float64 reference of relu followed by the rescale: values and both gradients,
    feat with exact zeros and negatives."""
    feat = x_((2, 3, 7, 5), dtype, layout == "nhwc")
    feat[:, :, 0] = 0  # relu'(0) = 0, as torch's ReLU
    logits = x_((2, 3, 4), dtype, seed=1) * 2
    grad = x_((2, 3, 7, 5), dtype, seed=2)
    f, lg = feat.clone().requires_grad_(), logits.clone().requires_grad_()
    out = hops.relu_attention_rescale(f, lg, backend=backend)
    gf, gl = torch.autograd.grad(out, (f, lg), grad)
    f64, l64 = feat.double().requires_grad_(), logits.double().requires_grad_()
    want = ref.attention_rescale(torch.relu(f64), l64)
    r_gf, r_gl = torch.autograd.grad(want, (f64, l64), grad.double())
    close(out, want, dtype)
    close(gf, r_gf, dtype)
    assert (gf[:, :, 0] == 0).all() and (gf[feat < 0] == 0).all()
    torch.testing.assert_close(gl.double(), r_gl, rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["atol"] * max(1.0, r_gl.abs().max().item()))


@pytest.mark.parametrize("backend", KERNELS)
def test_relu_attention_rescale_keeps_only_the_output_in_fp32(backend):
    for dtype, keeps_output in ((torch.float32, True), (torch.bfloat16, False)):
        feat = (x_((2, 3, 6, 5), dtype) * 1).requires_grad_()
        logits = x_((2, 3, 4), dtype, seed=1).requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            out = hops.relu_attention_rescale(feat, logits, backend=backend)
        big = [t for t in saved if t.numel() == feat.numel()]
        assert len(big) == 1, [tuple(t.shape) for t in saved]
        if keeps_output:
            assert big[0].untyped_storage().data_ptr() == out.untyped_storage().data_ptr()
        else:  # relu(feat): neither feat nor the output
            assert big[0].untyped_storage().data_ptr() not in (
                out.untyped_storage().data_ptr(), feat.untyped_storage().data_ptr())
            torch.testing.assert_close(big[0], torch.relu(feat.detach()), rtol=0, atol=0)


# attention_grad: the second output is the gradient of A = interp(sigmoid(logits), H),
# the row sums of grad * feat, for a captured HANet branch that differentiates the
# sigmoid and the interpolation itself (hanet.models.branch_graph, issue 13: one kernel
# fewer per backward).  Truth: autograd of feat * A[..., None] in float64, A a leaf.
def _attention_ref_grads(feat, logits, grad):
    A = ref.height_interp(torch.sigmoid(logits.double()), feat.shape[2]).requires_grad_(True)
    f = feat.detach().double().requires_grad_(True)
    return torch.autograd.grad(f * A.unsqueeze(-1), (f, A), grad.double())


@pytest.mark.parametrize("from_output", [False, True], ids=["from_feat", "from_output"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", RESCALE_CASES + [(1, 2, 3, 600, 3), (1, 64, 1, 200, 2)],
                         ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("ns_name,get_ns", NAMESPACES, ids=NS_IDS)
def test_attention_grad_is_the_gradient_of_the_attention_rows(ns_name, get_ns, case, dtype, layout,
                                                              from_output):
    B, C, H, W, h = case
    ns = get_ns()
    feat = x_((B, C, H, W), dtype, layout == "nhwc")
    logits = x_((B, C, h), dtype, seed=1) * 3
    grad = x_((B, C, H, W), dtype, seed=2)
    saved = ns.attention_rescale(feat, logits) if from_output else feat
    gf, ga = ns.attention_rescale_backward(grad, saved, logits, from_output, True)
    r_gf, r_ga = _attention_ref_grads(feat, logits, grad)
    assert ga.shape == (B, C, H) and ga.dtype == dtype and gf.shape == feat.shape
    close(gf, r_gf, dtype)
    # W products per row sum: the half-type tolerance scaled by the sums' magnitude;
    # from the output, bf16 also carries out's rounding (why autograd keeps feat there)
    tol = dict(TOL[dtype])
    tol["atol"] = tol["atol"] * max(1.0, r_ga.abs().max().item()) * (4 if from_output and dtype == torch.bfloat16 else 1)
    torch.testing.assert_close(ga.double(), r_ga, **tol)
    # the flag changes the answer: without it the second output is the logits' gradient
    _, gl = ns.attention_rescale_backward(grad, saved, logits, from_output)
    assert gl.shape == logits.shape


@pytest.mark.parametrize("ns_name,get_ns", NAMESPACES, ids=NS_IDS)
def test_attention_grad_of_an_empty_batch(ns_name, get_ns):
    ns = get_ns()
    feat, logits = x_((0, 3, 7, 5)), x_((0, 3, 4))
    gf, ga = ns.attention_rescale_backward(feat, feat, logits, False, True)
    assert gf.shape == (0, 3, 7, 5) and ga.shape == (0, 3, 7)


@pytest.mark.parametrize("ns_name,ns", NAMESPACES, ids=NS_IDS)
def test_opcheck_attention_grad(ns_name, ns):
    ops = ns()
    feat = make((2, 3, 7, 5), torch.float32, "nchw", seed=1)
    logits = make((2, 3, 4), torch.float32, "nchw", seed=2)
    grad = make((2, 3, 7, 5), torch.float32, "nchw", seed=3)
    torch.library.opcheck(ops.attention_rescale_backward, (grad, feat, logits, True, True))
