"""The small branch of a HANet site replayed from a CUDA graph (hanet.models.branch_graph).

The truth is the same site run eagerly: the same outputs, gradients (of x_low, x_high
and every parameter, across steps and with gradients accumulated over several
backward passes) and BatchNorm statistics.  The mean-pool gradient the graph computes
as a matrix product is checked on the CPU against autograd through PyTorch's pooling.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hanet.models import HANet, ModelConfig
from hanet.models.branch_graph import StaticPositions, mean_rows_matrix
from test_branch_graph_replay import model_pair, model_step

HAVE_GPU = torch.cuda.is_available()


def on_gpu(fn):
    return pytest.mark.gpu(pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA device")(fn))


@pytest.mark.parametrize("rows,height,width", [(16, 24, 5), (16, 20, 3), (16, 8, 2), (5, 13, 4), (16, 16, 1)])
def test_mean_rows_matrix_is_the_gradient_of_adaptive_mean_pooling(rows, height, width):
    x = torch.randn(1, 1, height, width, dtype=torch.float64, requires_grad=True)
    g = torch.randn(rows, dtype=torch.float64)
    F.adaptive_avg_pool2d(x, (rows, 1)).reshape(rows).mul(g).sum().backward()
    m = mean_rows_matrix(rows, height, width, "cpu").double()
    # d/dx of sum_r g[r] * z[r]: the same for every column of a row
    expected = x.grad[0, 0]
    assert torch.allclose((g @ m)[:, None].expand(height, width), expected, rtol=1e-6, atol=1e-7)


def test_cuda_graph_is_a_boolean_setting():
    with pytest.raises(ValueError, match="cuda_graph must be true or false"):
        ModelConfig(cuda_graph="yes")
    assert ModelConfig(cuda_graph=True).cuda_graph is True


def test_a_site_on_the_cpu_runs_as_it_always_did():
    torch.manual_seed(0)
    plain = HANet(32, 16, r_factor=8).train()
    graphed = copy.deepcopy(plain)
    graphed.cuda_graph = True
    x_low, x_high = torch.randn(2, 32, 12, 10), torch.randn(2, 16, 12, 10)
    assert torch.equal(plain(x_low, x_high), graphed(x_low, x_high))
    assert graphed._graphs == {}


def _site(pooling="mean", dropout=0.0, pos_injection=2, layers=3):
    torch.manual_seed(0)
    return HANet(64, 48, kernel_size=3, r_factor=8, layers=layers, pos_injection=pos_injection,
                 pos_encoding="sinusoid", pos_rfactor=8, pooling=pooling, dropout=dropout).cuda().train()


def _gpu_pair(**kw):
    """(eager site, graphed site with the same weights, the positions tensor it reads)."""
    eager = _site(**kw)
    graphed = copy.deepcopy(eager)
    graphed.cuda_graph = True
    return eager, graphed, StaticPositions()


def _step(site, x_low, x_high, pos, g):
    """One step as in a model: x_low also feeds another layer (its gradient has two parts)."""
    x_low = x_low.detach().requires_grad_()
    x_high = x_high.detach().requires_grad_()
    out = site(x_low, x_high, pos)
    (out * g).sum().add((x_low * 0.5).square().sum()).backward()
    return out.detach(), x_low.grad, x_high.grad


def _close(a, b, what):
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), f"{what}: max abs diff {(a - b).abs().max().item()}"


@on_gpu
@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("pos_injection,layers", [(2, 3), (1, 2), (0, 3)])
@pytest.mark.parametrize("zero_grad", ["none", "in_place"])
def test_captured_training_steps_equal_eager_steps(pooling, pos_injection, layers, zero_grad):
    eager, graphed, positions = _gpu_pair(pooling=pooling, pos_injection=pos_injection, layers=layers)
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_g = torch.optim.SGD(graphed.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        gen = torch.Generator(device="cuda").manual_seed(step)
        x_low = torch.randn(2, 64, 20, 12, device="cuda", generator=gen)
        x_high = torch.randn(2, 48, 20, 12, device="cuda", generator=gen)
        g = torch.randn(2, 48, 20, 12, device="cuda", generator=gen)
        pos = (torch.arange(20, device="cuda") * 128 // 20 + step).clamp(max=127).repeat(2, 1)
        # step 2 accumulates a second backward pass before the optimiser step
        passes = 2 if step == 2 else 1
        for _ in range(passes):
            oe, le, he = _step(eager, x_low, x_high, pos, g)
            og, lg, hg = _step(graphed, x_low, x_high, positions.update(pos), g)
            _close(og, oe, f"step {step} output")
            _close(lg, le, f"step {step} x_low grad")
            _close(hg, he, f"step {step} x_high grad")
        for (name, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
            if pe.grad is not None:
                _close(pg.grad, pe.grad, f"step {step} grad of {name}")
        for (name, be), bg in zip(eager.named_buffers(), graphed.named_buffers()):
            assert torch.allclose(bg[1].double(), be.double(), rtol=1e-5, atol=1e-6), f"step {step} {name}"
        opt_e.step()
        opt_g.step()
        if zero_grad == "none":
            opt_e.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
        else:
            opt_e.zero_grad(set_to_none=False)
            opt_g.zero_grad(set_to_none=False)
    assert len(graphed._graphs) == 1  # captured once, replayed at every later step


@on_gpu
def test_two_forwards_before_one_backward_stay_exact():
    eager, graphed, positions = _gpu_pair()
    x1, x2 = torch.randn(2, 2, 64, 16, 8, device="cuda")
    h1, h2 = torch.randn(2, 2, 48, 16, 8, device="cuda")
    pos = (torch.arange(16, device="cuda") * 8).repeat(2, 1)
    for site in (eager, graphed):  # the graphed site captures here; both take the same step
        _step(site, x1, h1, positions.update(pos) if site is graphed else pos, torch.ones_like(h1))
        site.zero_grad(set_to_none=True)
    results = []
    for site in (eager, graphed):
        p = positions.update(pos) if site is graphed else pos
        a = site(x1, h1, p)
        b = site(x2, h2, p)  # the graphed site: the first replay's logits are still held
        (a.square().sum() + b.sum()).backward()
        results.append([a.detach(), b.detach()] + [q.grad for q in site.parameters() if q.grad is not None])
    assert len(results[0]) == len(results[1])
    for i, (t_e, t_g) in enumerate(zip(*results)):
        _close(t_g, t_e, f"tensor {i}")


@on_gpu
def test_model_training_with_captured_sites_equals_eager_and_never_syncs():
    eager, graphed = model_pair("cuda")
    images = torch.randn(2, 3, 128, 256, device="cuda")
    target = torch.randint(0, 19, (2, 128, 256), device="cuda")
    pos = torch.arange(128, device="cuda").repeat(2, 1)

    def step(model, seed):
        return model_step(model, images, target, pos, seed)

    for i in range(3):
        if i == 2:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            le, lg = step(eager, i), step(graphed, i)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        _close(lg, le, f"step {i} loss")
        for (name, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
            if pe.grad is not None:
                assert torch.allclose(pg.grad, pe.grad, rtol=1e-4, atol=1e-5), f"step {i} grad of {name}"
    assert all(len(s._graphs) == 1 for s in graphed.hanet_sites())


@on_gpu
def test_bf16_autocast_steps_equal_eager():
    eager, graphed, positions = _gpu_pair()
    pos = (torch.arange(16, device="cuda") * 8).repeat(2, 1)
    for step in range(3):
        x_low = torch.randn(2, 64, 16, 8, device="cuda")
        x_high = torch.randn(2, 48, 16, 8, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            oe, le, he = _step(eager, x_low, x_high, pos, torch.ones_like(x_high))
            og, lg, hg = _step(graphed, x_low, x_high, positions.update(pos), torch.ones_like(x_high))
        assert torch.allclose(og.float(), oe.float(), rtol=1e-2, atol=1e-2)
        assert torch.allclose(lg.float(), le.float(), rtol=1e-2, atol=1e-2)


@on_gpu
def test_a_site_with_dropout_and_position_noise_trains_from_its_graph():
    site = _site(dropout=0.3)
    site.pos_emb1d_2nd.pos_noise = 1.0
    site.cuda_graph = True
    positions = StaticPositions()
    x_low, x_high = torch.randn(2, 64, 16, 8, device="cuda"), torch.randn(2, 48, 16, 8, device="cuda")
    pos = positions.update((torch.arange(16, device="cuda") * 8).repeat(2, 1))
    outs = [_step(site, x_low, x_high, pos, torch.ones_like(x_high)) for _ in range(3)]
    # a new dropout mask at every replay (the graph advances the generator's offset)
    assert not torch.equal(outs[1][0], outs[2][0])
    assert all(torch.isfinite(t).all() for o in outs for t in o)


@on_gpu
@pytest.mark.parametrize("site_name", ["r101_os8_site1", "r101_os8_site3"])
def test_launches_of_a_captured_site(site_name):
    """Forward: pool, copy, graph, rescale (4); backward: the rescale's streaming pass
    (which returns the attention's gradient), copy, graph, the stride-0 add into x_low's
    gradient (4)."""
    from hanet.bench import launches

    c_low, c_high, _ = launches.SITES[site_name]
    site = launches.make_site(c_low, c_high, "cuda", cuda_graph=True)
    r = launches.count_cuda_launches(site, 24)
    assert r["forward"] <= 4 and r["backward"] <= 4, r
