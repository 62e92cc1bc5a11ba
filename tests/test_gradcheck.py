"""torch.autograd.gradcheck in float64 for the kernel backends, and
torch.library.opcheck (schema, fake kernel, autograd registration) on the custom ops."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from op_cases import kernel_backends, make

KERNELS = [b for b in kernel_backends() if b != "reference"]


def _req(t):
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("backend", KERNELS)
def test_gradcheck_attention_rescale(backend, layout):
    feat = _req(make((2, 3, 7, 5), torch.float64, layout, seed=1))
    logits = _req(make((2, 3, 4), torch.float64, "nchw", seed=2))
    assert torch.autograd.gradcheck(
        lambda f, l: hops.attention_rescale(f, l, backend=backend), (feat, logits)
    )


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("rows", [1, 3, 9])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("backend", KERNELS)
def test_gradcheck_width_pool(backend, layout, rows, mode):
    x = _req(make((2, 3, 7, 5), torch.float64, layout, seed=3))
    assert torch.autograd.gradcheck(lambda t: hops.width_pool(t, rows, mode, backend=backend), (x,))


@pytest.mark.parametrize("size", [1, 4, 13])
@pytest.mark.parametrize("backend", KERNELS)
def test_gradcheck_height_interp(backend, size):
    a = _req(make((2, 3, 5), torch.float64, "nchw", seed=4))
    assert torch.autograd.gradcheck(lambda t: hops.height_interp(t, size, backend=backend), (a,))


def _namespaces():
    out = []
    if "cpu" in KERNELS:
        out.append(("hanet", lambda: torch.ops.hanet))
    if "triton" in KERNELS:
        out.append(("hanet_triton", hops.dispatch.triton_ops))
    return out


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("ns_name,ns", _namespaces(), ids=[n for n, _ in _namespaces()])
def test_opcheck(ns_name, ns, layout):
    ops = ns()
    dtype = torch.float32
    feat = make((2, 3, 7, 5), dtype, layout, seed=1).requires_grad_()
    logits = make((2, 3, 4), dtype, "nchw", seed=2).requires_grad_()
    grad = make((2, 3, 7, 5), dtype, layout, seed=3)
    x = make((2, 3, 7, 5), dtype, layout, seed=5).requires_grad_()
    a = make((2, 3, 4), dtype, "nchw", seed=6).requires_grad_()
    torch.library.opcheck(ops.attention_rescale, (feat, logits))
    torch.library.opcheck(ops.attention_rescale_backward, (grad, feat.detach(), logits.detach()))
    for mode in ("mean", "max"):
        torch.library.opcheck(ops.width_pool, (x, 4, mode))
    _, idx = ops.width_pool(x.detach(), 4, "max")
    g = make((2, 3, 4), dtype, "nchw", seed=7)
    for mode, ind in (("mean", torch.empty(0, dtype=torch.long)), ("max", idx)):
        torch.library.opcheck(
            ops.width_pool_backward, (g, ind, 7, 5, mode, layout == "channels_last")
        )
    torch.library.opcheck(ops.height_interp, (a, 9))
    torch.library.opcheck(ops.height_interp_backward, (make((2, 3, 9), dtype, "nchw"), 4))
