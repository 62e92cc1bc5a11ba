"""The bookkeeping around a captured HANet branch, on the CPU (hanet.models.branch_graph).

A CUDA graph replays its kernels into the same static tensors every time: the logits
buffer and the gradient buffers are rewritten in place at each replay.  Without a GPU,
``RerunGraph`` stands in for the graph: its replay re-runs the recorded body and copies
the results into the tensors the capture returned, so every static buffer is reused
exactly as a replay reuses it.  Everything around the replay is the real code: the
autograd function, the mean-pool gradient folded into the graph, parameter gradients
that autograd takes over and later accumulates into, two forwards before one backward,
BatchNorm statistics restored after the warm-up.  The truth is the same site run
eagerly, in float64.  tests/test_branch_graph.py runs the real graphs on a GPU.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hanet.models import HANet, branch_graph, build_model
from hanet.models.branch_graph import StaticPositions


class RerunGraph:
    def __init__(self, owner, body, result, forward):
        self.owner, self.body, self.result, self.forward, self.live = owner, body, result, forward, None

    def pool(self):
        return None

    def replay(self):
        if self.forward:  # rewrite the logits buffer (and the attention rows')
            with torch.enable_grad():
                self.live = self.body()
            pairs = zip(self.result, self.live) if isinstance(self.live, tuple) else [(self.result, self.live)]
            with torch.no_grad():
                for buf, t in pairs:
                    buf.copy_(t)
            self.owner._live_out = self.live
        else:  # the backward: differentiate the latest forward, rewrite the gradient buffers
            kept = self.owner.static_out, self.owner.static_rows
            live = self.owner._live_out
            self.owner.static_out, self.owner.static_rows = live if isinstance(live, tuple) else (live, None)
            try:
                grads = self.body()
            finally:
                self.owner.static_out, self.owner.static_rows = kept
            with torch.no_grad():
                for buf, g in zip(self.result, grads):
                    if buf is not None:
                        buf.copy_(g)


class RerunBranchGraph(branch_graph.BranchGraph):
    def _warm_up(self, forward_body, inputs):
        for _ in range(self.WARMUP):  # updates the BatchNorm statistics, as on a GPU
            forward_body()

    def _record(self, body, share_pool_with):
        forward = share_pool_with is None
        result = body()  # the forward's outputs keep their autograd graph, as a captured one's do
        if not forward:
            result = [None if g is None else g.detach().clone() for g in result]
        return RerunGraph(self, body, result, forward), result


@pytest.fixture
def rerun_graphs(monkeypatch):
    monkeypatch.setattr(branch_graph, "BranchGraph", RerunBranchGraph)
    monkeypatch.setattr(branch_graph, "can_capture", lambda module, x: module.training and torch.is_grad_enabled())


def _close(a, b, what):
    assert torch.allclose(a, b, rtol=1e-7, atol=1e-9), f"{what}: max abs diff {(a - b).abs().max().item()}"


def _pair(**kw):
    torch.manual_seed(0)
    eager = HANet(64, 48, r_factor=8, **kw).train().double()
    graphed = copy.deepcopy(eager)
    graphed.cuda_graph = True
    return eager, graphed


def _run(site, x_low, x_high, pos, g):
    x_low, x_high = x_low.clone().requires_grad_(), x_high.clone().requires_grad_()
    out = site(x_low, x_high, pos)
    # as in a model: x_low also feeds another layer
    ((out * g).sum() + (x_low * 0.5).square().sum()).backward()
    return out.detach(), x_low.grad, x_high.grad


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("pos_injection,layers", [(2, 3), (1, 2), (0, 3)])
@pytest.mark.parametrize("set_to_none", [True, False], ids=["grads_set_to_none", "grads_zeroed_in_place"])
def test_replayed_steps_equal_eager_steps(rerun_graphs, pooling, pos_injection, layers, set_to_none):
    eager, graphed = _pair(pooling=pooling, pos_injection=pos_injection, layers=layers)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (eager, graphed)]
    positions = StaticPositions()
    for step in range(4):
        gen = torch.Generator().manual_seed(step)
        x_low = torch.randn(2, 64, 20, 12, generator=gen, dtype=torch.float64)
        x_high = torch.randn(2, 48, 20, 12, generator=gen, dtype=torch.float64)
        g = torch.randn(x_high.shape, generator=gen, dtype=torch.float64)
        pos = (torch.arange(20) * 128 // 20 + step).clamp(max=127).repeat(2, 1)
        for _ in range(2 if step == 2 else 1):  # step 2: two backward passes accumulate
            truth = _run(eager, x_low, x_high, pos, g)
            got = _run(graphed, x_low, x_high, positions.update(pos), g)
            for name, a, b in zip(("output", "x_low grad", "x_high grad"), got, truth):
                _close(a, b, f"step {step} {name}")
        for (name, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
            if pe.grad is not None:
                _close(pg.grad, pe.grad, f"step {step} gradient of {name}")
        for (name, be), bg in zip(eager.named_buffers(), graphed.buffers()):
            _close(bg.double(), be.double(), f"step {step} {name}")
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=set_to_none)
    assert len(graphed._graphs) == 1


def test_a_second_forward_before_the_backward_runs_eagerly(rerun_graphs):
    eager, graphed = _pair()
    positions = StaticPositions()
    x1, x2 = torch.randn(2, 2, 64, 16, 8, dtype=torch.float64)
    h1, h2 = torch.randn(2, 2, 48, 16, 8, dtype=torch.float64)
    pos = (torch.arange(16) * 8).repeat(2, 1)
    for site in (eager, graphed):  # the graphed site captures here
        _run(site, x1, h1, positions.update(pos) if site is graphed else pos, torch.ones_like(h1))
        site.zero_grad(set_to_none=True)
    results = []
    for site in (eager, graphed):
        p = positions.update(pos) if site is graphed else pos
        a1, a2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        o1, o2 = site(a1, h1, p), site(a2, h2, p)  # o1's logits are still held by its rescale
        (o1.square().sum() + o2.sum()).backward()
        results.append([o1.detach(), o2.detach(), a1.grad, a2.grad]
                       + [q.grad for q in site.parameters() if q.grad is not None])
    assert len(results[0]) == len(results[1])
    for i, (truth, got) in enumerate(zip(*results)):
        _close(got, truth, f"tensor {i}")


def test_a_module_converted_after_the_capture_is_captured_again(rerun_graphs):
    _, graphed = _pair()
    x_low, x_high = torch.randn(2, 64, 16, 8, dtype=torch.float64), torch.randn(2, 48, 16, 8, dtype=torch.float64)
    _run(graphed, x_low, x_high, None, torch.ones_like(x_high))
    first = next(iter(graphed._graphs.values()))
    graphed.float()  # new storage for every parameter and buffer
    _run(graphed, x_low.float(), x_high.float(), None, torch.ones_like(x_high).float())
    assert first not in graphed._graphs.values()


def test_a_copied_site_starts_without_graphs(rerun_graphs):
    _, graphed = _pair()
    x_low, x_high = torch.randn(2, 64, 16, 8, dtype=torch.float64), torch.randn(2, 48, 16, 8, dtype=torch.float64)
    _run(graphed, x_low, x_high, None, torch.ones_like(x_high))
    assert len(graphed._graphs) == 1 and copy.deepcopy(graphed)._graphs == {}


def model_pair(device, dtype=torch.float32):
    """(eager, graphed): the demo's trunk with all five sites, the same weights."""
    torch.manual_seed(0)
    eager = build_model("deeplabv3plus_shufflenetv2_os16", hanet=[1, 1, 1, 1, 1], hanet_set=[3, 16, 3],
                        aux_loss=True).train().to(device, dtype)
    graphed = copy.deepcopy(eager)
    for site in graphed.hanet_sites():
        site.cuda_graph = True
    return eager, graphed


def model_step(model, images, target, pos, seed) -> torch.Tensor:
    """A training step's forward and backward; the loss."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout mask in the auxiliary head
    out = model(images, pos_h=pos)
    aux = F.interpolate(out.aux_logits, size=target.shape[1:], mode="bilinear")
    loss = F.cross_entropy(out.logits, target) + 0.4 * F.cross_entropy(aux, target)
    loss.backward()
    return loss.detach()


def test_model_steps_with_replayed_sites_equal_eager_steps(rerun_graphs):
    eager, graphed = model_pair("cpu", torch.float64)
    images = torch.randn(2, 3, 64, 128, dtype=torch.float64)
    target = torch.randint(0, 19, (2, 64, 128))
    pos = (torch.arange(64) * 2).repeat(2, 1)
    for step in range(3):
        losses = [model_step(m, images, target, pos, step) for m in (eager, graphed)]
        _close(losses[1], losses[0], f"step {step} loss")
        for (name, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
            if pe.grad is not None:
                _close(pg.grad, pe.grad, f"step {step} gradient of {name}")
    assert [len(s._graphs) for s in graphed.hanet_sites()] == [1] * 5


def test_a_replayed_site_runs_four_ops_per_direction(rerun_graphs, monkeypatch):
    """The op structure of a captured site, counted at the ATen level: each replay
    counts as one launch (the ops it re-runs here are not counted, as a graph's are
    not launched one by one)."""
    from torch.utils._python_dispatch import _disable_current_modes

    from hanet.bench import launches

    replays = []
    replay = RerunGraph.replay

    def counted_replay(self):
        with _disable_current_modes():
            replay(self)
        replays.append(self)

    monkeypatch.setattr(RerunGraph, "replay", counted_replay)
    for pooling, most in (("mean", (4, 4)), ("max", (4, 5))):
        site = launches.make_site(96, 64, "cpu", backend="cpu", cuda_graph=True, pooling=pooling)
        launches.count_ops(site, 8)  # captures
        site.zero_grad(set_to_none=True)  # as after optimizer.zero_grad()
        replays.clear()
        fwd, bwd = launches.count_ops(site, 8)
        assert len(replays) == 2
        forward, backward = sum(fwd.values()) + 1, sum(bwd.values()) + 1
        assert forward <= most[0] and backward <= most[1], (pooling, fwd, bwd)
        # forward: the pool, the copy of its rows into the graph, the graph, the rescale
        assert fwd["hanet.width_pool"] == 1 and fwd["hanet.attention_rescale"] == 1 and fwd["aten.copy_"] == 1
        assert bwd["hanet.attention_rescale_backward"] == 1 and bwd["aten.copy_"] == 1
        if pooling == "mean":  # the pool's backward runs inside the graph
            assert "hanet.width_pool_backward" not in bwd and bwd["aten.add_"] == 1


@pytest.mark.parametrize("relu", [False, True])
def test_the_rescale_hands_the_graph_the_attention_gradient(rerun_graphs, relu, monkeypatch):
    """Replay and rescale are one node: the rescale's backward returns the gradient of
    A = interp(sigmoid(logits), H) (attention_grad=True: on CUDA its streaming pass
    alone) and the graph starts from it; nothing outside the graph touches the logits'
    gradient.  Values: the eager site in float64 (the fused ReLU too)."""
    from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

    replay = RerunGraph.replay

    def unrecorded_replay(self):  # a graph's kernels are not launched one by one
        with _disable_current_modes():
            replay(self)

    monkeypatch.setattr(RerunGraph, "replay", unrecorded_replay)

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls.append((f"{func.namespace}.{func.overloadpacket.__name__}", args))
            return func(*args, **(kwargs or {}))

    eager, graphed = _pair()
    x_low, x_high = torch.randn(2, 64, 16, 8, dtype=torch.float64), torch.randn(2, 48, 16, 8, dtype=torch.float64)
    g = torch.randn(x_high.shape, dtype=torch.float64)
    pos = (torch.arange(16) * 8).repeat(2, 1)
    positions = StaticPositions()

    def run(site, p):
        lo, hi = x_low.clone().requires_grad_(), x_high.clone().requires_grad_()
        out = site(lo, hi, p, relu_x_high=relu)
        ((out * g).sum() + (lo * 0.5).square().sum()).backward()
        return out.detach(), lo.grad, hi.grad

    run(graphed, positions.update(pos))  # captures
    graphed.zero_grad(set_to_none=True)
    truth = run(eager, pos)
    rec = Record()
    with rec:
        got = run(graphed, positions.update(pos))
    for name, a, b in zip(("output", "x_low grad", "x_high grad"), got, truth):
        _close(a, b, name)
    for (name, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
        if pe.grad is not None:
            _close(pg.grad, pe.grad, f"gradient of {name}")
    backward = [args for name, args in rec.calls if name == "hanet.attention_rescale_backward"]
    assert len(backward) == 1 and backward[0][3:] == (True, True)  # from the output, A's gradient
    copies = [args for name, args in rec.calls if name == "aten.copy_"]
    assert [tuple(a[1].shape) for a in copies[-1:]] == [(2, 48, 16)]  # A's gradient into the graph
    assert "aten.sigmoid_backward" not in {name for name, _ in rec.calls}  # inside the graph only


def test_sync_batchnorm_in_the_branch_runs_eagerly_with_one_warning(rerun_graphs):
    _, graphed = _pair()
    graphed = torch.nn.SyncBatchNorm.convert_sync_batchnorm(graphed)
    graphed.cuda_graph = True
    x_low, x_high = torch.randn(2, 64, 16, 8, dtype=torch.float64), torch.randn(2, 48, 16, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="SyncBatchNorm"):
        graphed.attention_logits(x_low.requires_grad_())
    assert graphed._graphs == {}
