"""Micro-benchmarks of the three HANet ops at the shapes of DeepLabV3+ R101-OS8.

For each op, backend and dtype: median forward and forward+backward time,
effective GB/s (bytes the fused kernel must move / time), speed-up over the eager
reference and over torch.compile(reference), and the fraction of the streaming
bound: the time the simplest PyTorch kernels take to move the same bytes in the
same run (rescale fwd+bwd: feat*2, grad*2, feat.sum(); pool fwd+bwd: x.sum(),
empty_like(x).fill_(1)), divided by the op's time.
"""
from __future__ import annotations

import argparse
import json
import platform
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
    extra: dict = field(default_factory=dict)


def _fwd_bwd(fn, inputs, grad):
    def step():
        for t in inputs:
            t.grad = None
        fn(*inputs).backward(grad)

    return step


def _bench_case(op, shape, dtype, backends, device, with_compile, reps):
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
    for b in backends:
        if b == "reference":
            continue
        fwd, fb = timed(ours(b))
        rows.append(Row(op, "x".join(map(str, shape)), str(dtype).replace("torch.", ""), b, fwd, fb,
                        traffic / fb / 1e6, eager_fb / fb,
                        compiled_fb / fb if compiled_fb else None, bound_ms / fb,
                        {"fwd_frac_stream_bound": fwd_bound_ms / fwd}))
    for r in rows:
        r.extra.setdefault("stream_bound_ms", bound_ms)
        r.extra.setdefault("fwd_stream_bound_ms", fwd_bound_ms)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


HEADER = (f"{'op':<18} {'shape':<16} {'dtype':<8} {'backend':<19} {'fwd ms':>8} {'f+b ms':>8} "
          f"{'GB/s':>7} {'x eager':>8} {'x compile':>9} {'% stream':>8}")


def format_row(r: Row) -> str:
    frac = None if r.frac_stream_bound is None else 100 * r.frac_stream_bound
    return (f"{r.op:<18} {r.shape:<16} {r.dtype:<8} {r.backend:<19} {r.fwd_ms:>8.2f} "
            f"{r.fwd_bwd_ms:>8.2f} {r.fwd_bwd_gbps:>7.1f} {_fmt(r.speedup_vs_eager, '8.2f')} "
            f"{_fmt(r.speedup_vs_compile, '9.2f')} {_fmt(frac, '7.1f')}%")


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
    print(HEADER)
    print("-" * len(HEADER))
    for op in args.ops.split(","):
        if op not in ("attention_rescale", "width_pool", "width_pool_max"):
            p.error(f"unknown op {op!r}")
        shapes = RESCALE_SHAPES if op == "attention_rescale" else POOL_SHAPES
        shapes = shapes[:1] if args.shapes == "first" else shapes
        for dtype in dtypes:
            for shape in shapes:
                new = _bench_case(op, shape, dtype, backends, device, not args.no_compile, args.reps)
                for r in new:
                    print(format_row(r), flush=True)
                rows += new
    meta = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": ROWS,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in rows]}, f, indent=1)
        print(f"wrote {args.json}")
    return rows
