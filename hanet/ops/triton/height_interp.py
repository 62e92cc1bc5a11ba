"""height_interp on Triton: (B, C, h) -> (B, C, size), linear, align_corners=False, and
its adjoint (a gather, no atomics; the attention_rescale backward reuses it for the
logits gradient).  Kernels, launch plans and the ``hanet_triton`` ops."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op

from .common import (NAMESPACE, Call, CallCache, Launch, Plan, acc_constexpr, cached_plan, cdiv,
                     interp_scale, launch, linear_tap, linear_tap_scaled, next_pow2, outputs,
                     pick_block, row_tile, rows_block, run, validate)


@triton.jit(do_not_specialize=["R"])
def _height_interp_kernel(a_ptr, out_ptr, R, h_in, size,
                          ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr):
    """(R, h_in) -> (R, size), both contiguous.  Tile: BLOCK_R rows x BLOCK_S outputs."""
    rows, dst, rmask, smask = row_tile(tl.program_id(0), R, size, BLOCK_R, BLOCK_S)
    i0, i1, w0, w1 = linear_tap(dst, h_in, size, ACC)
    m = rmask[:, None] & smask[None, :]
    base = rows[:, None] * h_in
    v0 = tl.load(a_ptr + (base + i0[None, :]), mask=m, other=0.0).to(ACC)
    v1 = tl.load(a_ptr + (base + i1[None, :]), mask=m, other=0.0).to(ACC)
    res = w0[None, :] * v0 + w1[None, :] * v1
    tl.store(out_ptr + (rows[:, None] * size + dst[None, :]),
             res.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["R", "n_parts", "part_stride", "win"])
def _height_interp_backward_kernel(g_ptr, out_ptr, logits_ptr, R, h_in, size,
                                   n_parts, part_stride, win,
                                   SIGMOID_GRAD: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                                   BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr):
    """Adjoint of the interpolation (R, h_in) -> (R, size), as a gather (no atomics).

    out[r, j] = sum over output positions d whose taps touch j of w(d, j) * g[r, d],
    with g = sum_p g_ptr[p * part_stride + r * size + d] (p < n_parts: partial sums of
    the attention backward; n_parts = 1 otherwise).  The candidate positions of input j
    are [dst_lo(j), dst_lo(j) + win): dst_lo is the exact rational bound of i0 >= j-1
    minus one (float rounding moves i0 by at most one at exact boundaries), 0 for j <= 1
    (the clamped positions src < 0 touch input 1 with weight 0); ``win`` comes from the
    plan.  Tile: BLOCK_R rows x BLOCK_J inputs x BLOCK_K candidates (a loop over
    ceil(win / BLOCK_K) chunks; positions past the window never touch j, so a longer
    window is harmless).

    SIGMOID_GRAD: multiply by s*(1-s), s = sigmoid(logits[r, j]) (attention backward).
    """
    rows, j, rmask, jmask = row_tile(tl.program_id(0), R, h_in, BLOCK_R, BLOCK_J)
    num = tl.maximum(2 * size * (j.to(tl.int64) - 1) + size - h_in, 0)
    dst_lo = tl.where(j <= 1, 0, tl.maximum(num // (2 * h_in) - 1, 0))
    acc = tl.zeros([BLOCK_R, BLOCK_J], dtype=ACC)
    g_row = (rows * size)[:, None, None]
    rm3 = rmask[:, None, None]
    scale = interp_scale(h_in, size, ACC)
    for k0 in range(0, win, BLOCK_K):
        dst = dst_lo[:, None] + (k0 + tl.arange(0, BLOCK_K))[None, :]  # [BLOCK_J, BLOCK_K]
        i0, i1, w0, w1 = linear_tap_scaled(dst, h_in, size, scale, ACC)
        hit0 = i0 == j[:, None]
        hit1 = i1 == j[:, None]
        touch = (hit0 | hit1) & (dst < size) & jmask[:, None]
        m = rm3 & touch[None, :, :]
        offs = g_row + dst[None, :, :]
        g = tl.zeros([BLOCK_R, BLOCK_J, BLOCK_K], dtype=ACC)
        for p in range(0, n_parts):
            g += tl.load(g_ptr + (offs + p * part_stride), mask=m, other=0.0).to(ACC)
        # w0*g and w1*g as two terms, as the scatter adds them: when both taps read j
        # (i0 == i1) with w1 = 0, an inf g gives inf + 0*inf = NaN, as PyTorch's.
        t0 = tl.where(hit0[None, :, :], g * w0[None, :, :], 0.0)
        t1 = tl.where(hit1[None, :, :], g * w1[None, :, :], 0.0)
        acc += tl.sum(tl.where(m, t0 + t1, 0.0), axis=2)
    m = rmask[:, None] & jmask[None, :]
    o_offs = rows[:, None] * h_in + j[None, :]
    if SIGMOID_GRAD:
        x = tl.load(logits_ptr + o_offs, mask=m, other=0.0).to(ACC)
        s = 1.0 / (1.0 + tl.exp(-x))
        acc = acc * (s * (1.0 - s))
    tl.store(out_ptr + o_offs, acc.to(out_ptr.dtype.element_ty), mask=m)


@cached_plan
def plan_height_interp(R: int, h_in: int, size: int, dtype: torch.dtype) -> Plan:
    """a (R, h_in) -> out (R, size); roles: a, out."""
    block_s = pick_block(size, 256, lo=16)
    block_r = rows_block(2048, block_s, R)
    grid = (cdiv(R, block_r) * cdiv(size, block_s),)
    return Plan([Launch(
        _height_interp_kernel, grid,
        {"a_ptr": ("a", dtype), "out_ptr": ("out", dtype)},
        {"R": R, "h_in": h_in, "size": size},
        {"ACC": acc_constexpr(dtype), "BLOCK_R": block_r, "BLOCK_S": block_s}, 4)])


def _interp_window(h_in: int, size: int) -> int:
    # Candidate outputs per input: the rational range of i0 in {j-1, j} spans
    # 2*size/h_in positions, plus 1 on each side for rounding at exact boundaries,
    # plus floor/ceil slop; inputs 0 and 1 also see the clamped outputs (src < 0).
    return cdiv(3 * size, h_in) + 6


def interp_backward_launch(R: int, h_in: int, size: int, g_role: str, g_dtype: torch.dtype,
                           out_role: str, out_dtype: torch.dtype, n_parts: int,
                           sigmoid_grad: bool, logits_role: str) -> Launch:
    win = _interp_window(h_in, size)
    block_j = pick_block(h_in, 32, lo=16)
    block_k = min(next_pow2(win), 64)
    block_r = rows_block(4096, block_j * block_k, R)
    grid = (cdiv(R, block_r) * cdiv(h_in, block_j),)
    return Launch(
        _height_interp_backward_kernel, grid,
        {"g_ptr": (g_role, g_dtype), "out_ptr": (out_role, out_dtype),
         "logits_ptr": (logits_role, out_dtype)},
        {"R": R, "h_in": h_in, "size": size, "n_parts": n_parts, "part_stride": R * size,
         "win": win},
        {"SIGMOID_GRAD": sigmoid_grad, "ACC": acc_constexpr(out_dtype), "BLOCK_R": block_r,
         "BLOCK_J": block_j, "BLOCK_K": block_k}, 4)


@cached_plan
def plan_height_interp_backward(R: int, h_in: int, size: int, dtype: torch.dtype) -> Plan:
    """grad (R, size) -> out (R, h_in); roles: grad, out."""
    return Plan([interp_backward_launch(R, h_in, size, "grad", dtype, "out", dtype, 1, False, "out")])


def _resample(op: str, calls: "CallCache", src: Tensor, length: int, role: str, plan,
              shapes, direct: bool) -> Tensor:
    """(B, C, n) -> (B, C, length) by ``plan``, given ``shapes(B*C, n, length)``."""
    key = None
    if type(src) is Tensor:
        key = (src.shape, src.stride(), src.dtype, src.device, length)
        call = calls.get(key)
        if call is not None:  # checked and planned before: allocate and launch
            (out,) = call.outputs()
            if call.plan is not None:
                launch(call.plan, {role: src if call.flags[0] else src.contiguous(), "out": out},
                       call.device, direct)
            return out
    validate(op, src, length)
    dense = src.is_contiguous()
    src = src.contiguous()
    out = outputs(op, src, length)
    p = run(plan, shapes(src.shape[0] * src.shape[1], src.shape[2], length),
            {role: src, "out": out}, src.device, src.dtype, direct=direct)
    calls.put(key, Call(p, (out,), src.device, (dense,)))
    return out


_FWD_CALLS = CallCache("height_interp")
_BWD_CALLS = CallCache("height_interp_backward")


def _fwd_shapes(r, n, m):
    return r, n, m


def _bwd_shapes(r, n, m):
    return r, m, n


def _height_interp(a: Tensor, size: int, direct: bool = False) -> Tensor:
    return _resample("height_interp", _FWD_CALLS, a, size, "a", plan_height_interp, _fwd_shapes,
                     direct)


def _height_interp_backward(grad: Tensor, in_size: int, direct: bool = False) -> Tensor:
    return _resample("height_interp_backward", _BWD_CALLS, grad, in_size, "grad",
                     plan_height_interp_backward, _bwd_shapes, direct)


@triton_op(f"{NAMESPACE}::height_interp", mutates_args=())
def height_interp(a: Tensor, size: int) -> Tensor:
    """(B, C, h) -> (B, C, size): F.interpolate(a, size, mode="linear", align_corners=False)."""
    return _height_interp(a, size)


@triton_op(f"{NAMESPACE}::height_interp_backward", mutates_args=())
def height_interp_backward(grad: Tensor, in_size: int) -> Tensor:
    """Adjoint of height_interp: (B, C, size) -> (B, C, in_size), deterministic."""
    return _height_interp_backward(grad, in_size)


KERNELS = {"height_interp": _height_interp_kernel,
           "height_interp_backward": _height_interp_backward_kernel}
OPS = {"height_interp": (height_interp, ("height_interp",)),
       "height_interp_backward": (height_interp_backward, ("height_interp_backward",))}
# The launchers without triton_op's wrapper, for hanet.ops.triton.register_direct.
DIRECT = {"height_interp": _height_interp, "height_interp_backward": _height_interp_backward}
