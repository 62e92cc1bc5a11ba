"""Host cost per call of the Triton backend (``python -m hanet.bench triton-host``).

For each op at the HANet sites of DeepLabV3+ R101-OS8 (the shapes of
:mod:`hanet.bench.ops_bench`): the host time of one call, calls issued back to back
with no synchronisation inside the loop (median and best over repeats; on a shared
machine the best is the steadier figure), at two levels:

* ``api``: ``hanet.ops.<op>(..., backend="triton")`` (public ops: validation, backend
  choice, then the op);
* ``op``: ``torch.ops.hanet_triton.<op>`` (dispatcher, triton_op wrapper, the
  launcher: argument checks, outputs, launch plan, kernel launches).

``alloc`` is the time of allocating the op's outputs with ``torch.empty`` alone, on
the same device: the part of a call no launcher can avoid (on a CPU a 150 MB output is
a fresh mmap per call, ~10 us; on CUDA the caching allocator takes ~1-2 us).  The
first row, ``triton_op floor``, is a ``triton_op`` with autograd that only returns
``torch.empty_like(x)``: what the dispatcher and torch's triton_op / autograd
wrappers cost before any hanet code runs (the hanet_triton ops skip triton_op's
device-kernel wrappers: ``hanet.ops.triton.register_direct``, unless
``HANET_TRITON_DIRECT=0``).

Launches: on a CPU (Triton's interpreter, ``TRITON_INTERPRET=1``, which the command
sets when it is not set) the kernel launch is replaced by a no-op, here only (every
kernel's ``run`` is patched for the measurement and restored after): the figure is
the Python host path down to the kernel launch, without Triton's own launch cost
(argument binding, specialisation key, driver call).  On CUDA the kernels are
launched for real (``--noop`` replaces them there too, to separate the two parts).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, List, Tuple

ROWS = 16  # 128 // pos_rfactor 8, as hanet.bench.ops_bench
# HANet sites of DeepLabV3+ ResNet-101 OS8 at a 768x768 crop, batch 2 (ops_bench's).
POOL_SHAPES = [(2, 1024, 96, 96), (2, 2048, 96, 96), (2, 1280, 96, 96), (2, 304, 192, 192)]
RESCALE_SHAPES = [(2, 2048, 96, 96), (2, 1280, 96, 96), (2, 256, 96, 96), (2, 256, 192, 192)]


def _site_shapes():
    """ops_bench's site shapes (the reference list), else the copy above."""
    try:
        from . import ops_bench

        return list(ops_bench.POOL_SHAPES), list(ops_bench.RESCALE_SHAPES), int(ops_bench.ROWS)
    except Exception:  # pragma: no cover - ops_bench being edited
        return POOL_SHAPES, RESCALE_SHAPES, ROWS


@contextmanager
def noop_launches(enabled: bool = True):
    """Every hanet Triton kernel's ``run`` replaced by a no-op (``kernel[grid](...)``
    calls ``kernel.run``), restored on exit."""
    if not enabled:
        yield
        return
    from hanet.ops.triton import KERNELS

    def noop(*args, **kwargs):
        return None

    kernels = list({id(k): k for k in KERNELS.values()}.values())
    saved = [(k, k.__dict__.get("run")) for k in kernels]
    for k in kernels:
        k.run = noop
    try:
        yield
    finally:
        for k, old in saved:
            if old is None:
                del k.run
            else:
                k.run = old


def us_per_call(fn: Callable[[], object], device, calls: int, repeats: int) -> Tuple[float, float]:
    """(median, best) over ``repeats`` of the host time per call of ``calls`` back-to-back
    calls (CUDA: no synchronisation inside the loop, one after it)."""
    import torch

    cuda = device.type == "cuda"
    for _ in range(3):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
        if cuda:
            torch.cuda.synchronize()
    return statistics.median(times), min(times)


def _cases(dtype, device, layouts, rows, pool_shapes, rescale_shapes, ops=None):
    """(op, shape label, layout, {level: fn}, alloc fn) for every case (of ``ops``)."""
    import torch

    def want(*names):
        return not ops or any(n in ops for n in names)

    import hanet.ops as hops
    from hanet.ops.dispatch import triton_ops

    T = triton_ops()

    def empty(shape, fmt=torch.contiguous_format, dt=dtype):
        return torch.empty(shape, dtype=dt, device=device, memory_format=fmt)

    def fmt_of(layout):
        return torch.channels_last if layout == "nhwc" else torch.contiguous_format

    for shape in pool_shapes if want("width_pool", "width_pool_backward", "height_interp",
                                     "height_interp_backward") else ():
        B, C, H, W = shape
        label = "x".join(map(str, shape))
        for layout in layouts if want("width_pool", "width_pool_backward") else ():
            x = empty(shape, fmt_of(layout)) if want("width_pool") else None
            for mode in ("mean", "max") if want("width_pool") else ():
                yield (f"width_pool[{mode}]", label, layout, {
                    "api": lambda x=x, m=mode: hops.width_pool(x, rows, m, backend="triton"),
                    "op": lambda x=x, m=mode: T.width_pool(x, rows, m)},
                    lambda m=mode: (empty((B, C, rows)),
                                    empty((B, C, rows) if m == "max" else (0,), dt=torch.int64)))
            del x
            g = empty((B, C, rows))
            idx = torch.zeros((B, C, rows), dtype=torch.int64, device=device)
            for mode in ("mean", "max") if want("width_pool_backward") else ():
                yield (f"width_pool_backward[{mode}]", label, layout, {
                    "op": lambda m=mode, cl=(layout == "nhwc"):
                        T.width_pool_backward(g, idx, H, W, m, cl)},
                    lambda: empty(shape, fmt_of(layout)))
        a = empty((B, C, rows))
        yield ("height_interp", f"{B}x{C}x{rows}->{H}", "-", {
            "api": lambda a=a, H=H: hops.height_interp(a, H, backend="triton"),
            "op": lambda a=a, H=H: T.height_interp(a, H)},
            lambda: empty((B, C, H)))
        gi = empty((B, C, H))
        yield ("height_interp_backward", f"{B}x{C}x{H}->{rows}", "-", {
            "op": lambda gi=gi: T.height_interp_backward(gi, rows)},
            lambda: empty((B, C, rows)))
    for shape in rescale_shapes if want("attention_rescale", "attention_rescale_backward") else ():
        B, C, H, W = shape
        label = "x".join(map(str, shape))
        logits = empty((B, C, rows))
        for layout in layouts:
            feat = empty(shape, fmt_of(layout))
            yield ("attention_rescale", label, layout, {
                "api": lambda f=feat: hops.attention_rescale(f, logits, backend="triton"),
                "op": lambda f=feat: T.attention_rescale(f, logits)},
                lambda: empty(shape, fmt_of(layout)))
            grad = empty(shape, fmt_of(layout))
            yield ("attention_rescale_backward", label, layout, {
                "op": lambda f=feat, g=grad: T.attention_rescale_backward(g, f, logits)},
                lambda: (empty(shape, fmt_of(layout)), empty((B, C, rows))))
            del feat, grad


_FLOOR = None


def triton_op_floor():
    """``torch.ops.hanet_bench.floor(x, y)``: a ``triton_op`` with autograd registered
    (as the hanet_triton ops) whose body only returns ``torch.empty_like(x)``: the host
    cost of the dispatcher, the autograd wrapper and triton_op's wrapper, which every
    hanet_triton call pays before its own launcher runs."""
    global _FLOOR
    if _FLOOR is None:
        import torch
        from torch.library import triton_op

        @triton_op("hanet_bench::floor", mutates_args=(), schema="(Tensor x, Tensor y) -> Tensor")
        def floor(x, y):
            return torch.empty_like(x)

        floor.register_autograd(lambda ctx, g: (g, None))
        _FLOOR = torch.ops.hanet_bench.floor
    return _FLOOR


def plan_cache_info() -> Dict[str, object]:
    """The launch-plan caches' statistics, where the backend has them."""
    try:
        from hanet.ops.triton import common

        info = getattr(common, "plan_cache_info", None)
        return info() if info else {}
    except Exception:  # pragma: no cover
        return {}


def run(device: str | None = None, dtype: str = "float32", calls: int = 100, repeats: int = 7,
        layouts=("nchw", "nhwc"), noop: bool | None = None, ops: List[str] | None = None) -> List[dict]:
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if noop is None:
        noop = dev.type != "cuda"
    if dev.type != "cuda" and not noop:
        raise SystemExit("on CPU the kernels run in Triton's interpreter: host timing needs --noop")
    pool_shapes, rescale_shapes, rows = _site_shapes()
    print(f"host us/call, median/best of {repeats} x {calls} calls, {dtype}, {dev}, "
          f"launches {'no-op' if noop else 'real'}")
    out = []
    with torch.no_grad():
        x = torch.empty((2, 256, 16), device=dev, dtype=getattr(torch, dtype))
        floor = triton_op_floor()
        row = {"op": "triton_op floor (empty_like)", "shape": "2x256x16", "layout": "-",
               "dtype": dtype, "device": str(dev), "launch": "-"}
        for level, fn in (("op", lambda: floor(x, x)), ("alloc", lambda: torch.empty_like(x))):
            med, best = us_per_call(fn, dev, calls, repeats)
            row[f"{level}_us"], row[f"{level}_best_us"] = round(med, 2), round(best, 2)
        out.append(row)
        print(f"{row['op']:49s}       op={row['op_us']:7.2f}/{row['op_best_us']:7.2f} "
              f"alloc={row['alloc_us']:7.2f}/{row['alloc_best_us']:7.2f}", flush=True)
    with torch.no_grad(), noop_launches(noop):
        for op, label, layout, fns, alloc in _cases(getattr(torch, dtype), dev, layouts, rows,
                                                    pool_shapes, rescale_shapes, ops):
            if ops and op.split("[")[0] not in ops:
                continue
            row = {"op": op, "shape": label, "layout": layout, "dtype": dtype,
                   "device": str(dev), "launch": "no-op" if noop else "real"}
            for level, fn in list(fns.items()) + [("alloc", alloc)]:
                med, best = us_per_call(fn, dev, calls, repeats)
                row[f"{level}_us"], row[f"{level}_best_us"] = round(med, 2), round(best, 2)
            out.append(row)
            print(f"{op:30s} {label:18s} {layout:5s} "
                  + " ".join(f"{k}={row[k + '_us']:7.2f}/{row[k + '_best_us']:7.2f}"
                             for k in ("api", "op", "alloc") if k + "_us" in row), flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hanet.bench triton-host", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16", "float64"))
    p.add_argument("--calls", type=int, default=100, help="back-to-back calls per repeat")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--layouts", default="nchw,nhwc")
    p.add_argument("--ops", default=None, help="comma-separated op names (default: all)")
    p.add_argument("--noop", action="store_true", default=None,
                   help="replace kernel launches by a no-op (always on CPU)")
    p.add_argument("--json", default=None, help="write the rows to this file")
    a = p.parse_args(argv)
    if a.device != "cuda":
        # Before triton is imported: on CPU the ops need the interpreter.
        try:
            import torch  # noqa: F401

            has_cuda = torch.cuda.is_available()
        except Exception:  # pragma: no cover
            has_cuda = False
        if a.device == "cpu" or not has_cuda:
            if "triton" not in sys.modules:
                os.environ.setdefault("TRITON_INTERPRET", "1")
    rows = run(a.device, a.dtype, a.calls, a.repeats, tuple(a.layouts.split(",")), a.noop,
               a.ops.split(",") if a.ops else None)
    info = plan_cache_info()
    if info:
        print("plan caches:", json.dumps(info))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "plan_caches": info}, f, indent=1)


if __name__ == "__main__":
    main()
