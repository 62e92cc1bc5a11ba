"""Micro-benchmarks of the HANet ops at the shapes of DeepLabV3+ R101-OS8.

For each op, backend and dtype: median forward and forward+backward time,
effective GB/s (bytes the fused kernel must move / time), speed-up over the eager
reference and over torch.compile(reference), and the fraction of the streaming
bound: the time the simplest PyTorch kernels take to move the same bytes in the
same run (rescale fwd+bwd: feat*2, grad*2, feat.sum(); pool fwd+bwd: x.sum(),
empty_like(x).fill_(1); pool whose gradient is added into an existing x.grad, as
x_low's is in a model ("width_pool_acc"): x.sum(), g.add_(1)), divided by the op's time.
All of these (bound kernels, eager, compile, every backend; forward and fwd+bwd) are
timed in the same interleaved rounds (--reps rounds, each starting from another
candidate), and the medians over rounds are reported.

Physical columns: "% copy" is the minimum bytes the op must move (rescale fwd+bwd:
read feat, write out, read grad and feat, write grad_feat; pool: read x, write grad_x;
pool_acc: read x, read and write x.grad) over the op's fwd+bwd time, as a fraction of
the copy bandwidth measured in the same run (a large device-to-device copy on a GPU,
memcpy on CPU: bytes read + written over its time), so at most 100 %.  "host us" is
the host time per forward call (calls issued back to back, no synchronisation inside
the loop: on CPU that is the whole call, the median of 30); "kern ms" the forward's device time from a
CUDA graph replay (triton.testing.do_bench_cudagraph; GPU only).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, field

import torch

import hanet.ops as hops
from hanet.ops import reference

from .timing import interleaved_ms, median_ms

# HANet sites of DeepLabV3+ ResNet-101 OS8 at a 768x768 crop, batch 2.
POOL_SHAPES = [(2, 1024, 96, 96), (2, 2048, 96, 96), (2, 1280, 96, 96), (2, 304, 192, 192)]
RESCALE_SHAPES = [(2, 2048, 96, 96), (2, 1280, 96, 96), (2, 256, 96, 96), (2, 256, 192, 192)]
ROWS = 16  # 128 // pos_rfactor 8


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    backend: str
    fwd_ms: float
    fwd_bwd_ms: float
    fwd_bwd_gbps: float
    speedup_vs_eager: float | None = None
    speedup_vs_compile: float | None = None
    frac_stream_bound: float | None = None
    frac_copy_bw: float | None = None  # (min bytes / fwd+bwd time) / measured copy bandwidth
    host_us: float | None = None  # host time per forward call
    kernel_fwd_ms: float | None = None  # forward device time (CUDA graph replay), GPU only
    extra: dict = field(default_factory=dict)


def copy_bandwidth(device: torch.device, reps: int = 7) -> float:
    """Bytes/s of a large copy (read + write) on `device`, measured now."""
    n = (512 << 20 if device.type == "cuda" else 128 << 20) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, reps=reps)
    return 2 * src.nbytes / (ms * 1e-3)


def host_us_per_call(fn, device: torch.device, calls: int = 30) -> float:
    """Host time per call, calls issued back to back: on a GPU the loop's mean (no sync
    inside it); on the CPU, where the host time is the whole call, the median call (a
    mean would carry the odd call that page-faults its fresh output)."""
    if device.type != "cuda":
        return median_ms(fn, device, warmup=1, reps=calls) * 1e3
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - t0
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def kernel_ms(fn, device: torch.device) -> float | None:
    """Device time of fn from a CUDA graph replay (None on CPU or where capture fails)."""
    if device.type != "cuda":
        return None
    try:
        from triton.testing import do_bench_cudagraph

        return float(do_bench_cudagraph(fn, rep=50, return_mode="median"))
    except Exception:  # a graph-unsafe backend: no figure rather than a wrong one
        return None


OPS = ("attention_rescale", "width_pool", "width_pool_acc", "width_pool_max")


def _case(op, shape, dtype, device):
    """Inputs, gradient, reference, our op per backend, minimum bytes and the streaming
    bound's kernels of one bench case."""
    B, C, H, W = shape
    n_bytes_el = torch.tensor([], dtype=dtype).element_size()
    feat = torch.randn(shape, device=device, dtype=dtype).requires_grad_()
    c = {"inputs": [feat], "accumulate": False}
    if op == "attention_rescale":
        logits = torch.randn((B, C, ROWS), device=device, dtype=dtype).requires_grad_()
        c["inputs"] = [feat, logits]
        c["grad"] = torch.randn(shape, device=device, dtype=dtype)
        c["ref"] = reference.attention_rescale
        c["ours"] = lambda b: (lambda f, l: hops.attention_rescale(f, l, backend=b))  # noqa: E731
        # fused: fwd reads feat, writes out; bwd reads grad and feat, writes grad_feat
        c["traffic"] = 5 * feat.numel() * n_bytes_el
        f2, g2 = feat.detach(), c["grad"]
        c["bound"] = [lambda: f2 * 2, lambda: g2 * 2, lambda: f2.sum()]
        c["fwd_bound"] = [lambda: f2 * 2]
        return c
    mode = "max" if op == "width_pool_max" else "mean"
    c["grad"] = torch.randn((B, C, ROWS), device=device, dtype=dtype)
    c["ref"] = lambda x: reference.width_pool(x, ROWS, mode)  # noqa: E731
    c["ours"] = lambda b: (lambda x: hops.width_pool(x, ROWS, mode, backend=b))  # noqa: E731
    x2 = feat.detach()
    c["fwd_bound"] = [lambda: x2.sum()]
    if op == "width_pool_acc":
        # As in a model: x (x_low) already holds a gradient from its other use, and the
        # pool's gradient is added into it.  Minimum: read x; read and write x.grad.
        c["accumulate"] = True
        feat.grad = torch.zeros_like(feat)
        g_buf = torch.zeros_like(x2)
        c["traffic"] = 3 * feat.numel() * n_bytes_el
        c["bound"] = [lambda: x2.sum(), lambda: g_buf.add_(1)]
    else:
        c["traffic"] = 2 * feat.numel() * n_bytes_el  # fwd reads x; bwd writes grad_x
        c["bound"] = [lambda: x2.sum(), lambda: torch.empty_like(x2).fill_(1)]
    return c


def _fwd_bwd(fn, inputs, grad, accumulate=False):
    def step():
        if not accumulate:
            for t in inputs:
                t.grad = None
        fn(*inputs).backward(grad)

    return step


def _bench_case(op, shape, dtype, backends, device, with_compile, reps, copy_bps=None):
    c = _case(op, shape, dtype, device)
    inputs, grad, traffic = c["inputs"], c["grad"], c["traffic"]
    detached = [t.detach() for t in inputs]
    fns = {f"bound{i}": f for i, f in enumerate(c["bound"])}
    fns.update({f"fwd_bound{i}": f for i, f in enumerate(c["fwd_bound"])})
    candidates = {"eager reference": c["ref"]}
    if with_compile:
        torch._dynamo.reset()
        candidates["compile(reference)"] = torch.compile(c["ref"], fullgraph=True)
    for b in backends:
        if b != "reference":
            candidates[b] = c["ours"](b)
    for name, fn in candidates.items():
        fns[f"{name} fwd"] = lambda fn=fn: fn(*detached)
        fns[f"{name} f+b"] = _fwd_bwd(fn, inputs, grad, c["accumulate"])
    # every candidate and the bound's kernels in the same interleaved rounds
    ms = interleaved_ms(fns, device, rounds=reps)
    bound_ms = sum(ms[f"bound{i}"] for i in range(len(c["bound"])))
    fwd_bound_ms = sum(ms[f"fwd_bound{i}"] for i in range(len(c["fwd_bound"])))
    eager_fb = ms["eager reference f+b"]
    compiled_fb = ms.get("compile(reference) f+b")
    label = ("x".join(map(str, shape)), str(dtype).replace("torch.", ""))
    rows = []
    for name, fn in candidates.items():
        fwd, fb = ms[f"{name} fwd"], ms[f"{name} f+b"]
        row = Row(op, *label, name, fwd, fb, traffic / fb / 1e6, eager_fb / fb,
                  compiled_fb / fb if compiled_fb else None, bound_ms / fb,
                  extra={"stream_bound_ms": bound_ms, "fwd_stream_bound_ms": fwd_bound_ms,
                         "fwd_frac_stream_bound": fwd_bound_ms / fwd, "rounds": reps})
        if copy_bps:
            row.frac_copy_bw = traffic / (fb * 1e-3) / copy_bps
        if name != "compile(reference)":
            call = lambda fn=fn: fn(*detached)  # noqa: E731
            row.host_us = host_us_per_call(call, device)
            row.kernel_fwd_ms = kernel_ms(call, device)
        rows.append(row)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


HEADER = (f"{'op':<18} {'shape':<16} {'dtype':<8} {'backend':<19} {'fwd ms':>8} {'f+b ms':>8} "
          f"{'GB/s':>7} {'x eager':>8} {'x compile':>9} {'% stream':>8} {'% copy':>7} {'host us':>8} "
          f"{'kern ms':>8}")


def format_row(r: Row) -> str:
    frac = None if r.frac_stream_bound is None else 100 * r.frac_stream_bound
    return (f"{r.op:<18} {r.shape:<16} {r.dtype:<8} {r.backend:<19} {r.fwd_ms:>8.2f} "
            f"{r.fwd_bwd_ms:>8.2f} {r.fwd_bwd_gbps:>7.1f} {_fmt(r.speedup_vs_eager, '8.2f')} "
            f"{_fmt(r.speedup_vs_compile, '9.2f')} {_fmt(frac, '7.1f')}% "
            f"{_fmt(None if r.frac_copy_bw is None else 100 * r.frac_copy_bw, '6.1f')}% "
            f"{_fmt(r.host_us, '8.1f')} {_fmt(r.kernel_fwd_ms, '8.3f')}")


def _parse_shape(parser, text):
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        parser.error(f"--shapes: {text!r} is not a BxCxHxW shape of positive ints (or full, first)")
    return shape


def main(argv=None):
    p = argparse.ArgumentParser(prog="hanet bench ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated, e.g. float32,bfloat16")
    p.add_argument("--ops", default=",".join(OPS),
                   help="comma-separated subset of " + ",".join(OPS) + " (width_pool_acc: the "
                        "pool's gradient added into an existing x.grad, as in a model)")
    p.add_argument("--backends", default=None,
                   help="comma-separated; default: every backend available for the device "
                        "(the Triton interpreter is never timed)")
    p.add_argument("--shapes", default="full",
                   help="'full' (every site of the op), 'first' (its first site, quick) or a "
                        "comma-separated list of BxCxHxW shapes, e.g. 2x1024x96x96,2x256x192x192")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    p.add_argument("--reps", type=int, default=15,
                   help="interleaved rounds per case (medians over rounds)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error(f"--reps must be >= 1 (interleaved rounds), got {args.reps}")

    device = torch.device(args.device)
    backends = args.backends.split(",") if args.backends else [
        b for b in hops.available_backends(device) if not (b == "triton" and device.type == "cpu")]
    for b in backends:
        hops.dispatch.resolve(b, device)  # a clear error for an unavailable backend
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    torch.manual_seed(0)
    rows = []
    copy_bps = copy_bandwidth(device, args.reps)
    print(f"copy bandwidth on {device} (measured now): {copy_bps / 1e9:.1f} GB/s")
    print(HEADER)
    print("-" * len(HEADER))
    for op in args.ops.split(","):
        if op not in OPS:
            p.error(f"unknown op {op!r}")
        shapes = RESCALE_SHAPES if op == "attention_rescale" else POOL_SHAPES
        if args.shapes == "first":
            shapes = shapes[:1]
        elif args.shapes != "full":
            shapes = [_parse_shape(p, s) for s in args.shapes.split(",")]
        for dtype in dtypes:
            for shape in shapes:
                new = _bench_case(op, shape, dtype, backends, device, not args.no_compile, args.reps,
                                  copy_bps)
                for r in new:
                    print(format_row(r), flush=True)
                rows += new
    meta = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": ROWS,
        "copy_bandwidth_gbps": copy_bps / 1e9,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in rows]}, f, indent=1)
        print(f"wrote {args.json}")
    return rows
