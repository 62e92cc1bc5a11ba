"""The fused ops compile under torch.compile(fullgraph=True), forward and backward,
and give the eager results; torch.export keeps them in the graph."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from op_cases import kernel_backends, make

KERNELS = [b for b in kernel_backends() if b != "reference"]


def _hanet_like(backend):
    def f(x_low, x_high, w):
        z = hops.width_pool(x_low, 8, backend=backend)  # (B, C, 8)
        logits = torch.einsum("oc,bch->boh", w, z)
        logits = hops.height_interp(logits, 6, backend=backend)
        return hops.attention_rescale(x_high, logits, backend=backend)

    return f


@pytest.mark.parametrize("backend", KERNELS)
def test_compile_fullgraph_forward_backward(backend):
    torch._dynamo.reset()
    x_low = make((2, 4, 12, 10), torch.float32, "nchw", seed=1)
    x_high = make((2, 3, 12, 10), torch.float32, "channels_last", seed=2)
    w = make((3, 4), torch.float32, "nchw", seed=3)

    def loss(fn, *args):
        args = [a.detach().clone().requires_grad_() for a in args]
        out = fn(*args)
        (out * out).sum().backward()
        return out.detach(), [a.grad for a in args]

    fn = _hanet_like(backend)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager" if backend == "triton" else "inductor")
    out_c, grads_c = loss(compiled, x_low, x_high, w)
    out_e, grads_e = loss(_hanet_like("reference"), x_low, x_high, w)
    torch.testing.assert_close(out_c, out_e)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge)


@pytest.mark.parametrize("backend", [b for b in KERNELS if b == "cpu"])
def test_compiled_graph_keeps_the_custom_ops(backend):
    """Inductor must call our kernels, not decompose them back into eager math."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    feat = make((2, 3, 12, 10), torch.float32, "nchw", seed=1)
    logits = make((2, 3, 4), torch.float32, "nchw", seed=2)
    fn = torch.compile(lambda f, l: hops.attention_rescale(f, l, backend=backend) + 1, fullgraph=True)
    out, codes = run_and_get_code(fn, feat, logits)
    assert any("hanet.attention_rescale" in c for c in codes), "custom op missing from compiled code"
    torch.testing.assert_close(out, reference.attention_rescale(feat, logits) + 1)


@pytest.mark.parametrize("backend", [b for b in KERNELS if b == "cpu"])
def test_export_keeps_the_custom_ops(backend):
    class M(torch.nn.Module):
        def forward(self, x, logits):
            return hops.attention_rescale(x, logits, backend=backend) + hops.width_pool(
                x, 3, backend=backend
            ).mean()

    x = make((1, 2, 6, 5), torch.float32, "nchw")
    logits = make((1, 2, 3), torch.float32, "nchw")
    ep = torch.export.export(M(), (x, logits))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "hanet.attention_rescale.default" in targets
    assert "hanet.width_pool.default" in targets
    torch.testing.assert_close(ep.module()(x, logits), M()(x, logits))
