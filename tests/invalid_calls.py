"""Invalid calls of the hanet ops, generated from a seed, and the runner that makes them.

Every call is invalid in exactly one way that the generator names (a category), made on
top of an otherwise valid call of one *target*: a public op (``hanet.ops.width_pool``,
``height_interp``, ``attention_rescale``) on one backend (every backend usable on CPU
tensors, and the default), or a raw op of ``torch.ops.hanet`` or ``torch.ops.hanet_triton``
(forward and ``*_backward``).  Categories: wrong rank, empty tensors, wrong dtypes (int,
bool, complex, and mixed float dtypes), wrong or mixed devices (meta tensors with a
kernel backend, meta mixed with CPU), batch/channel/shape mismatches, non-tensors and
None, sizes that are zero, negative, huge (2**40 .. 2**63-1) or past int64, non-int
sizes, bad mode strings, bad backends, non-bool flags, and max-pool indices of the wrong
dtype, shape or range (out-of-range indices must raise, not be read or written).  Any
tensor may be an expanded zero-stride view.

A call passes when it raises TypeError, ValueError, RuntimeError or IndexError (or a
subclass) whose message is non-empty and names the problem (contains one of the
category's words).  Anything else (no exception, another exception type, an empty or
unrelated message) is recorded as a failure.  Crashes and hangs are what the parent
process sees (tests/test_fuzz_invalid.py): the runner prints each call's label to a
progress file before making it, so the parent can name the call that killed it.

    python tests/invalid_calls.py --calls 1200 --seed 0 --summary out.json --progress p.txt
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

ACCEPTED = (TypeError, ValueError, RuntimeError, IndexError)

# Sizes no CPU allocation can hold (the runner also caps its address space, so that an
# allocator that overcommits still fails them), and sizes past int64.
HUGE = [2**40, 2**45, 2**62, 2**63 - 1]
PAST_INT64 = [2**63, 2**64, 2**100, -(2**70)]
NONPOSITIVE = [0, -1, -7, -(2**31), -(2**63)]
BAD_MODES = ["median", "", "MAX", "Mean", " mean", "sum", "max ", None, 1, 2.5, ["max"]]
BAD_BACKENDS = ["gpu", "CPU", "", "Triton", "reference ", "torch", 3, 1.5, ["cpu"]]
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "bool", "complex64", "complex128"]
FLOATS = ["float32", "float16", "bfloat16", "float64"]


@dataclass
class Call:
    label: str
    category: str
    fn: Callable[[], object]
    needles: tuple  # the message must contain one of these (case-insensitive)
    zero_stride: bool = False
    backend: str = ""  # the backend whose code the call reaches


@dataclass
class Target:
    """An op with a valid-argument generator and the categories that can break it."""

    name: str
    kind: str  # "api" or "raw"
    ns: str  # backend ("reference", "cpu", "triton", None) or raw namespace
    op: str
    categories: list = field(default_factory=list)


class Generator:
    def __init__(self, seed: int, backends: list[str]):
        import torch

        self.torch = torch
        self.rng = random.Random(seed)
        self.backends = backends
        self.zero_stride = False
        self.targets = self._targets()

    # ---- tensors ---------------------------------------------------------------

    def dims(self, n: int) -> list[int]:
        return [self.rng.randint(1, 4) for _ in range(n)]

    def tensor(self, shape, dtype="float32", device="cpu"):
        """Random values of `shape`; one time in four an expanded zero-stride view."""
        torch = self.torch
        dt = getattr(torch, dtype)
        expand = len(shape) > 0 and self.rng.random() < 0.25
        base_shape = [1 if (expand and self.rng.random() < 0.6) else n for n in shape]
        if device == "meta":
            base = torch.empty(base_shape, dtype=dt, device="meta")
        elif dt.is_complex:
            base = torch.randn(base_shape, dtype=dt)
        elif dt.is_floating_point:
            base = torch.randn(base_shape).to(dt)
        elif dt == torch.bool:
            base = torch.rand(base_shape) > 0.5
        else:
            base = torch.randint(0, 5, base_shape).to(dt)
        if expand and list(base_shape) != list(shape):
            self.zero_stride = True
            return base.expand(*shape)
        return base

    def not_tensor(self):
        import numpy as np

        return self.rng.choice(
            [None, 3, 1.5, [1.0, 2.0], "x", (1, 2), np.zeros((2, 2, 2, 2), dtype=np.float32), object()]
        )

    def other_rank(self, ndim: int, dtype="float32"):
        n = self.rng.choice([d for d in range(0, 7) if d != ndim])
        return self.tensor(self.dims(n), dtype)

    def empty_like_shape(self, shape, dtype="float32"):
        # a zero non-batch dimension (an empty batch, B = 0, is valid as in F.*)
        shape = list(shape)
        shape[self.rng.randrange(1, len(shape)) if len(shape) > 1 else 0] = 0
        return self.tensor(shape, dtype)

    def other_shape(self, shape):
        """Same rank, at least one size different."""
        new = list(shape)
        k = self.rng.randrange(len(new))
        new[k] = self.rng.choice([n for n in range(1, 7) if n != new[k]])
        return new

    # ---- targets ---------------------------------------------------------------

    def _targets(self) -> list[Target]:
        t = []
        for backend in self.backends + [None]:
            tensor_cats = ["rank", "dtype", "empty", "not_tensor"]
            if backend in ("cpu", "triton"):
                tensor_cats.append("meta_device")  # meta tensors need the reference backend
            common_int = ["nonpositive", "huge", "past_int64", "non_int"]
            t.append(Target(f"hanet.ops.width_pool[{backend}]", "api", backend, "width_pool",
                            tensor_cats + common_int + ["mode", "backend"]))
            t.append(Target(f"hanet.ops.height_interp[{backend}]", "api", backend, "height_interp",
                            tensor_cats + common_int + ["backend"]))
            t.append(Target(f"hanet.ops.attention_rescale[{backend}]", "api", backend,
                            "attention_rescale",
                            tensor_cats + ["batch", "channel", "mixed_dtype", "mixed_device", "backend"]))
        for ns in ("hanet", "hanet_triton"):
            if ns == "hanet_triton" and "triton" not in self.backends:
                continue
            if ns == "hanet" and "cpu" not in self.backends:
                continue
            size_cats = ["nonpositive", "huge", "past_int64", "non_int"]
            tensor_cats = ["rank", "dtype", "empty", "not_tensor"]
            t.append(Target(f"{ns}.width_pool", "raw", ns, "width_pool", tensor_cats + size_cats + ["mode"]))
            wpb = tensor_cats + size_cats + ["mode", "flag", "indices_dtype", "indices_shape", "mixed_device"]
            if ns == "hanet":
                # data-dependent (checked by the C++ CPU kernel), and the one that used to
                # write out of bounds: drawn four times as often
                wpb += ["indices_range"] * 4
            t.append(Target(f"{ns}.width_pool_backward", "raw", ns, "width_pool_backward", wpb))
            t.append(Target(f"{ns}.height_interp", "raw", ns, "height_interp", tensor_cats + size_cats))
            t.append(Target(f"{ns}.height_interp_backward", "raw", ns, "height_interp_backward",
                            tensor_cats + size_cats))
            t.append(Target(f"{ns}.attention_rescale", "raw", ns, "attention_rescale",
                            tensor_cats + ["batch", "channel", "mixed_dtype", "mixed_device"]))
            t.append(Target(f"{ns}.attention_rescale_backward", "raw", ns, "attention_rescale_backward",
                            tensor_cats + ["batch", "channel", "mixed_dtype", "mixed_device", "grad_shape"]))
        return t

    # ---- one call --------------------------------------------------------------

    def call(self, index: int) -> Call:
        self.zero_stride = False
        target = self.rng.choice(self.targets)
        category = self.rng.choice(target.categories)
        fn, needles, detail = getattr(self, f"_{target.op}")(target, category)
        label = f"#{index} {target.name} {category}: {detail}"
        if target.kind == "raw":
            backend = "cpu" if target.ns == "hanet" else "triton"
        else:  # the public op on CPU tensors: the default backend is the C++ one
            backend = target.ns or ("cpu" if "cpu" in self.backends else "reference")
        return Call(label, category, fn, tuple(needles), self.zero_stride, backend)

    def _dtype(self):
        return self.rng.choice(FLOATS)

    def _int_value(self, category: str, kind: str):
        """An invalid value for an int argument, and the words its error must contain."""
        if category == "nonpositive":
            return self.rng.choice(NONPOSITIVE), [">= 1"]
        if category == "huge":
            return self.rng.choice(HUGE), ["allocate", "overflow", "memory"]
        if category == "past_int64":
            return self.rng.choice(PAST_INT64), ["int", "overflow", ">= 1"]
        values = [2.5, 2.0, "4", None, [4], 1j, float("nan"), float("inf")]
        if kind == "api":
            values += [True, False]  # the public ops reject bools (the schema's SymInt takes them)
        return self.rng.choice(values), ["int"]

    def _api(self, target):
        import hanet.ops as hops

        return getattr(hops, target.op), target.ns

    def _raw(self, target):
        torch = self.torch
        if target.ns == "hanet_triton":
            import hanet.ops as hops

            return getattr(hops.dispatch.triton_ops(), target.op)
        return getattr(torch.ops.hanet, target.op)

    def _tensor_arg(self, category, ndim, shape, dtype, name, kind, backend):
        """(tensor or other value, needles) for a tensor argument broken by `category`."""
        if category == "rank":
            return self.other_rank(ndim, dtype), [f"{ndim}-D", "shape"]
        if category == "dtype":
            return self.tensor(shape, self.rng.choice(INT_DTYPES)), ["float32", "dtype"]
        if category == "empty":
            return self.empty_like_shape(shape, dtype), ["empty", "shape"]
        if category == "not_tensor":
            return self.not_tensor(), ["tensor"]
        if category == "meta_device":
            return self.tensor(shape, dtype, device="meta"), ["meta", "device"]
        raise AssertionError(category)

    # width_pool(x, rows, mode[, backend])
    def _width_pool(self, target, category):
        B, C, H, W = self.dims(4)
        dtype = self._dtype()
        x = self.tensor([B, C, H, W], dtype)
        rows = self.rng.randint(1, 6)
        mode = self.rng.choice(["mean", "max"])
        backend = target.ns if target.kind == "api" else None
        needles = []
        if category in ("rank", "dtype", "empty", "not_tensor", "meta_device"):
            x, needles = self._tensor_arg(category, 4, [B, C, H, W], dtype, "x", target.kind, backend)
        elif category in ("nonpositive", "huge", "past_int64", "non_int"):
            rows, needles = self._int_value(category, target.kind)
            needles = needles + ["rows"]
        elif category == "mode":
            mode, needles = self.rng.choice(BAD_MODES), ["mode"]
        elif category == "backend":
            backend, needles = self.rng.choice(BAD_BACKENDS), ["backend"]
        else:
            raise AssertionError(category)
        detail = f"x={_describe(x)}, rows={rows!r}, mode={mode!r}"
        if target.kind == "api":
            op, _ = self._api(target)
            return (lambda: op(x, rows, mode, backend=backend)), needles, detail + f", backend={backend!r}"
        op = self._raw(target)
        return (lambda: op(x, rows, mode)), needles, detail

    # height_interp(a, size[, backend])
    def _height_interp(self, target, category):
        B, C, h = self.dims(3)
        dtype = self._dtype()
        a = self.tensor([B, C, h], dtype)
        size = self.rng.randint(1, 9)
        backend = target.ns if target.kind == "api" else None
        if category in ("rank", "dtype", "empty", "not_tensor", "meta_device"):
            a, needles = self._tensor_arg(category, 3, [B, C, h], dtype, "a", target.kind, backend)
        elif category in ("nonpositive", "huge", "past_int64", "non_int"):
            size, needles = self._int_value(category, target.kind)
            needles = needles + ["size"]
        elif category == "backend":
            backend, needles = self.rng.choice(BAD_BACKENDS), ["backend"]
        else:
            raise AssertionError(category)
        detail = f"a={_describe(a)}, size={size!r}"
        if target.kind == "api":
            op, _ = self._api(target)
            return (lambda: op(a, size, backend=backend)), needles, detail + f", backend={backend!r}"
        op = self._raw(target)
        return (lambda: op(a, size)), needles, detail

    # height_interp_backward(grad, in_size)
    def _height_interp_backward(self, target, category):
        B, C, size = self.dims(3)
        dtype = self._dtype()
        grad = self.tensor([B, C, size], dtype)
        in_size = self.rng.randint(1, 9)
        if category in ("rank", "dtype", "empty", "not_tensor"):
            grad, needles = self._tensor_arg(category, 3, [B, C, size], dtype, "grad", "raw", None)
        else:
            in_size, needles = self._int_value(category, "raw")
            needles = needles + ["in_size"]
        op = self._raw(target)
        return (lambda: op(grad, in_size)), needles, f"grad={_describe(grad)}, in_size={in_size!r}"

    # width_pool_backward(grad, indices, height, width, mode, channels_last)
    def _width_pool_backward(self, target, category):
        torch = self.torch
        B, C, H, W = self.dims(4)
        rows = self.rng.randint(1, 6)
        dtype = self._dtype()
        mode = self.rng.choice(["mean", "max"])
        grad = self.tensor([B, C, rows], dtype)

        def valid_indices():
            # the arg-max of a real forward: an element of each bin
            x = torch.randn(B, C, H, W)
            return torch.ops.aten.adaptive_max_pool2d(x, [rows, 1])[1].squeeze(-1)

        indices = valid_indices() if mode == "max" else torch.empty(0, dtype=torch.long)
        height, width, channels_last = H, W, self.rng.random() < 0.5
        if category in ("rank", "dtype", "empty", "not_tensor"):
            grad, needles = self._tensor_arg(category, 3, [B, C, rows], dtype, "grad", "raw", None)
        elif category in ("nonpositive", "huge", "past_int64", "non_int"):
            value, needles = self._int_value(category, "raw")
            which = self.rng.choice(["height", "width"])
            if which == "height":
                height = value
            else:
                width = value
            if category == "huge" and mode == "max":
                mode = "mean"  # max mode would first reject the indices (outside the huge bins)
                indices = torch.empty(0, dtype=torch.long)
            needles = needles + [which, "height and width"]
        elif category == "mode":
            mode, needles = self.rng.choice(BAD_MODES), ["mode"]
        elif category == "flag":
            # (the schema's bool also takes numbers and None)
            channels_last, needles = self.rng.choice(["yes", [True], "False", (1,)]), ["bool", "channels_last"]
        elif category == "indices_dtype":
            mode = "max"
            indices = valid_indices().to(getattr(torch, self.rng.choice(["int32", "int16", "float32", "uint8", "bool"])))
            needles = ["int64"]
        elif category == "indices_shape":
            mode = "max"
            shape = self.rng.choice([self.other_shape([B, C, rows]), [B, C], [B, C, rows, 1], [0]])
            indices = self.tensor(shape, "int64")
            needles = ["indices shape"]
        elif category == "indices_range":
            mode = "max"
            indices = valid_indices()
            bad = self.rng.choice(["negative", "past_end", "huge", "other_bin", "expanded"])
            flat = indices.view(-1)
            k = self.rng.randrange(flat.numel())
            if bad == "negative":
                flat[k] = self.rng.choice([-1, -W, -(2**40), -(2**63)])
            elif bad == "past_end":
                flat[k] = H * W + self.rng.randint(0, 3 * W)
            elif bad == "huge":
                flat[k] = self.rng.choice([2**31, 2**32 + 1, 2**62, 2**63 - 1])
            elif bad == "other_bin":
                # an element of the plane but outside bin i's rows (needs a row outside it)
                i = k % rows
                y0, y1 = (i * H) // rows, -((-(i + 1) * H) // rows)
                outside = [y for y in range(H) if y < y0 or y >= y1]
                flat[k] = (outside[0] * W if outside else H * W + 1) + self.rng.randrange(W)
            else:  # one out-of-range value broadcast (zero strides) over (B, C, rows)
                indices = torch.tensor(self.rng.choice([-5, H * W, 2**62])).expand(B, C, rows)
                self.zero_stride = True
            needles = ["indices"]
        elif category == "mixed_device":
            if self.rng.random() < 0.5:
                grad = self.tensor([B, C, rows], dtype, device="meta")
            else:
                indices = indices.to("meta")
            needles = ["device"]
        else:
            raise AssertionError(category)
        op = self._raw(target)
        detail = (f"grad={_describe(grad)}, indices={_describe(indices)}, height={height!r}, "
                  f"width={width!r}, mode={mode!r}, channels_last={channels_last!r}")
        return (lambda: op(grad, indices, height, width, mode, channels_last)), needles, detail

    def _rescale_args(self, category):
        B, C, H, W = self.dims(4)
        h = self.rng.randint(1, 6)
        dtype = self._dtype()
        feat = self.tensor([B, C, H, W], dtype)
        logits = self.tensor([B, C, h], dtype)
        which = self.rng.choice(["feat", "logits"])
        needles = []
        if category in ("rank", "dtype", "empty", "not_tensor", "meta_device"):
            if which == "feat":
                feat, needles = self._tensor_arg(category, 4, [B, C, H, W], dtype, "feat", "", None)
            else:
                logits, needles = self._tensor_arg(category, 3, [B, C, h], dtype, "logits", "", None)
        elif category == "batch":
            logits = self.tensor([self.rng.choice([n for n in range(1, 6) if n != B]), C, h], dtype)
            needles = ["batch"]
        elif category == "channel":
            logits = self.tensor([B, self.rng.choice([n for n in range(1, 6) if n != C]), h], dtype)
            needles = ["channel"]
        elif category == "mixed_dtype":
            other = self.rng.choice([d for d in FLOATS if d != dtype])
            if which == "feat":
                feat = feat.to(getattr(self.torch, other))
            else:
                logits = logits.to(getattr(self.torch, other))
            needles = ["same dtype"]
        elif category == "mixed_device":
            if which == "feat":
                feat = self.tensor([B, C, H, W], dtype, device="meta")
            else:
                logits = self.tensor([B, C, h], dtype, device="meta")
            needles = ["same device"]
        return feat, logits, dtype, needles

    # attention_rescale(feat, logits[, backend])
    def _attention_rescale(self, target, category):
        backend = target.ns if target.kind == "api" else None
        if category == "backend":
            feat, logits, _, _ = self._rescale_args("none")
            backend, needles = self.rng.choice(BAD_BACKENDS), ["backend"]
        else:
            feat, logits, _, needles = self._rescale_args(category)
            if category == "meta_device":
                feat, logits = feat.to("meta"), logits.to("meta") if isinstance(logits, self.torch.Tensor) else logits
        detail = f"feat={_describe(feat)}, logits={_describe(logits)}"
        if target.kind == "api":
            op, _ = self._api(target)
            return (lambda: op(feat, logits, backend=backend)), needles, detail + f", backend={backend!r}"
        op = self._raw(target)
        return (lambda: op(feat, logits)), needles, detail

    # attention_rescale_backward(grad, feat, logits)
    def _attention_rescale_backward(self, target, category):
        torch = self.torch
        if category == "grad_shape":
            feat, logits, dtype, _ = self._rescale_args("none")
            grad = self.rng.choice([
                self.tensor(self.other_shape(list(feat.shape)), dtype),
                self.tensor(list(feat.shape[:3]), dtype),
                self.tensor(list(feat.shape) + [1], dtype),
            ])
            needles = ["grad shape", "4-D"]
        elif category in ("rank", "dtype", "empty", "not_tensor") and self.rng.random() < 0.4:
            # break grad instead of feat/logits
            feat, logits, dtype, _ = self._rescale_args("none")
            grad, needles = self._tensor_arg(category, 4, list(feat.shape), dtype, "grad", "raw", None)
            if category == "not_tensor":
                needles = ["tensor"]
            elif category == "dtype":
                needles = ["same dtype", "float32"]
            else:
                needles = ["grad shape", "4-D", "empty"]
        else:
            feat, logits, dtype, needles = self._rescale_args(category)
            if isinstance(feat, torch.Tensor) and feat.device.type != "meta":
                grad = self.tensor(list(feat.shape), dtype)
            else:
                grad = self.tensor([2, 2, 2, 2], dtype)
            if isinstance(feat, torch.Tensor) and category in ("rank", "dtype", "empty"):
                needles = needles + ["grad shape", "same dtype"]
            if category == "mixed_device" and self.rng.random() < 0.3:
                grad = grad.to("meta")  # one more tensor on meta; still mixed with a CPU one
        op = self._raw(target)
        detail = f"grad={_describe(grad)}, feat={_describe(feat)}, logits={_describe(logits)}"
        return (lambda: op(grad, feat, logits)), needles, detail


def _describe(v) -> str:
    import torch

    if isinstance(v, torch.Tensor):
        zero = any(s == 0 and n > 1 for s, n in zip(v.stride(), v.shape))
        return (f"Tensor{tuple(v.shape)}:{str(v.dtype).replace('torch.', '')}"
                f"{'@' + v.device.type if v.device.type != 'cpu' else ''}{':zero-stride' if zero else ''}")
    r = repr(v)
    return r if len(r) < 40 else r[:37] + "..."


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------


def judge(call: Call) -> tuple[str, str | None]:
    """(exception type name or "none", failure description or None)."""
    try:
        call.fn()
    except ACCEPTED as exc:
        msg = str(exc).strip()
        name = type(exc).__name__
        if not msg:
            return name, "empty error message"
        low = msg.lower()
        if not any(n.lower() in low for n in call.needles):
            return name, f"message does not name the problem (wants one of {list(call.needles)}): {msg[:300]!r}"
        return name, None
    except BaseException as exc:  # noqa: BLE001  (any other type is a failure)
        return type(exc).__name__, f"raised {type(exc).__name__} (not TypeError/ValueError/RuntimeError/IndexError): {str(exc)[:300]!r}"
    return "none", "no exception: the invalid call was accepted"


def limit_address_space(gib: int) -> None:
    """Caps this process's address space, so that huge allocations fail at once instead
    of overcommitting (and then touching) terabytes."""
    try:
        import resource

        limit = gib << 30
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass


def run(calls: int, seed: int, progress_path: str | None) -> dict:
    import torch  # noqa: F401

    import hanet.ops as hops

    backends = hops.available_backends("cpu")
    gen = Generator(seed, backends)
    by_type, by_category, reached, failures = Counter(), Counter(), Counter(), []
    zero_stride = 0
    progress = open(progress_path, "w", buffering=1) if progress_path else None
    t0 = time.perf_counter()
    for i in range(calls):
        call = gen.call(i)
        if progress:
            progress.write(call.label + "\n")
        exc_type, problem = judge(call)
        by_type[exc_type] += 1
        by_category[call.category] += 1
        reached[call.backend] += 1
        zero_stride += call.zero_stride
        if problem is not None:
            failures.append({"call": call.label, "problem": problem})
    if progress:
        progress.close()
    return {
        "seed": seed,
        "calls": calls,
        "backends": backends,
        # the backend whose code each call reached (raw hanet ops: the C++ "cpu" kernels)
        "backends_reached": dict(sorted(reached.items())),
        "hanet": os.path.dirname(os.path.realpath(hops.__file__)),
        "raised": calls - by_type.get("none", 0),
        "exceptions_by_type": dict(sorted(by_type.items())),
        "calls_by_category": dict(sorted(by_category.items())),
        "calls_with_zero_stride_tensors": zero_stride,
        "targets": [t.name for t in gen.targets],
        "failures": failures,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", required=True, help="JSON summary written here")
    p.add_argument("--progress", default=None, help="each call's label written here first")
    p.add_argument("--address-space-gib", type=int, default=64)
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_INTERPRET", "1")  # the triton backend on CPU tensors
    limit_address_space(args.address_space_gib)
    summary = run(args.calls, args.seed, args.progress)
    with open(args.summary, "w") as f:
        json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    # the checkout, for a run without the package installed (PYTHONPATH still wins)
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
