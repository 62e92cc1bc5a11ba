"""Kernel launches of one HANet site, forward and backward (issue 13: the goal is at
most 4 per site per direction).

On a GPU the profiler counts the host's launch calls (kernels, copies, memsets, graph
launches: what the issue's "launches" are) and the kernels the device ran; with
`--cuda-graph` the site replays its small branch from a captured graph
(hanet.models.branch_graph), the positions coming from a model-level static tensor as
in DeepLabV3Plus.  On CPU the ATen ops that
run a kernel are counted instead (a TorchDispatchMode below autograd; views and
allocations excluded): the same op structure a GPU launches (each op one or more
kernels, our fused ops one or two), except that the CPU checks the positions on the
host (6 ops, two of them host reads) where an accelerator asserts on the device (5).
The count does not depend on the spatial size, so `--height` may be small.

    python -m hanet.bench launches [--device cuda] [--cuda-graph] [--site r101_os8_site3] [--height 8]
"""
from __future__ import annotations

import argparse
import weakref
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# The HANet sites of DeepLabV3+ R101-OS8 (768x768 crop, batch 2), with the official
# best recipe: hanet_set=[3, 64, 3], hanet_pos=[2, 1] (sinusoid after the first
# conv), pos_rfactor 8, dropout 0.1, mean pooling.  (x_low channels, x_high channels, H).
SITES = {
    "r101_os8_site1": (1024, 2048, 96),
    "r101_os8_site2": (2048, 1280, 96),
    "r101_os8_site3": (1280, 256, 96),
    "r101_os8_site4": (304, 256, 192),
}

_NO_KERNEL = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach",
              "lift_fresh", "alias", "_to_copy_noop"}


class OpCounter(TorchDispatchMode):
    """Counts the ATen / custom ops that run a kernel (views and allocations excluded)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not func.is_view and name not in _NO_KERNEL:
            self.ops[f"{func.namespace}.{name}"] += 1
        return out


def make_site(x_low_channels: int, x_high_channels: int, device, backend: str | None = None,
              cuda_graph: bool = False, pooling: str = "mean"):
    from hanet.models import HANet

    return HANet(in_channels=x_low_channels, out_channels=x_high_channels, kernel_size=3, r_factor=64,
                 layers=3, pos_injection=2, pos_encoding="sinusoid", pos_rfactor=8, pooling=pooling,
                 dropout=0.1, pos_noise=0.5, backend=backend, cuda_graph=cuda_graph).to(device).train()


# per site, the one positions tensor a model would hand it (DeepLabV3Plus keeps it as
# its own state); weak keys, so a bench's sites do not outlive it
_STATIC_POSITIONS = weakref.WeakKeyDictionary()


def _inputs(site, H, device, batch=2):
    x_low = torch.randn(batch, site.in_channels, H, H, device=device, requires_grad=True)
    x_high = torch.randn(batch, site.out_channels, H, H, device=device, requires_grad=True)
    pos = (torch.arange(H, device=device) * 128 // H).repeat(batch, 1)
    if site.cuda_graph:  # as DeepLabV3Plus passes them: one tensor, rewritten at every step
        from hanet.models.branch_graph import StaticPositions

        pos = _STATIC_POSITIONS.setdefault(site, StaticPositions()).update(pos)
    # as in a model: x_low's gradient from its other use is already there
    x_low.grad = torch.zeros_like(x_low)
    return x_low, x_high, pos


def count_ops(site, H: int, device="cpu") -> tuple[Counter, Counter]:
    """(forward ops, backward ops) of one training step of `site` (ATen-level count)."""
    x_low, x_high, pos = _inputs(site, H, device)
    grad = torch.randn(x_high.shape, device=device)
    fwd, bwd = OpCounter(), OpCounter()
    with fwd:
        out = site(x_low, x_high, pos)
    with bwd:
        out.backward(grad)
    return fwd.ops, bwd.ops


# The host calls that put work on a CUDA stream.
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                "cudaMemcpyAsync", "cudaMemsetAsync", "cudaGraphLaunch", "cudaLaunchCooperativeKernel")


def count_cuda_launches(site, H: int) -> dict:
    """Launch calls and device kernels of one training step's forward and backward,
    from the profiler, after two warm-up steps (lazy initialisation, graph capture)."""
    from torch.profiler import ProfilerActivity, profile

    x_low, x_high, pos = _inputs(site, H, "cuda")
    grad = torch.randn(x_high.shape, device="cuda")
    for _ in range(2):
        site(x_low, x_high, pos).backward(grad)
    # as a training step after optimizer.zero_grad(): the parameters' gradients are
    # taken over, not added into existing ones (one add per parameter otherwise)
    site.zero_grad(set_to_none=True)

    def count(fn) -> tuple[int, int]:
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        events = prof.events()
        launches = sum(1 for e in events if e.name.split("_v")[0] in LAUNCH_CALLS)
        kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        return launches, kernels

    holder = []
    f_launch, f_kernel = count(lambda: holder.append(site(x_low, x_high, pos)))
    b_launch, b_kernel = count(lambda: holder.pop().backward(grad))
    return {"forward": f_launch, "backward": b_launch, "forward_kernels": f_kernel, "backward_kernels": b_kernel}


def main(argv=None):
    p = argparse.ArgumentParser(prog="hanet bench launches", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--height", type=int, default=None, help="feature rows and columns (default: the site's)")
    p.add_argument("--backend", default=None, help="op backend (default: the device's fastest)")
    p.add_argument("--cuda-graph", action="store_true", help="replay the small branch from a CUDA graph")
    p.add_argument("--pooling", choices=("mean", "max"), default="mean")
    p.add_argument("--site", choices=list(SITES), action="append",
                   help="repeatable; default: all four R101-OS8 sites")
    args = p.parse_args(argv)
    if args.height is not None and args.height < 1:
        p.error(f"--height must be >= 1, got {args.height}")
    results = {}
    for name in args.site or list(SITES):
        c_low, c_high, H = SITES[name]
        H = args.height if args.height is not None else H
        site = make_site(c_low, c_high, args.device, args.backend, args.cuda_graph, args.pooling)
        if args.device.startswith("cuda"):
            r = count_cuda_launches(site, H)
            f, b = r["forward"], r["backward"]
            print(f"{name}: {f} launches forward, {b} backward (goal <= 4 each); device kernels "
                  f"{r['forward_kernels']} / {r['backward_kernels']}" + (" (CUDA graph)" if args.cuda_graph else ""))
        else:
            fo, bo = count_ops(site, H, args.device)
            f, b = sum(fo.values()), sum(bo.values())
            print(f"{name}: {f} kernel ops forward, {b} backward (goal <= 4 each)")
            print("  forward: " + ", ".join(f"{k} x{v}" for k, v in sorted(fo.items())))
            print("  backward: " + ", ".join(f"{k} x{v}" for k, v in sorted(bo.items())))
        results[name] = {"forward": f, "backward": b}
    return results


if __name__ == "__main__":
    main()
