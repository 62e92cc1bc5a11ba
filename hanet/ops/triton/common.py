"""Shared pieces of the Triton backend: device helpers used by several ops' kernels,
the launch-plan types and planning rules, and the launcher that runs a plan.

The kernels are pure Triton (no libdevice / ``tl.extra`` calls), so they run under
the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors) as well as on GPUs.
Every index rule is the one of ``csrc/common/hanet_math.h`` (PyTorch's own rules):

* adaptive bins: bin ``i`` of ``out`` bins over ``in`` rows is
  ``[floor(i*in/out), ceil((i+1)*in/out))``; the bins that contain row ``h`` are
  ``[floor(h*out/in), ceil((h+1)*out/in))``;
* linear taps (align_corners=False): ``scale = in/out`` (correctly rounded),
  ``src = max(scale*(dst+0.5)-0.5, 0)``, ``i0 = min(int(src), in-1)``,
  ``i1 = i0+1 if i0 < in-1 else i0``, ``w1 = min(src-i0, 1)``, ``w0 = 1-w1``; when
  ``in == out`` a copy: ``i0 = i1 = dst``, ``w1 = 0`` (no neighbour's NaN leaks in);
* sigmoid ``1/(1+exp(-x))``;
* max pooling scans rows then columns and takes a new maximum when the value is
  strictly greater or NaN (first occurrence of the max, last NaN).

Arithmetic is fp32 for fp32/fp16/bf16 tensors and fp64 for fp64 tensors (the ``ACC``
constexpr every kernel gets from its plan).  Offsets that can exceed 2**31 are int64
(program ids are widened before they multiply a size).

Launch plans: every launcher gets its kernels, grids, block sizes (constexprs) and
``num_warps`` from a ``plan_*`` function of its op's module, which depends only on
shapes, dtypes and the memory layout, never on the GPU (so results are the same on
every GPU model).  :class:`Launch` can turn a planned launch into the
``(signature, constexprs, attrs)`` triple of ``triton.compiler.ASTSource`` with
Triton's own runtime specialisation, so the ahead-of-time test compiles exactly what
the launchers run.

Specialisation: Triton compiles a variant per integer argument that is 1 or a multiple
of 16.  Integer arguments that only bound loops or masks, or scale with the batch
(``R``, ``NSEG``, ``BH``, ``B``, loop counts, split sizes, partial strides) are
``do_not_specialize``, so a new batch size or split does not compile the kernel again;
the sizes that enter addresses (``W``, ``C``, ``H``, ``h_in``, ``size``,
``w_per_split``, ``N``) keep the divisibility that lets loads vectorise.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

# Note: in the interpreter every call of a @triton.jit helper costs milliseconds (it
# re-patches triton.language), so the helpers below are self-contained and hot loops
# inline their arithmetic instead of calling helpers.


@triton.jit
def mean_div(acc, kh, W):
    """sum / kh / kw, in this order (as PyTorch's adaptive average pooling), correctly
    rounded (``/`` on fp32 lowers to an approximate division on GPUs)."""
    if acc.dtype == tl.float64:
        return acc / kh.to(tl.float64) / tl.cast(W, tl.float64)
    else:
        return tl.div_rn(tl.div_rn(acc, kh.to(tl.float32)), tl.cast(W, tl.float32))


@triton.jit
def interp_scale(in_size, out_size, ACC: tl.constexpr):
    """in_size / out_size, correctly rounded in ACC (PyTorch's linear-interp scale)."""
    if ACC == tl.float64:
        return tl.cast(in_size, tl.float64) / tl.cast(out_size, tl.float64)
    else:
        return tl.div_rn(tl.cast(in_size, tl.float32), tl.cast(out_size, tl.float32))


@triton.jit
def linear_tap_scaled(dst, in_size, out_size, scale, ACC: tl.constexpr):
    """linear_tap with ``scale`` = interp_scale(in_size, out_size) given (hoisted out of loops)."""
    src = tl.maximum(scale * (dst.to(ACC) + 0.5) - 0.5, 0.0)
    i0 = tl.minimum(src.to(tl.int32), in_size - 1)  # src >= 0: truncation is floor
    lam = tl.minimum(src - i0.to(ACC), 1.0)
    # in == out copies (PyTorch's rule): i0 = i1 = dst, so no neighbour leaks in.
    same = in_size == out_size
    i0 = tl.where(same, dst, i0)
    lam = tl.where(same, 0.0, lam)
    i1 = tl.where((i0 < in_size - 1) & (in_size != out_size), i0 + 1, i0)
    return i0, i1, 1.0 - lam, lam


@triton.jit
def linear_tap(dst, in_size, out_size, ACC: tl.constexpr):
    """PyTorch's linear, align_corners=False taps of output index ``dst``:
    (i0, i1, w0, w1)."""
    return linear_tap_scaled(dst, in_size, out_size, interp_scale(in_size, out_size, ACC), ACC)


@triton.jit
def split_rows(pid, n_mid, H, BLOCK_R: tl.constexpr):
    """Program ``pid`` of an NCHW grid ordered (row block, mid): rows
    (pid // n_mid)*BLOCK_R + [0, BLOCK_R) of the tensor seen as (B*C*H, W), as their
    int64 index, (b*C + c) (int64) and h (int32), and mid (a width block or split).
    One int64 division per program; the per-row split is int32 (cheap, few registers)."""
    r0 = (pid // n_mid).to(tl.int64) * BLOCK_R
    bc0 = r0 // H
    t = (r0 - bc0 * H).to(tl.int32) + tl.arange(0, BLOCK_R)
    q = t // H
    return r0 + tl.arange(0, BLOCK_R), bc0 + q, t - q * H, pid % n_mid


@triton.jit
def attention(logits_ptr, lrow, hh, h_in, H, mask, ACC: tl.constexpr):
    """A at output row ``hh`` of logits row ``lrow``: interp(sigmoid(logits), H)[hh],
    sigmoid first (1 / (1 + exp(-x))), then the linear taps of linear_tap.

    ``lrow`` (int64, index of the (b, c) logits row) and ``hh`` broadcast together.
    """
    i0, i1, w0, w1 = linear_tap(hh, h_in, H, ACC)
    base = lrow * h_in
    l0 = tl.load(logits_ptr + (base + i0), mask=mask, other=0.0).to(ACC)
    l1 = tl.load(logits_ptr + (base + i1), mask=mask, other=0.0).to(ACC)
    s0 = 1.0 / (1.0 + tl.exp(-l0))
    s1 = 1.0 / (1.0 + tl.exp(-l1))
    return w0 * s0 + w1 * s1


@triton.jit
def feat_dot_from_result(dot, a):
    """sum grad * feat from sum grad * out (out = feat * A, A > 0): dot / A, or dot where
    A is 0 (csrc/common/hanet_math.h feat_dot_from_result; the inner where keeps the
    interpreter from evaluating 0 / 0)."""
    return tl.where(a > 0, dot / tl.where(a > 0, a, 1.0), dot)


@triton.jit
def row_tile(pid, R, N, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program ``pid`` of a (R, N) grid of BLOCK_R x BLOCK_N tiles (N fastest): its
    rows (int64), columns, and their masks."""
    n_blk = tl.cdiv(N, BLOCK_N)
    rows = (pid // n_blk).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = (pid % n_blk) * BLOCK_N + tl.arange(0, BLOCK_N)
    return rows, cols, rows < R, cols < N


@triton.jit
def nhwc_program(pid, C, n_mid, BLOCK_C: tl.constexpr):
    """Program ``pid`` of a channels_last grid ordered (row block, mid, channel block):
    (row block (int64), mid (a width block or split), channels, channel mask)."""
    n_cblk = tl.cdiv(C, BLOCK_C)
    t = pid // n_cblk
    c = (pid % n_cblk) * BLOCK_C + tl.arange(0, BLOCK_C)
    return (t // n_mid).to(tl.int64), t % n_mid, c, c < C


@triton.jit
def nhwc_rows(hb, BH, H, C, c, BLOCK_H: tl.constexpr):
    """Rows (b, h) hb*BLOCK_H + [0, BLOCK_H) of a channels_last tensor: bh (int64),
    a row mask, h (int64) and the logits rows b*C + c ([BLOCK_H, BLOCK_C], int64)."""
    bh = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    b = bh // H
    return bh, bh < BH, bh - b * H, b[:, None] * C + c[None, :]


_TRITON_PTR = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.float64: "*fp64",
    torch.int64: "*i64",
}

# Programs wanted for a launch whose parallelism we can choose (splits of a
# reduction): about 16 per SM of a 132-SM H100.
TARGET_PROGRAMS = 2048


@dataclass(frozen=True, eq=False)
class Launch:
    """One kernel launch: pointer arguments name tensors (``ptrs[arg] = (role, dtype)``)
    that the launcher supplies by role; everything else is fixed by the plan.

    Built once per plan (plans are cached): the positional argument list of the kernel
    (``template``, with ``None`` at the pointer positions that ``slots`` fills by role
    at each call) is computed here, so a launch binds no keywords and plans nothing."""

    kernel: Any
    grid: Tuple[int, ...]
    ptrs: Dict[str, Tuple[str, torch.dtype]]
    scalars: Dict[str, int]
    constexprs: Dict[str, Any]
    num_warps: int
    template: Tuple[Any, ...] = field(init=False, repr=False)
    slots: Tuple[Tuple[int, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        template: List[Any] = []
        slots: List[Tuple[int, str]] = []
        for i, arg in enumerate(self.kernel.arg_names):
            if arg in self.ptrs:
                template.append(None)
                slots.append((i, self.ptrs[arg][0]))
            elif arg in self.scalars:
                template.append(int(self.scalars[arg]))
            elif arg in self.constexprs:
                template.append(self.constexprs[arg])
            else:  # pragma: no cover - a planning bug
                raise RuntimeError(f"{self.name}: no value planned for argument {arg!r}")
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "template", tuple(template))
        object.__setattr__(self, "slots", tuple(slots))

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__ if hasattr(self.kernel, "fn") else str(self.kernel)

    def args(self, tensors: Dict[str, torch.Tensor]) -> List[Any]:
        """The kernel's arguments in order (positional launch)."""
        args = list(self.template)
        for i, role in self.slots:
            args[i] = tensors[role]
        return args

    def kwargs(self, tensors: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        """The kernel's arguments by name (the traced launch: wrap_triton records them
        by name)."""
        return dict(zip(self.kernel.arg_names, self.args(tensors)))

    def aot_source(self) -> Tuple[Dict[str, str], Dict[str, Any], Dict[Tuple[int], list]]:
        """(signature, constexprs, attrs) for ``triton.compiler.ASTSource``, specialised
        the way Triton's runtime specialises this launch (tensor pointers assumed
        16-byte aligned, as PyTorch allocations are)."""
        signature: Dict[str, str] = {}
        constexprs: Dict[str, Any] = dict(self.constexprs)
        attrs: Dict[Tuple[int], list] = {}
        div16 = [["tt.divisibility", 16]]
        for i, p in enumerate(self.kernel.params):
            arg = p.name
            if p.is_constexpr:
                signature[arg] = "constexpr"
                if arg not in constexprs:  # pragma: no cover
                    raise RuntimeError(f"{self.name}: constexpr {arg!r} not planned")
            elif arg in self.ptrs:
                signature[arg] = _TRITON_PTR[self.ptrs[arg][1]]
                attrs[(i,)] = div16
            else:
                v = int(self.scalars[arg])
                if v == 1 and not p.do_not_specialize:
                    signature[arg] = "constexpr"
                    constexprs[arg] = 1
                    continue
                signature[arg] = "i32" if -(2**31) <= v < 2**31 else "i64"
                if v % 16 == 0 and not p.do_not_specialize and not p.do_not_specialize_on_alignment:
                    attrs[(i,)] = div16
        return signature, constexprs, attrs


@dataclass(frozen=True, eq=False)
class Plan:
    """Launches in order, and the temporaries (role -> (shape, dtype)) they need."""

    launches: List[Launch]
    temps: Dict[str, Tuple[Tuple[int, ...], torch.dtype]] = field(default_factory=dict)
    temp_list: Tuple[Tuple[str, Tuple[int, ...], torch.dtype], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "launches", tuple(self.launches))
        object.__setattr__(self, "temp_list", tuple((r, tuple(s), d) for r, (s, d) in self.temps.items()))


# ----------------------------------------------------------------------------
# Plan caches
# ----------------------------------------------------------------------------

#: Plans kept per planning function (least recently used ones dropped beyond).
PLAN_CACHE_SIZE = 512
_PLAN_FUNCTIONS: Dict[str, Any] = {}


def cached_plan(fn):
    """A ``plan_*`` function, cached (``functools.lru_cache``) on its arguments: sizes,
    mode, dtype, layout.  Plans depend on nothing else (not on the GPU), so one plan
    serves every call with those arguments; ``fn.cache_info()`` counts the plans built
    (misses)."""
    cached = functools.lru_cache(maxsize=PLAN_CACHE_SIZE)(fn)
    _PLAN_FUNCTIONS[fn.__name__] = cached
    return cached


class CallCache:
    """What one op decided for a call signature: key (every input tensor's shape,
    strides, dtype and device, and the op's other arguments) -> :class:`Call`.

    The key holds everything the op contract's argument checks and the launcher's
    choices (layout, plan, outputs) read, so a call whose key is here passed the
    checks before and is launched without checking or planning again.  Only plain
    tensors on a device the kernels run on are cached (fake, functional or meta tensors
    take the full path: their shapes may be symbolic, nothing is launched).  Bounded:
    beyond ``maxsize`` signatures the oldest is dropped."""

    def __init__(self, op: str, maxsize: int = PLAN_CACHE_SIZE):
        self.op = op
        self.maxsize = maxsize
        self.entries: Dict[Any, "Call"] = {}
        self.builds = 0
        self._lock = threading.Lock()
        _CALL_CACHES[op] = self

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, call: "Call") -> None:
        if key is None or call.device.type == "meta":
            return
        with self._lock:
            self.builds += 1
            if len(self.entries) >= self.maxsize:
                self.entries.pop(next(iter(self.entries)), None)
            self.entries[key] = call

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def info(self) -> Dict[str, int]:
        return {"entries": len(self.entries), "builds": self.builds, "maxsize": self.maxsize}


_CALL_CACHES: Dict[str, CallCache] = {}


class Call:
    """One call signature's launch: its plan (None: an empty batch, nothing to launch),
    its outputs' (size, stride, dtype), its device, and per-op flags (e.g. whether an
    input needs a copy to a dense layout)."""

    __slots__ = ("plan", "outs", "device", "flags")

    def __init__(self, plan: "Plan | None", outs, device: torch.device, flags: Tuple = ()):
        self.plan = plan
        self.outs = tuple((tuple(t.shape), tuple(t.stride()), t.dtype) for t in outs)
        self.device = device
        self.flags = flags

    def outputs(self) -> List[Tensor]:
        dev = self.device
        return [torch.empty_strided(size, stride, dtype=dtype, device=dev)
                for size, stride, dtype in self.outs]


def plan_cache_info() -> Dict[str, Dict[str, int]]:
    """Statistics of the plan caches (``plan_*`` functions: hits, misses = plans built,
    current size) and of the per-op call caches (entries, builds)."""
    out: Dict[str, Dict[str, int]] = {}
    for name, fn in _PLAN_FUNCTIONS.items():
        ci = fn.cache_info()
        out[name] = {"hits": ci.hits, "misses": ci.misses, "currsize": ci.currsize,
                     "maxsize": ci.maxsize}
    for op, cache in _CALL_CACHES.items():
        out[f"call:{op}"] = cache.info()
    return out


def clear_plan_caches() -> None:
    for fn in _PLAN_FUNCTIONS.values():
        fn.cache_clear()
    for cache in _CALL_CACHES.values():
        cache.clear()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def tile_elems(dtype: torch.dtype) -> int:
    """Elements of a streaming tile: 16 KiB of data (4096 fp32, 8192 fp16/bf16)."""
    itemsize = dtype.itemsize
    return max(1024, min(8192, 16384 // itemsize))


def warps(tile: int) -> int:
    return 8 if tile >= 4096 else 4


def pick_block(n: int, hi: int, lo: int = 16, single: float = 0.5) -> int:
    """Power-of-two block for a dimension of size n: one block covering n when that
    keeps at least ``single`` of the lanes busy, else the largest block in [lo, hi]
    that keeps >= 75% busy over ceil(n/block) blocks (lo if none)."""
    n = int(n)
    p = next_pow2(n)
    if p <= hi and n / p >= single:
        return p
    best = lo
    b = lo
    while b <= hi:
        if n / (cdiv(n, b) * b) >= 0.75:
            best = b
        b *= 2
    return min(best, p)


def rows_block(tile: int, block_w: int, n_rows: int) -> int:
    return max(1, min(tile // block_w, next_pow2(n_rows)))


def nhwc_blocks(tile: int, C: int, W: int, n_rows: int, c_hi: int = 256) -> Tuple[int, int, int]:
    """(BLOCK_H, BLOCK_W, BLOCK_C) of a channels_last tile: channels first, then pixels
    of one row, then, only when a whole row fits, several rows (short rows)."""
    bc = pick_block(C, c_hi, lo=16)
    bw = rows_block(tile, bc, W)
    bh = 1
    if bw >= W:
        bh = max(1, min(tile // (bc * bw), next_pow2(n_rows)))
    return bh, bw, bc


def check_layout(layout: str) -> bool:
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f'layout must be "nchw" or "nhwc", got {layout!r}')
    return layout == "nhwc"


def split_extent(extent: int, block: int, programs: int) -> Tuple[int, int]:
    """(per_split, n_split) for a reduction over ``extent`` elements in blocks of
    ``block``, split so that ``programs`` programs per split reach TARGET_PROGRAMS
    (a fixed number: the split, and so the summation order, is the same on every GPU)."""
    n_blk = cdiv(extent, block)
    n_split = max(1, min(n_blk, cdiv(TARGET_PROGRAMS, max(1, programs))))
    per_split = cdiv(n_blk, n_split) * block
    return per_split, cdiv(extent, per_split)


def acc_constexpr(dtype: torch.dtype):
    """The ACC constexpr of a kernel on ``dtype`` tensors (fp64 for fp64, else fp32)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


# ----------------------------------------------------------------------------
# Running a plan
# ----------------------------------------------------------------------------


def _is_interpreted(kernel) -> bool:
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover
        return False
    return isinstance(kernel, InterpretedFunction)


#: True when the kernels run in Triton's interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = _is_interpreted(mean_div)


def layout_of(x: Tensor) -> Tuple[Tensor, str]:
    """(x, "nchw") if contiguous, (x, "nhwc") if channels_last-contiguous (NCHW wins
    when both hold), else (x.contiguous(), "nchw")."""
    if x.is_contiguous():
        return x, "nchw"
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, "nhwc"
    return x.contiguous(), "nchw"


def memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "nhwc" else torch.contiguous_format


def _is_fake(t: Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return t.device.type == "meta" or is_fake(t)


try:  # private: whether wrap_triton records launches (tracing) or is the kernel itself
    from torch._library.triton import is_wrap_triton_enabled as _wrap_enabled
except ImportError:  # pragma: no cover
    def _wrap_enabled() -> bool:
        return True


def launch(plan: Plan, tensors: Dict[str, Tensor], device: torch.device,
           direct: bool = False) -> None:
    """Launches ``plan`` on ``tensors`` (by role), allocating its temporaries.

    In eager mode (``direct``: the op's device kernel of :func:`register_direct`; or
    ``triton_op``'s own kernel, which runs the launcher with ``wrap_triton`` disabled, so
    that ``wrap_triton(k)`` is ``k`` itself) every kernel is launched directly with the
    plan's positional arguments: ``kernel.run(*args, grid=..., warmup=False)``, what
    ``kernel[grid](*args)`` calls.  While tracing (wrap_triton enabled) the launch goes
    through ``wrap_triton`` with the arguments by name, which it records.

    Temporaries (split partial results) are one ``torch.empty`` per call, not a buffer
    kept with the plan: a buffer shared by every call of a plan would be written by two
    calls at once on two streams or threads, and captured into CUDA graphs that replay
    concurrently; the caching allocator makes the allocation cheap."""
    for role, shape, dtype in plan.temp_list:
        tensors[role] = torch.empty(shape, dtype=dtype, device=device)
    if not direct and _wrap_enabled():
        for L in plan.launches:
            wrap_triton(L.kernel)[L.grid](**L.kwargs(tensors), num_warps=L.num_warps)
        return
    for L in plan.launches:
        args = list(L.template)
        for i, role in L.slots:
            args[i] = tensors[role]
        L.kernel.run(*args, grid=L.grid, warmup=False, num_warps=L.num_warps)


def run(plan_fn, shapes: Tuple[int, ...], tensors: Dict[str, Tensor], device: torch.device,
        *plan_args, direct: bool = False) -> "Plan | None":
    """Plans (``plan_fn(*shapes, *plan_args)``, cached) and launches one op's kernels on
    ``tensors`` (by role); returns the plan.  An empty batch launches nothing (its
    outputs are empty already; the plan is None).  The full path of a call that is not
    in its op's call cache (first call of a signature, fake or meta tensors)."""
    if any(int(s) == 0 for s in shapes):
        return None
    plan = plan_fn(*(int(s) for s in shapes), *plan_args)
    if INTERPRETED and any(_is_fake(t) for t in tensors.values()):
        # Fake implementation: outputs are built by the caller, interpreted kernels
        # cannot run on fake tensors (and are not traceable anyway).
        return plan
    launch(plan, tensors, device, direct)
    return plan


# ----------------------------------------------------------------------------
# Argument checks: the op contract, plus where Triton kernels can run
# ----------------------------------------------------------------------------

NAMESPACE = "hanet_triton"


class HanetArgumentError(ValueError, RuntimeError):
    """Invalid argument to a ``hanet_triton`` op (both a ValueError and a RuntimeError,
    the latter like the c10::Error of the C++ ``hanet`` ops)."""


def validate(op: str, *values) -> None:
    """The contract's checks of ``op`` (hanet/ops/contract.py), and tensors on a device
    the kernels run on (CUDA, meta, or CPU under the interpreter)."""
    from .. import contract

    prefix = f"{NAMESPACE}.{op}"
    v = contract.check(op, values, prefix, type_error=HanetArgumentError,
                       value_error=HanetArgumentError)
    if INTERPRETED:
        return
    for name, t in v.items():
        if isinstance(t, Tensor) and t.device.type not in ("cuda", "meta"):
            raise HanetArgumentError(
                f"{prefix}: {name} must be a CUDA tensor, got a tensor on {t.device} (set "
                "TRITON_INTERPRET=1 before importing triton to run the kernels on CPU)")


def outputs(op: str, *values):
    """The op's outputs, allocated as the contract says (shapes, dtypes, layouts)."""
    from .. import contract

    spec = contract.OPS[op]
    return spec.outputs(**spec.bind(values))
