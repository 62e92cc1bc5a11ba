"""Property-based fuzz of the three ops on every backend usable on CPU tensors
(reference, cpu, triton under the interpreter) against the float64 reference.

Hypothesis draws shapes (1-sized dims, H < rows, W = 1, C past the vector widths),
memory layouts (NCHW, channels_last, sliced views, permuted strides, expanded
zero-stride views), dtypes (fp32/fp16/bf16/fp64), value ranges (normal, tiny and
subnormal, huge, mixtures, ties) and inf/NaN placed in the inputs and in the output
gradient.  Each example runs the forward and the gradient of every input, and checks:

* inf/NaN: every element is NaN, +inf, -inf or finite exactly as in the PyTorch
  reference (in float64, or in the op's own dtype where that dtype's intermediate
  rounding under/overflows differently: e.g. eager fp16 rounds sigmoid(-20) to 0
  before it multiplies an inf, the fused kernels keep it in fp32 as the float64
  truth does); at the interpolation taps whose weight is exactly 0 only by rounding,
  any of PyTorch's own roundings (see ROUNDINGS);
* finite elements: the tolerance of tests/op_cases.py (float64 tight; fp32 tight or
  2x eager fp32's error; fp16/bf16 2x eager's error), plus a few subnormal ulps;
* max pooling: values and arg-max indices equal to ``F.adaptive_max_pool2d`` in the
  same dtype (first maximum, last NaN), and gradients through those indices;
* expanded / sliced / permuted inputs give the reference's result, and their
  gradients (w.r.t. the underlying tensor) the reference's gradients;
* cpu backend: the fake (meta) kernels of ``torch.ops.hanet.*`` give the real
  kernels' output shapes, dtypes and strides, forward and backward.

Every (op, backend) runs with its own fixed Hypothesis seed and no example database,
so CI sees the same examples every run.  HANET_FUZZ_SCALE=10 runs ten times the
examples (a deeper local fuzz; the seeds stay fixed), HANET_FUZZ_SEED=<text> another
fixed example set.
"""
from __future__ import annotations

import math
import os
import zlib
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import hanet.ops as hops
from hanet.ops import reference
from hanet.ops.contract import RESCALE_SAVES_OUTPUT
from op_cases import kernel_backends

BACKENDS = kernel_backends()
# numpy's overflow / invalid-value warnings of the Triton interpreter on inf/NaN inputs
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# Examples per (op, backend): the Triton interpreter costs ~10-30 ms per launch.
EXAMPLES = {"reference": 40, "cpu": 600, "triton": 60}
SCALE = float(os.environ.get("HANET_FUZZ_SCALE", "1"))
SEED = os.environ.get("HANET_FUZZ_SEED", "")  # another fixed example set, for local runs
SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Magnitudes per dtype: "huge" stays far enough below the dtype's maximum that no
# product or sum the ops form can overflow (overflow order is not part of the contract);
# "tiny" is subnormal.
HUGE = {torch.float32: 1e30, torch.bfloat16: 1e30, torch.float16: 30.0, torch.float64: 1e200}
TINY = {torch.float32: 1e-40, torch.bfloat16: 1e-40, torch.float16: 1e-6, torch.float64: 1e-310}
# The Triton interpreter converts bfloat16 <-> float32 in numpy bit arithmetic that
# gets subnormals wrong (9e-41 loads as 0; GPUs convert exactly): the triton examples
# keep bfloat16 values normal.
TINY_TRITON_INTERPRETER = {**TINY, torch.bfloat16: 1e-30}
KINDS = ["normal", "tiny", "huge", "mixed", "ties"]
SPECIALS = [math.nan, math.inf, -math.inf]


def _denorm_min(dtype: torch.dtype) -> float:
    fi = torch.finfo(dtype)
    return fi.smallest_normal * fi.eps


# ---------------------------------------------------------------------------
# Inputs: a base tensor (the autograd leaf) and a view of it with the op's shape.
# ---------------------------------------------------------------------------


@st.composite
def layouts(draw, ndim: int, shape):
    """How the op's input of `shape` is laid out: (kind, detail)."""
    kinds = ["contiguous", "sliced", "permuted", "expanded"]
    if ndim == 4:
        kinds.append("channels_last")
    kind = draw(st.sampled_from(kinds))
    if kind == "permuted":
        return kind, tuple(draw(st.permutations(range(ndim))))
    if kind == "expanded":
        # dims that are stored once and broadcast (zero stride)
        return kind, tuple(draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim)))
    if kind == "sliced":
        return kind, tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    return kind, None


@st.composite
def values(draw, max_specials: int = 3):
    """Value recipe: (kind, seed, specials [(position key, inf/NaN)])."""
    kind = draw(st.sampled_from(KINDS))
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(0, max_specials)) if draw(st.booleans()) else 0
    specials = draw(
        st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(SPECIALS)), min_size=n, max_size=n)
    )
    return kind, seed, specials


def _values(shape, dtype, recipe, backend) -> torch.Tensor:
    kind, seed, specials = recipe
    tiny = (TINY_TRITON_INTERPRETER if backend == "triton" else TINY)[dtype]
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "tiny":
        v = v * tiny
    elif kind == "huge":
        v = v * HUGE[dtype]
    elif kind == "mixed":
        scales = torch.tensor([tiny, 1e-3, 1.0, 1e2, HUGE[dtype]], dtype=torch.float64)
        pick = torch.randint(0, len(scales), shape, generator=g)
        v = v * scales[pick]
    elif kind == "ties":
        v = torch.randint(-3, 4, shape, generator=g).to(torch.float64)
    flat = v.view(-1)
    for key, special in specials:
        flat[key % flat.numel()] = special
    return v.to(dtype)


class Input:
    """A leaf tensor and the view of it the op receives."""

    def __init__(self, shape, dtype, layout, recipe, backend):
        kind, detail = layout
        ndim = len(shape)
        if kind == "contiguous" or kind == "channels_last":
            base_shape = shape
        elif kind == "sliced":
            # base[:, ::s] with an offset of one where the dimension allows it
            base_shape = tuple(n * s + (1 if s > 1 else 0) for n, s in zip(shape, detail))
        elif kind == "permuted":
            base_shape = tuple(shape[p] for p in detail)
        else:  # expanded
            base_shape = tuple(1 if e else n for n, e in zip(shape, detail))
        self.kind, self.detail, self.shape = kind, detail, tuple(shape)
        base = _values(base_shape, dtype, recipe, backend)
        if kind == "channels_last":
            base = base.contiguous(memory_format=torch.channels_last)
        self.base = base
        self.ndim = ndim
        # elements of the view that share one element of the base
        self.fanin = math.prod(n // b for n, b in zip(shape, base_shape)) if kind == "expanded" else 1

    def view(self, base: torch.Tensor) -> torch.Tensor:
        if self.kind in ("contiguous", "channels_last"):
            return base
        if self.kind == "sliced":
            idx = tuple(slice(1 if s > 1 else 0, None, s) for s in self.detail)
            return base[idx]
        if self.kind == "permuted":
            inverse = [self.detail.index(i) for i in range(self.ndim)]
            return base.permute(*inverse)
        return base.expand(*self.shape)

    def describe(self) -> str:
        return f"{self.kind}{'' if self.detail is None else self.detail}"


def _leaf(t: torch.Tensor, dtype=None) -> torch.Tensor:
    t = t.detach()
    t = t.to(dtype) if dtype is not None else t.clone(memory_format=torch.preserve_format)
    return t.requires_grad_()


def _run(fn, inputs, g_out, dtype=None):
    """fn on the views of fresh leaves (cast to dtype if given); the output and the
    gradient of every leaf for output gradient g_out."""
    leaves = [_leaf(i.base, dtype) for i in inputs]
    out = fn(*[i.view(l) for i, l in zip(inputs, leaves)])
    g = g_out if dtype is None else g_out.to(dtype)
    grads = torch.autograd.grad(out, leaves, g)
    return out.detach(), [gr.detach() for gr in grads]


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------


def _classes(t: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 NaN, 2 +inf, 3 -inf."""
    c = torch.zeros(t.shape, dtype=torch.int8)
    c[t.isnan()] = 1
    c[t == math.inf] = 2
    c[t == -math.inf] = 3
    return c


def assert_matches(ours, eager, truth, dtype, what, alternatives=(), terms=1):
    """`alternatives`: further references whose inf/NaN placement is also accepted (the
    tap-rounding variants of _interp_variants).  `terms`: how many of the op's rounded
    outputs autograd sums into one element (the gradient of an expanded input), each
    adding up to an ulp of the scale."""
    assert ours.shape == truth.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(truth.shape)}"
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype} != {dtype}"
    o, e, t = ours.double(), eager.double(), truth.double()
    co, ce, ct = _classes(o), _classes(e), _classes(t)
    bad = (co != ct) & (co != ce)
    for alt in alternatives:
        bad &= co != _classes(alt)
    if bad.any():
        i = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(
            f"{what}: inf/NaN placement differs from the reference at {i}: ours {o[i].item()}, "
            f"float64 reference {t[i].item()}, {dtype} reference {e[i].item()} "
            f"({int(bad.sum())} elements)"
        )
    fin = (co == 0) & (ct == 0)
    if not fin.any():
        return
    of, tf = o[fin], t[fin]
    scale = tf.abs().max().item()
    err = (of - tf).abs().max().item()
    efin = fin & (ce == 0)
    eager_err = (e[efin] - t[efin]).abs().max().item() if efin.any() else 0.0
    floor = 8 * _denorm_min(dtype)
    if dtype == torch.float64:
        bound = 1e-10 * scale * terms + floor
    elif dtype == torch.float32:
        bound = max(2e-6 * scale * terms, 2 * eager_err) + floor
    else:
        bound = 2 * eager_err + torch.finfo(dtype).eps * scale * terms + floor
    assert err <= bound, f"{what}: error {err} > {bound} (scale {scale}, {dtype} eager error {eager_err})"


def _check(fn_ours, fn_ref, inputs, g_out, dtype, what, fn_variants=None, fn_truth=None,
           fn_grad_variants=()):
    """fn_variants(rounding): a float64 version of the op with the taps of that rounding
    (see ROUNDINGS); their inf/NaN placements are accepted too.  fn_grad_variants:
    float64 versions whose gradients' inf/NaN placements are accepted too.  fn_truth: the float64
    truth when fn_ours is the reference itself (an independent computation, so that the
    reference is never compared with itself); else fn_ref in float64."""
    ours, ours_g = _run(fn_ours, inputs, g_out)
    eager, eager_g = _run(fn_ref, inputs, g_out)
    truth, truth_g = _run(fn_truth or fn_ref, inputs, g_out, torch.float64)
    variants = []
    if fn_variants is not None:
        for rounding in ROUNDINGS:
            variants.append(_run(fn_variants(rounding), inputs, g_out.double(), torch.float64))
    grad_variants = [_run(f, inputs, g_out.double(), torch.float64)[1] for f in fn_grad_variants]
    assert_matches(ours, eager, truth, dtype, f"{what} forward", [v[0] for v in variants])
    for k, (a, e, t) in enumerate(zip(ours_g, eager_g, truth_g)):
        alternatives = [v[1][k] for v in variants] + [v[k] for v in grad_variants]
        assert_matches(a, e, t, dtype, f"{what} grad of input {k}", alternatives, inputs[k].fanin)
    return ours


# ---------------------------------------------------------------------------
# Tap-rounding variants of linear interpolation
# ---------------------------------------------------------------------------
# Where the source coordinate src = scale*(dst+0.5)-0.5 of an output lands on an input
# row, the output's other tap gets weight exactly 0, and 0 * inf = NaN: whether an
# inf/NaN input leaks into that output hangs on roundings that PyTorch itself does not
# fix.  Its CPU kernels contract the expression into an fma in their AVX2/AVX-512 builds
# but not in the default one (ATEN_CPU_CAPABILITY=default), take floorf(src) (src
# rounded to float), and store the weights in the tensor's dtype (in fp16 a weight of
# 1.5e-8 is 0); its CUDA kernels fma and truncate src in its own type.  The fused kernels
# keep fp32 weights; the cpu backend takes the CPU rules for the coordinate, the Triton
# kernels the CUDA ones, which the interpreter runs without the fma (numpy).  So at
# those points the inf/NaN placement of any of these roundings is accepted (everywhere
# else they all agree, and the finite values are checked against the truth as always).
# A copy (in == out) has no zero-weight tap in any implementation: the kernels must
# never leak a neighbour's inf/NaN there (a bug this fuzz found).
ROUNDINGS = [
    (fused, floor_float, dtype_weights)
    for fused in (False, True)
    for floor_float in (False, True)
    for dtype_weights in (False, True)
]


def _interp_taps(in_size: int, out_size: int, dtype: torch.dtype, rounding):
    """(i0, i1, w0, w1) of PyTorch's linear taps with the given roundings."""
    fused, floor_float, dtype_weights = rounding
    dst = np.arange(out_size)
    if in_size == out_size:  # a copy, in every implementation
        one = np.ones(out_size)
        return dst, dst, one, 0 * one
    t = np.float64 if dtype == torch.float64 else np.float32
    scale = t(in_size) / t(out_size)
    x = dst.astype(t) + t(0.5)
    if not fused:
        src = (scale * x).astype(t) - t(0.5)
    elif t is np.float32:  # a float32 product is exact in float64, and so is - 0.5
        src = (np.float64(scale) * x.astype(np.float64) - 0.5).astype(np.float32)
    else:
        src = np.array(
            [float(Fraction(float(scale)) * Fraction(float(v)) - Fraction(1, 2)) for v in x]
        )
    src = np.maximum(src, t(0))
    i0 = np.floor(src.astype(np.float32)).astype(np.int64) if floor_float else src.astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    lam = np.clip(src - i0.astype(t), t(0), t(1)).astype(np.float64)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    w1 = torch.from_numpy(lam)
    if dtype_weights:
        w1 = w1.to(dtype).double()
        w0 = (1 - w1).to(dtype).double()
    else:
        w0 = torch.from_numpy((t(1) - lam.astype(t)).astype(np.float64))
    return torch.from_numpy(i0), torch.from_numpy(i1), w0, w1


class _TapInterp(torch.autograd.Function):
    """Linear interpolation of the last dim with given taps, and its scatter adjoint."""

    @staticmethod
    def forward(ctx, a, i0, i1, w0, w1):
        ctx.save_for_backward(i0, i1, w0, w1)
        ctx.in_size = a.shape[-1]
        return w0 * a[..., i0] + w1 * a[..., i1]

    @staticmethod
    def backward(ctx, g):
        i0, i1, w0, w1 = ctx.saved_tensors
        ga = g.new_zeros(g.shape[:-1] + (ctx.in_size,))
        ga.index_add_(-1, i0, w0 * g)
        ga.index_add_(-1, i1, w1 * g)
        return ga, None, None, None, None


def _tap_interp(a: torch.Tensor, size: int, dtype: torch.dtype, rounding):
    i0, i1, w0, w1 = _interp_taps(a.shape[-1], size, dtype, rounding)
    if isinstance(i0, np.ndarray):
        i0, i1, w0, w1 = (torch.from_numpy(v) for v in (i0, i1, w0, w1))
    return _TapInterp.apply(a, i0, i1, w0, w1)


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _interp_variants(dtype, size):
    return lambda rounding: (lambda a: _tap_interp(a, size, dtype, rounding))


def _rescale_variants(dtype):
    def make(rounding):
        def fn(feat, logits):
            # sigmoid in the kernels' accumulation type, then interpolated in float64
            s = torch.sigmoid(logits.to(_acc(dtype))).double()
            return feat * _tap_interp(s, feat.shape[2], dtype, rounding).unsqueeze(-1)

        return fn

    return make


# ---------------------------------------------------------------------------
# Independent float64 truths for the reference backend
# ---------------------------------------------------------------------------


def _loop_width_pool(rows: int, mode: str):
    """Adaptive pooling to (rows, 1) written bin by bin from the index rule
    [floor(i*H/rows), ceil((i+1)*H/rows)), not through F.adaptive_*: mean of the bin, or
    the element at PyTorch's arg-max (the last NaN, else the first maximum), picked with
    gather so that its gradient goes to that element only."""

    def fn(x):
        H = x.shape[2]
        outs = []
        for i in range(rows):
            band = x[:, :, (i * H) // rows:-(-(i + 1) * H // rows), :].flatten(2)
            if mode == "mean":
                outs.append(band.mean(-1))
                continue
            pos = torch.arange(band.shape[-1])
            nan = band.isnan()
            last_nan = torch.where(nan, pos, -1).amax(-1)
            first_max = torch.where(nan, -math.inf, band).argmax(-1)  # first occurrence
            idx = torch.where(last_nan >= 0, last_nan, first_max)
            outs.append(band.gather(-1, idx.unsqueeze(-1)).squeeze(-1))
        return torch.stack(outs, -1)

    return fn


def _taps64(size: int):
    return lambda a: _tap_interp(a, size, torch.float64, ROUNDINGS[0])


def _rescale64(feat, logits):
    return feat * _taps64(feat.shape[2])(torch.sigmoid(logits)).unsqueeze(-1)


def _rescale_from_output(feat, logits):
    """The rescale whose backward keeps the output, not feat (fp32 / fp64 on the fused
    backends: csrc/common/hanet_math.h feat_dot_from_result): the logits gradient sees
    feat as out / A (out where A = 0).  Its gradients' inf/NaN placement differs from the
    reference's in one way: a NaN logit makes A and out NaN on its rows, and so the
    gradients of the neighbouring logits that those rows also interpolate from."""
    A = _taps64(feat.shape[2])(torch.sigmoid(logits)).unsqueeze(-1)
    Ad = A.detach()
    out = feat.detach() * Ad
    feat_seen = torch.where(Ad > 0, out / Ad, out)
    return feat * Ad + feat_seen * A - feat_seen * Ad


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


def assert_same_meta(real, fake, what):
    real = real if isinstance(real, (tuple, list)) else (real,)
    fake = fake if isinstance(fake, (tuple, list)) else (fake,)
    for k, (r, f) in enumerate(zip(real, fake)):
        assert f.device.type == "meta", f"{what}[{k}]: fake output on {f.device}"
        assert (tuple(f.shape), f.dtype) == (tuple(r.shape), r.dtype), (
            f"{what}[{k}]: fake {tuple(f.shape)} {f.dtype} != real {tuple(r.shape)} {r.dtype}"
        )
        assert f.stride() == r.stride(), f"{what}[{k}]: fake strides {f.stride()} != real {r.stride()}"


def _grad_out(shape, dtype, recipe, backend):
    # Moderate magnitudes (products with huge inputs must not overflow), with inf/NaN.
    _, seed, specials = recipe
    return _values(shape, dtype, ("normal", seed, specials), backend)


def _describe(**kw):
    return ", ".join(f"{k}={v}" for k, v in kw.items())


# ---------------------------------------------------------------------------
# Strategies per op
# ---------------------------------------------------------------------------


def _dims(backend):
    """(B, C, H, W, rows/h/size) bounds: tiny for the Triton interpreter."""
    if backend == "triton":
        return dict(B=(1, 2), C=(1, 4), H=(1, 6), W=(1, 6), R=(1, 6))
    return dict(B=(1, 3), C=(1, 20), H=(1, 12), W=(1, 40), R=(1, 16))


@st.composite
def pool_cases(draw, backend):
    d = _dims(backend)
    shape = tuple(draw(st.integers(*d[k])) for k in "BCHW")
    return dict(
        shape=shape,
        rows=draw(st.integers(*d["R"])),
        mode=draw(st.sampled_from(["mean", "max"])),
        dtype=draw(st.sampled_from(FLOATS)),
        layout=draw(layouts(4, shape)),
        x=draw(values()),
        g=draw(values(max_specials=2)),
    )


@st.composite
def interp_cases(draw, backend):
    d = _dims(backend)
    shape = (draw(st.integers(*d["B"])), draw(st.integers(*d["C"])), draw(st.integers(*d["R"])))
    return dict(
        shape=shape,
        size=draw(st.integers(1, d["H"][1] + d["R"][1])),
        dtype=draw(st.sampled_from(FLOATS)),
        layout=draw(layouts(3, shape)),
        a=draw(values()),
        g=draw(values(max_specials=2)),
    )


@st.composite
def rescale_cases(draw, backend):
    d = _dims(backend)
    shape = tuple(draw(st.integers(*d[k])) for k in "BCHW")
    lshape = shape[:2] + (draw(st.integers(*d["R"])),)
    return dict(
        shape=shape,
        lshape=lshape,
        dtype=draw(st.sampled_from(FLOATS)),
        flayout=draw(layouts(4, shape)),
        llayout=draw(layouts(3, lshape)),
        feat=draw(values()),
        logits=draw(values()),
        g=draw(values(max_specials=2)),
    )


def _fuzz(backend, strategy, check):
    @seed(zlib.crc32(f"{check.__name__}[{backend}]{SEED}".encode()))
    @settings(max_examples=max(1, int(EXAMPLES[backend] * SCALE)), **SETTINGS)
    @given(case=strategy(backend))
    def run(case):
        check(backend, case)

    run()


def _kernels(backend):
    return torch.ops.hanet if backend == "cpu" else hops.dispatch.triton_ops()


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def check_width_pool(backend, c):
    dtype, rows, mode = c["dtype"], c["rows"], c["mode"]
    x = Input(c["shape"], dtype, c["layout"], c["x"], backend)
    B, C, _, _ = c["shape"]
    g = _grad_out((B, C, rows), dtype, c["g"], backend)
    what = f"width_pool[{backend}] " + _describe(
        shape=c["shape"], rows=rows, mode=mode, dtype=dtype, layout=x.describe(), x=c["x"][0]
    )
    ours = _check(
        lambda t: hops.width_pool(t, rows, mode, backend=backend),
        lambda t: reference.width_pool(t, rows, mode),
        [x], g, dtype, what,
        fn_truth=_loop_width_pool(rows, mode) if backend == "reference" else None,
    )
    xv = x.view(x.base)
    if mode == "max":
        # Exact: the same maxima (NaN where PyTorch has NaN) and the same arg-max.
        ref_out, ref_idx = reference.width_pool_with_indices(xv, rows)
        if backend == "reference":  # the reference against the bin-by-bin maxima
            ref_out = _loop_width_pool(rows, "max")(xv)
        torch.testing.assert_close(ours, ref_out, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")
        if backend != "reference":
            out, idx = _kernels(backend).width_pool(xv, rows, "max")
            assert torch.equal(idx, ref_idx), f"{what}: arg-max indices differ from PyTorch's"
    if backend == "cpu":
        ns = torch.ops.hanet
        real = ns.width_pool(xv, rows, mode)
        assert_same_meta(real, ns.width_pool(_meta_like(xv), rows, mode), f"{what} fake forward")
        cl = hops._library.is_channels_last(xv)
        H, W = xv.shape[2], xv.shape[3]
        real_b = ns.width_pool_backward(g, real[1], H, W, mode, cl)
        fake_b = ns.width_pool_backward(_meta_like(g), _meta_like(real[1]), H, W, mode, cl)
        assert_same_meta(real_b, fake_b, f"{what} fake backward")


def check_height_interp(backend, c):
    dtype, size = c["dtype"], c["size"]
    a = Input(c["shape"], dtype, c["layout"], c["a"], backend)
    B, C, h = c["shape"]
    g = _grad_out((B, C, size), dtype, c["g"], backend)
    what = f"height_interp[{backend}] " + _describe(
        shape=c["shape"], size=size, dtype=dtype, layout=a.describe(), a=c["a"][0]
    )
    _check(
        lambda t: hops.height_interp(t, size, backend=backend),
        lambda t: reference.height_interp(t, size),
        [a], g, dtype, what,
        _interp_variants(dtype, size) if backend != "reference" else None,
        fn_truth=_taps64(size) if backend == "reference" else None,
    )
    if backend == "cpu":
        ns = torch.ops.hanet
        av = a.view(a.base)
        assert_same_meta(ns.height_interp(av, size), ns.height_interp(_meta_like(av), size), f"{what} fake forward")
        assert_same_meta(
            ns.height_interp_backward(g, h), ns.height_interp_backward(_meta_like(g), h), f"{what} fake backward"
        )


def check_attention_rescale(backend, c):
    dtype = c["dtype"]
    feat = Input(c["shape"], dtype, c["flayout"], c["feat"], backend)
    logits = Input(c["lshape"], dtype, c["llayout"], c["logits"], backend)
    g = _grad_out(c["shape"], dtype, c["g"], backend)
    what = f"attention_rescale[{backend}] " + _describe(
        shape=c["shape"], h=c["lshape"][2], dtype=dtype, feat=f"{feat.describe()}/{c['feat'][0]}",
        logits=f"{logits.describe()}/{c['logits'][0]}",
    )
    ours = _check(
        lambda f, l: hops.attention_rescale(f, l, backend=backend),
        reference.attention_rescale,
        [feat, logits], g, dtype, what,
        _rescale_variants(dtype) if backend != "reference" else None,
        fn_truth=_rescale64 if backend == "reference" else None,
        fn_grad_variants=[_rescale_from_output] if backend != "reference" and dtype in RESCALE_SAVES_OUTPUT else (),
    )
    fv = feat.view(feat.base)
    if hops._library.is_channels_last(fv):
        assert ours.is_contiguous(memory_format=torch.channels_last), f"{what}: layout not kept"
    if backend == "cpu":
        ns = torch.ops.hanet
        lv = logits.view(logits.base)
        assert_same_meta(
            ns.attention_rescale(fv, lv), ns.attention_rescale(_meta_like(fv), _meta_like(lv)),
            f"{what} fake forward",
        )
        assert_same_meta(
            ns.attention_rescale_backward(g, fv, lv),
            ns.attention_rescale_backward(_meta_like(g), _meta_like(fv), _meta_like(lv)),
            f"{what} fake backward",
        )


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_kernel_backends_are_fuzzed_here():
    """The fuzz reaches the built C++ kernels of the installed package (not a source tree
    without the extension) and the Triton kernels."""
    import hanet

    print(f"fuzzed backends: {BACKENDS}; hanet from {os.path.dirname(hanet.__file__)}")
    assert "cpu" in BACKENDS, f"C++ extension not loaded: {hops._extension.load_error()}"
    assert "triton" in BACKENDS, "triton backend unavailable under TRITON_INTERPRET=1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_width_pool_fuzz(backend):
    _fuzz(backend, pool_cases, check_width_pool)


@pytest.mark.parametrize("backend", BACKENDS)
def test_height_interp_fuzz(backend):
    _fuzz(backend, interp_cases, check_height_interp)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_rescale_fuzz(backend):
    _fuzz(backend, rescale_cases, check_attention_rescale)
