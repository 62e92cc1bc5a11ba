"""Micro-benchmarks of the three HANet ops at the shapes of DeepLabV3+ R101-OS8.

For each op, backend and dtype: median forward and forward+backward time,
effective GB/s (bytes the fused kernel must move / time), speed-up over the eager
reference and over torch.compile(reference), and the fraction of the streaming
bound: the time the simplest PyTorch kernels take to move the same bytes in the
same run (rescale fwd+bwd: feat*2, grad*2, feat.sum(); pool fwd+bwd: x.sum(),
empty_like(x).fill_(1)), divided by the op's time.

Physical columns: "% copy" is the minimum bytes the op must move (rescale fwd+bwd:
read feat, write out, read grad and feat, write grad_feat; pool: read x, write grad_x)
over the op's fwd+bwd time, as a fraction of the copy bandwidth measured in the same
run (a large device-to-device copy on a GPU, memcpy on CPU: bytes read + written over
its time).  "host us" is the host time per forward call (calls issued back to back, no
synchronisation inside the loop: on CPU that is the whole call); "kern ms" the forward's
device time from a CUDA graph replay (triton.testing.do_bench_cudagraph; GPU only).
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

from .timing import median_ms

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


def _fwd_bwd(fn, inputs, grad):
    def step():
        for t in inputs:
            t.grad = None
        fn(*inputs).backward(grad)

    return step


def copy_bandwidth(device: torch.device, reps: int = 7) -> float:
    """Bytes/s of a large copy (read + write) on `device`, measured now."""
    n = (512 << 20 if device.type == "cuda" else 128 << 20) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, reps=reps)
    return 2 * src.nbytes / (ms * 1e-3)


def host_us_per_call(fn, device: torch.device, calls: int = 30) -> float:
    """Host time per call, calls issued back to back (GPU: no sync inside the loop)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - t0
    if device.type == "cuda":
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


def _bench_case(op, shape, dtype, backends, device, with_compile, reps, copy_bps=None):
    B, C, H, W = shape
    n_bytes_el = torch.tensor([], dtype=dtype).element_size()
    feat = torch.randn(shape, device=device, dtype=dtype).requires_grad_()
    if op == "attention_rescale":
        logits = torch.randn((B, C, ROWS), device=device, dtype=dtype).requires_grad_()
        inputs = [feat, logits]
        grad = torch.randn(shape, device=device, dtype=dtype)
        ref_fn = reference.attention_rescale
        ours = lambda b: (lambda f, l: hops.attention_rescale(f, l, backend=b))  # noqa: E731
        # fused: fwd reads feat, writes out; bwd reads grad and feat, writes grad_feat
        traffic = 5 * feat.numel() * n_bytes_el
        f2, g2 = feat.detach(), grad
        bound_fns = [lambda: f2 * 2, lambda: g2 * 2, lambda: f2.sum()]
        fwd_bound_fns = [lambda: f2 * 2]
    else:
        mode = "max" if op == "width_pool_max" else "mean"
        inputs = [feat]
        grad = torch.randn((B, C, ROWS), device=device, dtype=dtype)
        ref_fn = lambda x: reference.width_pool(x, ROWS, mode)  # noqa: E731
        ours = lambda b: (lambda x: hops.width_pool(x, ROWS, mode, backend=b))  # noqa: E731
        traffic = 2 * feat.numel() * n_bytes_el  # fwd reads x; bwd writes grad_x
        x2 = feat.detach()
        bound_fns = [lambda: x2.sum(), lambda: torch.empty_like(x2).fill_(1)]
        fwd_bound_fns = [lambda: x2.sum()]

    def timed(fn):
        fwd = median_ms(lambda: fn(*[t.detach() for t in inputs]), device, reps=reps)
        fb = median_ms(_fwd_bwd(fn, inputs, grad), device, reps=reps)
        return fwd, fb

    def physical(row, fn):
        detached = [t.detach() for t in inputs]
        call = lambda: fn(*detached)  # noqa: E731
        if copy_bps:
            row.frac_copy_bw = traffic / (row.fwd_bwd_ms * 1e-3) / copy_bps
        row.host_us = host_us_per_call(call, device)
        row.kernel_fwd_ms = kernel_ms(call, device)
        return row

    bound_ms = sum(median_ms(f, device, reps=reps) for f in bound_fns)
    fwd_bound_ms = sum(median_ms(f, device, reps=reps) for f in fwd_bound_fns)
    eager_fwd, eager_fb = timed(ref_fn)
    rows = []
    compiled_fb = None
    if with_compile:
        torch._dynamo.reset()
        compiled = torch.compile(ref_fn, fullgraph=True)
        c_fwd, compiled_fb = timed(compiled)
        rows.append(Row(op, "x".join(map(str, shape)), str(dtype).replace("torch.", ""),
                        "compile(reference)", c_fwd, compiled_fb, traffic / compiled_fb / 1e6,
                        eager_fb / compiled_fb, 1.0, bound_ms / compiled_fb))
    rows.insert(0, Row(op, "x".join(map(str, shape)), str(dtype).replace("torch.", ""),
                       "eager reference", eager_fwd, eager_fb, traffic / eager_fb / 1e6, 1.0,
                       compiled_fb / eager_fb if compiled_fb else None, bound_ms / eager_fb))
    physical(rows[0], ref_fn)
    for b in backends:
        if b == "reference":
            continue
        fwd, fb = timed(ours(b))
        rows.append(physical(Row(op, "x".join(map(str, shape)), str(dtype).replace("torch.", ""), b,
                                 fwd, fb, traffic / fb / 1e6, eager_fb / fb,
                                 compiled_fb / fb if compiled_fb else None, bound_ms / fb,
                                 extra={"fwd_frac_stream_bound": fwd_bound_ms / fwd}), ours(b)))
    for r in rows:
        r.extra.setdefault("stream_bound_ms", bound_ms)
        r.extra.setdefault("fwd_stream_bound_ms", fwd_bound_ms)
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


def main(argv=None):
    p = argparse.ArgumentParser(prog="hanet bench ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated, e.g. float32,bfloat16")
    p.add_argument("--ops", default="attention_rescale,width_pool,width_pool_max",
                   help="comma-separated subset of attention_rescale,width_pool,width_pool_max")
    p.add_argument("--backends", default=None,
                   help="comma-separated; default: every backend available for the device "
                        "(the Triton interpreter is never timed)")
    p.add_argument("--shapes", choices=["full", "first"], default="full",
                   help="'first': only the first shape of each op (quick)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)

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
        if op not in ("attention_rescale", "width_pool", "width_pool_max"):
            p.error(f"unknown op {op!r}")
        shapes = RESCALE_SHAPES if op == "attention_rescale" else POOL_SHAPES
        shapes = shapes[:1] if args.shapes == "first" else shapes
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
