"""Triton kernels of the HANet ops, and the launch plans that size them.

The kernels are pure Triton (no libdevice / ``tl.extra`` calls), so they run under
the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors) as well as on GPUs.
Every index rule is the one of ``csrc/hanet_math.h`` (PyTorch's own rules):

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

Arithmetic is fp32 for fp32/fp16/bf16 tensors and fp64 for fp64 tensors.  Offsets
that can exceed 2**31 are int64 (program ids are widened before they multiply a size).

Kernel design (memory-bound streaming; every element read and written once)
-------------
* attention_rescale: NCHW tiles BLOCK_R rows (b, c, h) x BLOCK_W columns; channels_last
  tiles BLOCK_H rows (b, h) x BLOCK_W pixels x BLOCK_C channels (BLOCK_H > 1 only for
  short rows).  A = interp(sigmoid(logits)) is computed once per row (per row and
  channel) of a tile, in fp32, and the tile is scaled with 16-byte vector accesses.
* attention_rescale backward: the same tiles write grad*A and reduce grad*feat over
  the width in fp32 registers; each program covers a whole row, or a split of it when
  there are too few rows (fp32 partial sums (n_split, B*C*H)); a small gather kernel
  (_height_interp_backward_kernel) sums the splits, applies the interpolation adjoint
  and s*(1-s).
* width_pool: NCHW: a bin of one plane is one contiguous run of (rows of bin)*W
  elements (its memory order is the scan order): tiles of BLOCK_S bins x BLOCK_L
  elements reduce into fp32.  channels_last: a bin is a contiguous run of pixels;
  tiles BLOCK_S bins x BLOCK_P pixels x BLOCK_C channels; when there are few programs
  the run is split and _pool_finish_kernel combines the partial results in order.
* backward passes are gathers (each output element written once, no atomics).

Launch plans
------------
Every launcher in :mod:`hanet.ops.triton_ops` gets its kernels, grids, block sizes
(constexprs) and ``num_warps`` from a ``plan_*`` function of this module, which
depends only on shapes, dtypes and the memory layout.  :class:`Launch` can turn a
planned launch into the ``(signature, constexprs, attrs)`` triple of
``triton.compiler.ASTSource`` with Triton's own runtime specialisation (integers
equal to 1 become constexprs, integers and pointers divisible by 16 get the
``tt.divisibility`` hint), so the ahead-of-time test compiles exactly what the
launchers run.  :func:`launch_configs` lists the plans at representative HANet shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import torch
import triton
import triton.language as tl

__all__ = [
    "Launch",
    "Plan",
    "plan_width_pool",
    "plan_width_pool_backward",
    "plan_height_interp",
    "plan_height_interp_backward",
    "plan_attention_rescale",
    "plan_attention_rescale_backward",
    "launch_configs",
    "KERNELS",
]

# ============================================================================
# Device helpers
# ============================================================================


# Note: in the interpreter every call of a @triton.jit helper costs milliseconds (it
# re-patches triton.language), so the helpers below are self-contained and hot loops
# inline their arithmetic instead of calling helpers.


@triton.jit
def _mean_div(acc, kh, W):
    """sum / kh / kw, in this order (as PyTorch's adaptive average pooling), correctly
    rounded (``/`` on fp32 lowers to an approximate division on GPUs)."""
    if acc.dtype == tl.float64:
        return acc / kh.to(tl.float64) / tl.cast(W, tl.float64)
    else:
        return tl.div_rn(tl.div_rn(acc, kh.to(tl.float32)), tl.cast(W, tl.float32))


@triton.jit
def _interp_scale(in_size, out_size, ACC: tl.constexpr):
    """in_size / out_size, correctly rounded in ACC (PyTorch's linear-interp scale)."""
    if ACC == tl.float64:
        return tl.cast(in_size, tl.float64) / tl.cast(out_size, tl.float64)
    else:
        return tl.div_rn(tl.cast(in_size, tl.float32), tl.cast(out_size, tl.float32))


@triton.jit
def _linear_tap_scaled(dst, in_size, out_size, scale, ACC: tl.constexpr):
    """_linear_tap with ``scale`` = _interp_scale(in_size, out_size) given (hoisted out of loops)."""
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
def _linear_tap(dst, in_size, out_size, ACC: tl.constexpr):
    """PyTorch's linear, align_corners=False taps of output index ``dst``:
    (i0, i1, w0, w1)."""
    return _linear_tap_scaled(dst, in_size, out_size, _interp_scale(in_size, out_size, ACC), ACC)


@triton.jit
def _split_rows(rb, H, BLOCK_R: tl.constexpr):
    """Rows rb*BLOCK_R + [0, BLOCK_R) of an NCHW tensor seen as (B*C*H, W): their int64
    index, (b*C + c) (int64) and h (int32).  One int64 division per program; the
    per-row split is int32 (cheap, few registers)."""
    r0 = rb * BLOCK_R
    bc0 = r0 // H
    t = (r0 - bc0 * H).to(tl.int32) + tl.arange(0, BLOCK_R)
    q = t // H
    return r0 + tl.arange(0, BLOCK_R), bc0 + q, t - q * H


@triton.jit
def _attention(logits_ptr, lrow, hh, h_in, H, mask, ACC: tl.constexpr):
    """A at output row ``hh`` of logits row ``lrow``: interp(sigmoid(logits), H)[hh],
    sigmoid first (1 / (1 + exp(-x))), then the linear taps of _linear_tap.

    ``lrow`` (int64, index of the (b, c) logits row) and ``hh`` broadcast together.
    """
    i0, i1, w0, w1 = _linear_tap(hh, h_in, H, ACC)
    base = lrow * h_in
    l0 = tl.load(logits_ptr + (base + i0), mask=mask, other=0.0).to(ACC)
    l1 = tl.load(logits_ptr + (base + i1), mask=mask, other=0.0).to(ACC)
    s0 = 1.0 / (1.0 + tl.exp(-l0))
    s1 = 1.0 / (1.0 + tl.exp(-l1))
    return w0 * s0 + w1 * s1


# ============================================================================
# height_interp / height_interp_backward
# ============================================================================


@triton.jit
def _height_interp_kernel(a_ptr, out_ptr, R, h_in, size,
                          BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr):
    """(R, h_in) -> (R, size), both contiguous.  Tile: BLOCK_R rows x BLOCK_S outputs."""
    if a_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_sblk = tl.cdiv(size, BLOCK_S)
    rb = (pid // n_sblk).to(tl.int64)
    sb = pid % n_sblk
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    dst = sb * BLOCK_S + tl.arange(0, BLOCK_S)
    rmask = rows < R
    smask = dst < size
    i0, i1, w0, w1 = _linear_tap(dst, h_in, size, ACC)
    m = rmask[:, None] & smask[None, :]
    base = rows[:, None] * h_in
    v0 = tl.load(a_ptr + (base + i0[None, :]), mask=m, other=0.0).to(ACC)
    v1 = tl.load(a_ptr + (base + i1[None, :]), mask=m, other=0.0).to(ACC)
    res = w0[None, :] * v0 + w1[None, :] * v1
    tl.store(out_ptr + (rows[:, None] * size + dst[None, :]),
             res.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _height_interp_backward_kernel(g_ptr, out_ptr, logits_ptr, R, h_in, size,
                                   n_parts, part_stride, win,
                                   SIGMOID_GRAD: tl.constexpr, BLOCK_R: tl.constexpr,
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
    if out_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_jblk = tl.cdiv(h_in, BLOCK_J)
    rb = (pid // n_jblk).to(tl.int64)
    jb = pid % n_jblk
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    j = jb * BLOCK_J + tl.arange(0, BLOCK_J)
    rmask = rows < R
    jmask = j < h_in
    num = tl.maximum(2 * size * (j.to(tl.int64) - 1) + size - h_in, 0)
    dst_lo = tl.where(j <= 1, 0, tl.maximum(num // (2 * h_in) - 1, 0))
    acc = tl.zeros([BLOCK_R, BLOCK_J], dtype=ACC)
    g_row = (rows * size)[:, None, None]
    rm3 = rmask[:, None, None]
    scale = _interp_scale(h_in, size, ACC)
    for k0 in range(0, win, BLOCK_K):
        dst = dst_lo[:, None] + (k0 + tl.arange(0, BLOCK_K))[None, :]  # [BLOCK_J, BLOCK_K]
        i0, i1, w0, w1 = _linear_tap_scaled(dst, h_in, size, scale, ACC)
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


# ============================================================================
# attention_rescale forward
# ============================================================================


@triton.jit
def _rescale_nchw_kernel(feat_ptr, logits_ptr, out_ptr, R, H, W, h_in,
                         BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
    """NCHW: rows r = (b*C + c)*H + h of length W.  Tile BLOCK_R rows x BLOCK_W columns;
    A is computed once per row of the tile."""
    if feat_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_wblk = tl.cdiv(W, BLOCK_W)
    rb = (pid // n_wblk).to(tl.int64)
    wb = pid % n_wblk
    rows, bc, hh = _split_rows(rb, H, BLOCK_R)
    rmask = rows < R
    a = _attention(logits_ptr, bc, hh, h_in, H, rmask, ACC)
    cols = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    m = rmask[:, None] & (cols < W)[None, :]
    offs = rows[:, None] * W + cols[None, :]
    x = tl.load(feat_ptr + offs, mask=m, other=0.0).to(ACC)
    tl.store(out_ptr + offs, (x * a[:, None]).to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _nhwc_rows(hb, BH, H, C, c, BLOCK_H: tl.constexpr):
    """Rows (b, h) hb*BLOCK_H + [0, BLOCK_H) of a channels_last tensor: bh (int64),
    a row mask, h (int64) and the logits rows b*C + c ([BLOCK_H, BLOCK_C], int64)."""
    bh = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    b = bh // H
    return bh, bh < BH, bh - b * H, b[:, None] * C + c[None, :]


@triton.jit
def _rescale_nhwc_kernel(feat_ptr, logits_ptr, out_ptr, BH, H, W, C, h_in,
                         BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """channels_last: program (block of BLOCK_H rows (b, h), w-block, c-block); tile
    BLOCK_H x BLOCK_W pixels x BLOCK_C channels (channels contiguous).  A is computed
    once per (row, channel) of the tile.  BLOCK_H > 1 only when a row fits one w-block
    (short rows: the tile is then one contiguous run of memory)."""
    if feat_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_cblk = tl.cdiv(C, BLOCK_C)
    n_wblk = tl.cdiv(W, BLOCK_W)
    cb = pid % n_cblk
    t = pid // n_cblk
    wb = t % n_wblk
    hb = (t // n_wblk).to(tl.int64)
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    bh, hmask, hh, lrow = _nhwc_rows(hb, BH, H, C, c, BLOCK_H)
    a = _attention(logits_ptr, lrow, hh[:, None], h_in, H, hmask[:, None] & cmask[None, :], ACC)
    w = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    pm = hmask[:, None] & (w < W)[None, :]
    m = pm[:, :, None] & cmask[None, None, :]
    offs = ((bh[:, None] * W + w[None, :]) * C)[:, :, None] + c[None, None, :]
    x = tl.load(feat_ptr + offs, mask=m, other=0.0).to(ACC)
    tl.store(out_ptr + offs, (x * a[:, None, :]).to(out_ptr.dtype.element_ty), mask=m)


# ============================================================================
# attention_rescale backward (stage 1: grad_feat and width partial sums)
# ============================================================================


@triton.jit
def _rescale_bwd_nchw_kernel(grad_ptr, feat_ptr, logits_ptr, gfeat_ptr, part_ptr,
                             R, H, W, h_in, w_per_split,
                             BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
    """NCHW.  Program (row block, width split): grad_feat = grad * A over its columns,
    and part[split, r] = sum over its columns of grad * feat (fp32/fp64 accumulator).
    grad and feat are read once; w_per_split is a multiple of BLOCK_W."""
    if feat_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_split = tl.cdiv(W, w_per_split)
    rb = (pid // n_split).to(tl.int64)
    sp = pid % n_split
    rows, bc, hh = _split_rows(rb, H, BLOCK_R)
    rmask = rows < R
    a = _attention(logits_ptr, bc, hh, h_in, H, rmask, ACC)
    acc = tl.zeros([BLOCK_R], dtype=ACC)
    w_start = sp * w_per_split
    w_end = tl.minimum(w_start + w_per_split, W)
    row_off = rows[:, None] * W
    for w0 in range(w_start, w_end, BLOCK_W):
        cols = w0 + tl.arange(0, BLOCK_W)
        m = rmask[:, None] & (cols < w_end)[None, :]
        offs = row_off + cols[None, :]
        g = tl.load(grad_ptr + offs, mask=m, other=0.0).to(ACC)
        f = tl.load(feat_ptr + offs, mask=m, other=0.0).to(ACC)
        tl.store(gfeat_ptr + offs, (g * a[:, None]).to(gfeat_ptr.dtype.element_ty), mask=m)
        acc += tl.sum(g * f, axis=1)
    tl.store(part_ptr + (sp.to(tl.int64) * R + rows), acc, mask=rmask)


@triton.jit
def _rescale_bwd_nhwc_kernel(grad_ptr, feat_ptr, logits_ptr, gfeat_ptr, part_ptr,
                             BH, H, W, C, h_in, w_per_split,
                             BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
                             BLOCK_C: tl.constexpr):
    """channels_last.  Program (block of BLOCK_H rows (b, h), width split, c-block):
    tiles BLOCK_H x BLOCK_W pixels x BLOCK_C channels; grad_feat = grad * A and
    part[split, (b*C + c)*H + h] = sum over its pixels of grad * feat."""
    if feat_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_cblk = tl.cdiv(C, BLOCK_C)
    n_split = tl.cdiv(W, w_per_split)
    cb = pid % n_cblk
    t = pid // n_cblk
    sp = t % n_split
    hb = (t // n_split).to(tl.int64)
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    bh, hmask, hh, lrow = _nhwc_rows(hb, BH, H, C, c, BLOCK_H)
    rc_mask = hmask[:, None] & cmask[None, :]
    a = _attention(logits_ptr, lrow, hh[:, None], h_in, H, rc_mask, ACC)
    acc = tl.zeros([BLOCK_H, BLOCK_C], dtype=ACC)
    w_start = sp * w_per_split
    w_end = tl.minimum(w_start + w_per_split, W)
    for w0 in range(w_start, w_end, BLOCK_W):
        w = w0 + tl.arange(0, BLOCK_W)
        pm = hmask[:, None] & (w < w_end)[None, :]
        m = pm[:, :, None] & cmask[None, None, :]
        offs = ((bh[:, None] * W + w[None, :]) * C)[:, :, None] + c[None, None, :]
        g = tl.load(grad_ptr + offs, mask=m, other=0.0).to(ACC)
        f = tl.load(feat_ptr + offs, mask=m, other=0.0).to(ACC)
        tl.store(gfeat_ptr + offs, (g * a[:, None, :]).to(gfeat_ptr.dtype.element_ty), mask=m)
        acc += tl.sum(g * f, axis=1)
    R = tl.cast(BH, tl.int64) * C  # = B*C*H
    p_offs = sp.to(tl.int64) * R + lrow * H + hh[:, None]
    tl.store(part_ptr + p_offs, acc, mask=rc_mask)


# ============================================================================
# width_pool
# ============================================================================


@triton.jit
def _max_chunk(v, valid, pos, cur, cur_idx, AXIS: tl.constexpr):
    """Fold one chunk (scanned in order along AXIS) into the running (max, arg-max).

    PyTorch's rule: a new maximum when strictly greater, or NaN.  Within the chunk this
    is the first occurrence of the maximum, or the last NaN; a chunk replaces the
    running state under the same rule.  ``pos`` (int32, broadcast against ``v``) holds
    the scan positions of ``v`` relative to the start of the bin.
    """
    isn = (v != v) & valid
    vm = tl.where(valid, tl.where(isn, float("-inf"), v), float("-inf"))
    cmax = tl.max(vm, axis=AXIS)
    has_nan = tl.max(isn.to(tl.int32), axis=AXIS) > 0
    nan_pos = tl.max(tl.where(isn, pos, -1), axis=AXIS)
    big = 0x7FFFFFFF
    is_max = valid & (vm == tl.expand_dims(cmax, AXIS))
    first = tl.min(tl.where(is_max, pos, big), axis=AXIS)
    cval = tl.where(has_nan, float("nan"), cmax)
    cidx = tl.where(has_nan, nan_pos, first)
    take = (cval > cur) | has_nan
    return tl.where(take, cval, cur), tl.where(take, cidx, cur_idx)


@triton.jit
def _pool_nchw_kernel(x_ptr, out_ptr, idx_ptr, NSEG, rows, H, W, n_iter,
                      IS_MAX: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_L: tl.constexpr):
    """NCHW: segment s = (b*C + c)*rows + i is bin i of plane (b, c), a contiguous run
    of (he - hs)*W elements starting at row hs.  Tile: BLOCK_S segments x BLOCK_L elements,
    n_iter chunks; memory order is the scan order, so the flat index is hs*W + offset."""
    if x_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0).to(tl.int64)
    seg = pid * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = seg < NSEG
    bc = seg // rows
    i = seg - bc * rows
    hs = (i * H) // rows
    he = ((i + 1) * H + rows - 1) // rows
    length = (he - hs) * W
    base = bc * H * W + hs * W
    if IS_MAX:
        cur = tl.full([BLOCK_S], float("-inf"), ACC)
        cur_idx = tl.zeros([BLOCK_S], dtype=tl.int32)  # offset in the bin: 0 = its start
    else:
        acc = tl.zeros([BLOCK_S], dtype=ACC)
    for it in range(0, n_iter):
        l = it * BLOCK_L + tl.arange(0, BLOCK_L)
        m = smask[:, None] & (l[None, :] < length[:, None])
        offs = base[:, None] + l[None, :]
        if IS_MAX:
            v = tl.load(x_ptr + offs, mask=m, other=float("-inf")).to(ACC)
            cur, cur_idx = _max_chunk(v, m, l[None, :], cur, cur_idx, 1)
        else:
            v = tl.load(x_ptr + offs, mask=m, other=0.0).to(ACC)
            acc += tl.sum(v, axis=1)
    if IS_MAX:
        tl.store(out_ptr + seg, cur.to(out_ptr.dtype.element_ty), mask=smask)
        tl.store(idx_ptr + seg, hs * W + cur_idx.to(tl.int64), mask=smask)
    else:
        res = _mean_div(acc, he - hs, W)
        tl.store(out_ptr + seg, res.to(out_ptr.dtype.element_ty), mask=smask)


@triton.jit
def _pool_nhwc_kernel(x_ptr, val_ptr, idx_ptr, B, C, rows, H, W, pix_per_split, n_split,
                      max_pix, IS_MAX: tl.constexpr, FINAL: tl.constexpr, BLOCK_S: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """channels_last: bin i of image b is the contiguous pixel run [hs*W, he*W) (pixel
    order is the scan order, the pixel index is the flat index).  Program (block of
    BLOCK_S bins s = b*rows + i, split, c-block) reduces pixels
    [hs*W + split*pix_per_split, ...) of each of its bins in tiles of BLOCK_S bins x
    BLOCK_P pixels x BLOCK_C channels (BLOCK_S > 1 only for short bins, unsplit).
    FINAL: write the result (one split); else write partial results at
    [split, b, c, bin] for _pool_finish_kernel.  max_pix: pixels of the longest bin."""
    if x_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_cblk = tl.cdiv(C, BLOCK_C)
    cb = pid % n_cblk
    t = pid // n_cblk
    sp = t % n_split
    sb = (t // n_split).to(tl.int64)
    seg = sb * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = seg < B * rows
    b = seg // rows
    i = seg - b * rows
    hs = (i * H) // rows
    he = ((i + 1) * H + rows - 1) // rows
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    # pixel offsets q inside each bin (int32); the pixel index is hs*W + q
    q_start = (sp * pix_per_split).to(tl.int32)
    q_stop = tl.minimum(q_start + pix_per_split, max_pix)
    q_end = tl.minimum(q_start + pix_per_split, ((he - hs) * W).to(tl.int32))  # [BLOCK_S]
    first_pix = (b * H + hs) * W
    if IS_MAX:
        cur = tl.full([BLOCK_S, BLOCK_C], float("-inf"), ACC)
        cur_idx = tl.zeros([BLOCK_S, BLOCK_C], dtype=tl.int32)
    else:
        acc = tl.zeros([BLOCK_S, BLOCK_C], dtype=ACC)
    for q0 in range(q_start, q_stop, BLOCK_P):
        q = q0 + tl.arange(0, BLOCK_P)
        pm = smask[:, None] & (q[None, :] < q_end[:, None])
        m = pm[:, :, None] & cmask[None, None, :]
        offs = ((first_pix[:, None] + q[None, :]) * C)[:, :, None] + c[None, None, :]
        if IS_MAX:
            v = tl.load(x_ptr + offs, mask=m, other=float("-inf")).to(ACC)
            cur, cur_idx = _max_chunk(v, m, q[None, :, None], cur, cur_idx, 1)
        else:
            v = tl.load(x_ptr + offs, mask=m, other=0.0).to(ACC)
            acc += tl.sum(v, axis=1)
    o_offs = ((sp * B + b[:, None]) * C + c[None, :]) * rows + i[:, None]
    om = smask[:, None] & cmask[None, :]
    if IS_MAX:
        tl.store(val_ptr + o_offs, cur.to(val_ptr.dtype.element_ty), mask=om)
        tl.store(idx_ptr + o_offs, (hs * W)[:, None] + cur_idx.to(tl.int64), mask=om)
    else:
        if FINAL:
            acc = _mean_div(acc, (he - hs)[:, None], W)
        tl.store(val_ptr + o_offs, acc.to(val_ptr.dtype.element_ty), mask=om)


@triton.jit
def _pool_finish_kernel(pval_ptr, pidx_ptr, out_ptr, idx_ptr, N, rows, H, W, n_split,
                        IS_MAX: tl.constexpr, BLOCK: tl.constexpr):
    """Combines the n_split partial results [split, N] of _pool_nhwc_kernel in scan order."""
    if pval_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = e < N
    i = e % rows
    hs = (i * H) // rows
    he = ((i + 1) * H + rows - 1) // rows
    if IS_MAX:
        cur = tl.full([BLOCK], float("-inf"), ACC)
        cur_idx = hs * W
        for s in range(0, n_split):
            v = tl.load(pval_ptr + (s * N + e), mask=m, other=float("-inf")).to(ACC)
            ix = tl.load(pidx_ptr + (s * N + e), mask=m, other=0)
            take = (v > cur) | (v != v)
            cur = tl.where(take, v, cur)
            cur_idx = tl.where(take, ix, cur_idx)
        tl.store(out_ptr + e, cur.to(out_ptr.dtype.element_ty), mask=m)
        tl.store(idx_ptr + e, cur_idx, mask=m)
    else:
        acc = tl.zeros([BLOCK], dtype=ACC)
        for s in range(0, n_split):
            acc += tl.load(pval_ptr + (s * N + e), mask=m, other=0.0).to(ACC)
        res = _mean_div(acc, he - hs, W)
        tl.store(out_ptr + e, res.to(out_ptr.dtype.element_ty), mask=m)


# ============================================================================
# width_pool_backward (gather: every element written once, no atomics)
# ============================================================================


@triton.jit
def _pool_bwd_nchw_kernel(grad_ptr, idx_ptr, out_ptr, R, rows, H, W, max_bins,
                          IS_MAX: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
    """NCHW: rows r = (b*C + c)*H + h; the bins containing h are [fb, lb).
    mean: every element of row h gets sum_i grad[i] / kh_i / W.
    max: element (h, w) gets the sum of grad[i] over those bins with indices[i] == h*W+w."""
    if out_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_wblk = tl.cdiv(W, BLOCK_W)
    rb = (pid // n_wblk).to(tl.int64)
    wb = pid % n_wblk
    r, bc, hh = _split_rows(rb, H, BLOCK_R)
    rmask = r < R
    # int64: h * rows and i * H pass 2**31 (e.g. 65539 rows pooled to 65535 bins), and
    # so does the flat index h * W of a large plane
    hh = hh.to(tl.int64)
    fb = (hh * rows) // H
    lb = ((hh + 1) * rows + H - 1) // H
    cols = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    m = rmask[:, None] & (cols < W)[None, :]
    g_row = bc * rows
    if IS_MAX:
        row_start = hh * W
        acc = tl.zeros([BLOCK_R, BLOCK_W], dtype=ACC)
        for k in range(0, max_bins):
            i = fb + k
            valid = (i < lb) & rmask
            iv = tl.load(idx_ptr + (g_row + i), mask=valid, other=-1)
            gv = tl.load(grad_ptr + (g_row + i), mask=valid, other=0.0).to(ACC)
            # column of the arg-max when it lies in this row, else -1 (int32 compare)
            col = tl.where(valid & (iv >= row_start) & (iv < row_start + W),
                           iv - row_start, -1).to(tl.int32)
            acc += tl.where(col[:, None] == cols[None, :], gv[:, None], 0.0)
        res = acc
    else:
        g = tl.zeros([BLOCK_R], dtype=ACC)
        Wf = tl.cast(W, ACC)
        for k in range(0, max_bins):
            i = fb + k
            valid = (i < lb) & rmask
            gv = tl.load(grad_ptr + (g_row + i), mask=valid, other=0.0).to(ACC)
            kh = (((i + 1) * H + rows - 1) // rows - (i * H) // rows).to(ACC)
            if ACC == tl.float64:
                d = gv / kh / Wf
            else:
                d = tl.div_rn(tl.div_rn(gv, kh), Wf)  # grad / kh / kw, as PyTorch
            g += tl.where(valid, d, 0.0)
        res = g[:, None] + tl.zeros([BLOCK_R, BLOCK_W], dtype=ACC)
    offs = r[:, None] * W + cols[None, :]
    tl.store(out_ptr + offs, res.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _pool_bwd_nhwc_kernel(grad_ptr, idx_ptr, out_ptr, BH, C, rows, H, W, max_bins,
                          IS_MAX: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
                          BLOCK_C: tl.constexpr):
    """channels_last version of _pool_bwd_nchw_kernel: program (block of BLOCK_H rows
    (b, h), w-block, c-block), tile BLOCK_H x BLOCK_W pixels x BLOCK_C channels."""
    if out_ptr.dtype.element_ty == tl.float64:
        ACC: tl.constexpr = tl.float64
    else:
        ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    n_cblk = tl.cdiv(C, BLOCK_C)
    n_wblk = tl.cdiv(W, BLOCK_W)
    cb = pid % n_cblk
    t = pid // n_cblk
    wb = t % n_wblk
    hb = (t // n_wblk).to(tl.int64)
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    bh, hmask, hh, lrow = _nhwc_rows(hb, BH, H, C, c, BLOCK_H)
    rc_mask = hmask[:, None] & cmask[None, :]
    fb = ((hh * rows) // H)[:, None]
    lb = (((hh + 1) * rows + H - 1) // H)[:, None]
    w = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    pm = hmask[:, None] & (w < W)[None, :]
    m = pm[:, :, None] & cmask[None, None, :]
    g_row = lrow * rows
    if IS_MAX:
        row_start = (hh * W)[:, None]
        acc = tl.zeros([BLOCK_H, BLOCK_W, BLOCK_C], dtype=ACC)
        for k in range(0, max_bins):
            i = fb + k
            valid = rc_mask & (i < lb)
            iv = tl.load(idx_ptr + (g_row + i), mask=valid, other=-1)
            gv = tl.load(grad_ptr + (g_row + i), mask=valid, other=0.0).to(ACC)
            # column of the arg-max when it lies in this row, else -1 (int32 compare)
            col = tl.where(valid & (iv >= row_start) & (iv < row_start + W),
                           iv - row_start, -1).to(tl.int32)
            acc += tl.where(col[:, None, :] == w[None, :, None], gv[:, None, :], 0.0)
        res = acc
    else:
        g = tl.zeros([BLOCK_H, BLOCK_C], dtype=ACC)
        Wf = tl.cast(W, ACC)
        for k in range(0, max_bins):
            i = fb + k
            valid = rc_mask & (i < lb)
            gv = tl.load(grad_ptr + (g_row + i), mask=valid, other=0.0).to(ACC)
            kh = (((i + 1) * H + rows - 1) // rows - (i * H) // rows).to(ACC)
            if ACC == tl.float64:
                d = gv / kh / Wf
            else:
                d = tl.div_rn(tl.div_rn(gv, kh), Wf)  # grad / kh / kw, as PyTorch
            g += tl.where(valid, d, 0.0)
        res = g[:, None, :] + tl.zeros([BLOCK_H, BLOCK_W, BLOCK_C], dtype=ACC)
    offs = ((bh[:, None] * W + w[None, :]) * C)[:, :, None] + c[None, None, :]
    tl.store(out_ptr + offs, res.to(out_ptr.dtype.element_ty), mask=m)


KERNELS = {
    "height_interp": _height_interp_kernel,
    "height_interp_backward": _height_interp_backward_kernel,
    "rescale_nchw": _rescale_nchw_kernel,
    "rescale_nhwc": _rescale_nhwc_kernel,
    "rescale_bwd_nchw": _rescale_bwd_nchw_kernel,
    "rescale_bwd_nhwc": _rescale_bwd_nhwc_kernel,
    "pool_nchw": _pool_nchw_kernel,
    "pool_nhwc": _pool_nhwc_kernel,
    "pool_finish": _pool_finish_kernel,
    "pool_bwd_nchw": _pool_bwd_nchw_kernel,
    "pool_bwd_nhwc": _pool_bwd_nhwc_kernel,
}

# ============================================================================
# Launch plans (host side; shapes and dtypes only, no tensors)
# ============================================================================

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


@dataclass
class Launch:
    """One kernel launch: pointer arguments name tensors (``ptrs[arg] = (role, dtype)``)
    that the launcher supplies by role; everything else is fixed by the plan."""

    kernel: Any
    grid: Tuple[int, ...]
    ptrs: Dict[str, Tuple[str, torch.dtype]]
    scalars: Dict[str, int]
    constexprs: Dict[str, Any]
    num_warps: int

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__ if hasattr(self.kernel, "fn") else str(self.kernel)

    def kwargs(self, tensors: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for arg in self.kernel.arg_names:
            if arg in self.ptrs:
                out[arg] = tensors[self.ptrs[arg][0]]
            elif arg in self.scalars:
                out[arg] = self.scalars[arg]
            elif arg in self.constexprs:
                out[arg] = self.constexprs[arg]
            else:  # pragma: no cover - a planning bug
                raise RuntimeError(f"{self.name}: no value planned for argument {arg!r}")
        return out

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


@dataclass
class Plan:
    """Launches in order, and the temporaries (role -> (shape, dtype)) they need."""

    launches: List[Launch]
    temps: Dict[str, Tuple[Tuple[int, ...], torch.dtype]] = field(default_factory=dict)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tile_elems(dtype: torch.dtype) -> int:
    """Elements of a streaming tile: 16 KiB of data (4096 fp32, 8192 fp16/bf16)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(1024, min(8192, 16384 // itemsize))


def _warps(tile: int) -> int:
    return 8 if tile >= 4096 else 4


def pick_block(n: int, hi: int, lo: int = 16, single: float = 0.5) -> int:
    """Power-of-two block for a dimension of size n: one block covering n when that
    keeps at least ``single`` of the lanes busy, else the largest block in [lo, hi]
    that keeps >= 75% busy over ceil(n/block) blocks (lo if none)."""
    n = int(n)
    p = _next_pow2(n)
    if p <= hi and n / p >= single:
        return p
    best = lo
    b = lo
    while b <= hi:
        if n / (_cdiv(n, b) * b) >= 0.75:
            best = b
        b *= 2
    return min(best, p)


def _rows_block(tile: int, block_w: int, n_rows: int) -> int:
    return max(1, min(tile // block_w, _next_pow2(n_rows)))


def _nhwc_blocks(tile: int, C: int, W: int, n_rows: int, c_hi: int = 256) -> Tuple[int, int, int]:
    """(BLOCK_H, BLOCK_W, BLOCK_C) of a channels_last tile: channels first, then pixels
    of one row, then, only when a whole row fits, several rows (short rows)."""
    bc = pick_block(C, c_hi, lo=16)
    bw = _rows_block(tile, bc, W)
    bh = 1
    if bw >= W:
        bh = max(1, min(tile // (bc * bw), _next_pow2(n_rows)))
    return bh, bw, bc


def _check_layout(layout: str) -> bool:
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f'layout must be "nchw" or "nhwc", got {layout!r}')
    return layout == "nhwc"


def plan_height_interp(R: int, h_in: int, size: int, dtype: torch.dtype) -> Plan:
    """a (R, h_in) -> out (R, size); roles: a, out."""
    block_s = pick_block(size, 256, lo=16)
    block_r = _rows_block(2048, block_s, R)
    grid = (_cdiv(R, block_r) * _cdiv(size, block_s),)
    return Plan([Launch(
        _height_interp_kernel, grid,
        {"a_ptr": ("a", dtype), "out_ptr": ("out", dtype)},
        {"R": R, "h_in": h_in, "size": size},
        {"BLOCK_R": block_r, "BLOCK_S": block_s}, 4)])


def _interp_window(h_in: int, size: int) -> int:
    # Candidate outputs per input: the rational range of i0 in {j-1, j} spans
    # 2*size/h_in positions, plus 1 on each side for rounding at exact boundaries,
    # plus floor/ceil slop; inputs 0 and 1 also see the clamped outputs (src < 0).
    return _cdiv(3 * size, h_in) + 6


def _interp_backward_launch(R: int, h_in: int, size: int, g_role: str, g_dtype: torch.dtype,
                            out_dtype: torch.dtype, n_parts: int, sigmoid_grad: bool,
                            logits_role: str) -> Launch:
    win = _interp_window(h_in, size)
    block_j = pick_block(h_in, 32, lo=16)
    block_k = min(_next_pow2(win), 64)
    block_r = _rows_block(4096, block_j * block_k, R)
    grid = (_cdiv(R, block_r) * _cdiv(h_in, block_j),)
    return Launch(
        _height_interp_backward_kernel, grid,
        {"g_ptr": (g_role, g_dtype), "out_ptr": ("out", out_dtype),
         "logits_ptr": (logits_role, out_dtype)},
        {"R": R, "h_in": h_in, "size": size, "n_parts": n_parts, "part_stride": R * size,
         "win": win},
        {"SIGMOID_GRAD": sigmoid_grad, "BLOCK_R": block_r, "BLOCK_J": block_j,
         "BLOCK_K": block_k}, 4)


def plan_height_interp_backward(R: int, h_in: int, size: int, dtype: torch.dtype) -> Plan:
    """grad (R, size) -> out (R, h_in); roles: grad, out."""
    return Plan([_interp_backward_launch(R, h_in, size, "grad", dtype, dtype, 1, False, "out")])


def plan_attention_rescale(B: int, C: int, H: int, W: int, h_in: int, dtype: torch.dtype,
                           layout: str) -> Plan:
    """feat (B, C, H, W) -> out; roles: feat, logits, out."""
    tile = _tile_elems(dtype)
    ptrs = {"feat_ptr": ("feat", dtype), "logits_ptr": ("logits", dtype), "out_ptr": ("out", dtype)}
    if not _check_layout(layout):
        R = B * C * H
        bw = pick_block(W, 256, lo=16)
        br = _rows_block(tile, bw, R)
        grid = (_cdiv(R, br) * _cdiv(W, bw),)
        return Plan([Launch(_rescale_nchw_kernel, grid, ptrs,
                            {"R": R, "H": H, "W": W, "h_in": h_in},
                            {"BLOCK_R": br, "BLOCK_W": bw}, _warps(br * bw))])
    bh, bw, bc = _nhwc_blocks(tile, C, W, B * H)
    grid = (_cdiv(B * H, bh) * _cdiv(W, bw) * _cdiv(C, bc),)
    return Plan([Launch(_rescale_nhwc_kernel, grid, ptrs,
                        {"BH": B * H, "H": H, "W": W, "C": C, "h_in": h_in},
                        {"BLOCK_H": bh, "BLOCK_W": bw, "BLOCK_C": bc}, _warps(bh * bw * bc))])


def plan_attention_rescale_backward(B: int, C: int, H: int, W: int, h_in: int,
                                    dtype: torch.dtype, layout: str) -> Plan:
    """roles: grad, feat, logits (inputs), grad_feat, out (= grad_logits) outputs, and the
    temporary ``part`` (n_split, B*C*H) fp32 (fp64 for fp64) of width partial sums."""
    tile = _tile_elems(dtype)
    acc = _acc_dtype(dtype)
    R = B * C * H
    ptrs = {"grad_ptr": ("grad", dtype), "feat_ptr": ("feat", dtype),
            "logits_ptr": ("logits", dtype), "gfeat_ptr": ("grad_feat", dtype),
            "part_ptr": ("part", acc)}
    if not _check_layout(layout):
        bw = pick_block(W, 256, lo=16)
        br = _rows_block(tile, bw, R)
        base = _cdiv(R, br)
        n_wblk = _cdiv(W, bw)
        n_split = max(1, min(n_wblk, _cdiv(TARGET_PROGRAMS, base)))
        wps = _cdiv(n_wblk, n_split) * bw
        n_split = _cdiv(W, wps)
        first = Launch(_rescale_bwd_nchw_kernel, (base * n_split,), ptrs,
                       {"R": R, "H": H, "W": W, "h_in": h_in, "w_per_split": wps},
                       {"BLOCK_R": br, "BLOCK_W": bw}, _warps(br * bw))
    else:
        bh, bw, bc = _nhwc_blocks(tile, C, W, B * H)
        base = _cdiv(B * H, bh) * _cdiv(C, bc)
        n_wblk = _cdiv(W, bw)
        n_split = max(1, min(n_wblk, _cdiv(TARGET_PROGRAMS, base)))
        wps = _cdiv(n_wblk, n_split) * bw
        n_split = _cdiv(W, wps)
        first = Launch(_rescale_bwd_nhwc_kernel, (base * n_split,), ptrs,
                       {"BH": B * H, "H": H, "W": W, "C": C, "h_in": h_in, "w_per_split": wps},
                       {"BLOCK_H": bh, "BLOCK_W": bw, "BLOCK_C": bc}, _warps(bh * bw * bc))
    second = _interp_backward_launch(B * C, h_in, H, "part", acc, dtype, n_split, True, "logits")
    return Plan([first, second], temps={"part": ((n_split, R), acc)})


def plan_width_pool(B: int, C: int, H: int, W: int, rows: int, mode: str, dtype: torch.dtype,
                    layout: str) -> Plan:
    """x (B, C, H, W) -> out (B, C, rows) [, idx int64]; roles: x, out, idx, and for
    channels_last reductions split in several programs the temporaries pval (acc dtype)
    and pidx (int64), both (n_split, B*C*rows)."""
    is_max = mode == "max"
    # the arg-max bookkeeping needs more registers per element: smaller tiles
    tile = min(_tile_elems(dtype), 4096) if is_max else _tile_elems(dtype)
    max_kh = _max_bin_rows(H, rows)
    idx_role = "idx" if is_max else "out"
    idx_dtype = torch.int64 if is_max else dtype
    if not _check_layout(layout):
        nseg = B * C * rows
        max_len = max_kh * W
        bl = pick_block(max_len, 1024, lo=16, single=0.75)
        bs = _rows_block(tile, bl, nseg)
        return Plan([Launch(
            _pool_nchw_kernel, (_cdiv(nseg, bs),),
            {"x_ptr": ("x", dtype), "out_ptr": ("out", dtype), "idx_ptr": (idx_role, idx_dtype)},
            {"NSEG": nseg, "rows": rows, "H": H, "W": W, "n_iter": _cdiv(max_len, bl)},
            {"IS_MAX": is_max, "BLOCK_S": bs, "BLOCK_L": bl}, _warps(bs * bl))])
    max_pix = max_kh * W
    bs, bp, bc = _nhwc_blocks(tile, C, max_pix, B * rows, c_hi=64)
    base = _cdiv(B * rows, bs) * _cdiv(C, bc)
    n_pblk = _cdiv(max_pix, bp)
    n_split = max(1, min(n_pblk, _cdiv(TARGET_PROGRAMS, base)))
    pps = _cdiv(n_pblk, n_split) * bp
    n_split = _cdiv(max_pix, pps)
    final = n_split == 1
    acc = _acc_dtype(dtype)
    if final:
        ptrs = {"x_ptr": ("x", dtype), "val_ptr": ("out", dtype), "idx_ptr": (idx_role, idx_dtype)}
    else:
        ptrs = {"x_ptr": ("x", dtype), "val_ptr": ("pval", acc),
                "idx_ptr": ("pidx" if is_max else "pval", torch.int64 if is_max else acc)}
    main = Launch(_pool_nhwc_kernel, (base * n_split,), ptrs,
                  {"B": B, "C": C, "rows": rows, "H": H, "W": W, "pix_per_split": pps,
                   "n_split": n_split, "max_pix": max_pix},
                  {"IS_MAX": is_max, "FINAL": final, "BLOCK_S": bs, "BLOCK_P": bp,
                   "BLOCK_C": bc},
                  _warps(bs * bp * bc))
    if final:
        return Plan([main])
    n = B * C * rows
    blk = min(1024, _next_pow2(n))
    finish = Launch(_pool_finish_kernel, (_cdiv(n, blk),),
                    {"pval_ptr": ("pval", acc),
                     "pidx_ptr": ("pidx" if is_max else "pval", torch.int64 if is_max else acc),
                     "out_ptr": ("out", dtype), "idx_ptr": (idx_role, idx_dtype)},
                    {"N": n, "rows": rows, "H": H, "W": W, "n_split": n_split},
                    {"IS_MAX": is_max, "BLOCK": blk}, 4)
    temps = {"pval": ((n_split, n), acc)}
    if is_max:
        temps["pidx"] = ((n_split, n), torch.int64)
    return Plan([main, finish], temps=temps)


def _max_bin_rows(H: int, rows: int) -> int:
    """Rows of the longest adaptive bin (exact; an upper bound for huge ``rows``)."""
    if H % rows == 0:
        return H // rows
    if rows > 65536:
        return _cdiv(H, rows) + 1
    return max(((i + 1) * H + rows - 1) // rows - (i * H) // rows for i in range(rows))


def plan_width_pool_backward(B: int, C: int, rows: int, H: int, W: int, mode: str,
                             dtype: torch.dtype, layout: str) -> Plan:
    """grad (B, C, rows) [+ indices] -> out (B, C, H, W); roles: grad, idx, out."""
    is_max = mode == "max"
    max_bins = rows // H + 2  # bins containing one row: at most ceil(rows/H) + 1
    # max: per-row bin state lives across the bin loop, keep few rows per thread
    tile = 2048 if is_max else _tile_elems(dtype)
    ptrs = {"grad_ptr": ("grad", dtype),
            "idx_ptr": ("idx", torch.int64) if is_max else ("grad", dtype),
            "out_ptr": ("out", dtype)}
    if not _check_layout(layout):
        R = B * C * H
        bw = pick_block(W, 256, lo=16)
        br = _rows_block(tile, bw, R)
        return Plan([Launch(
            _pool_bwd_nchw_kernel, (_cdiv(R, br) * _cdiv(W, bw),), ptrs,
            {"R": R, "rows": rows, "H": H, "W": W, "max_bins": max_bins},
            {"IS_MAX": is_max, "BLOCK_R": br, "BLOCK_W": bw},
            8 if is_max and br * bw >= 2048 else _warps(br * bw))])
    bh, bw, bc = _nhwc_blocks(tile, C, W, B * H)
    return Plan([Launch(
        _pool_bwd_nhwc_kernel, (_cdiv(B * H, bh) * _cdiv(W, bw) * _cdiv(C, bc),), ptrs,
        {"BH": B * H, "C": C, "rows": rows, "H": H, "W": W, "max_bins": max_bins},
        {"IS_MAX": is_max, "BLOCK_H": bh, "BLOCK_W": bw, "BLOCK_C": bc},
        _warps(bh * bw * bc))])


# ============================================================================
# Representative launches (for the ahead-of-time compile test)
# ============================================================================

POOL_SHAPES = ((2, 1024, 96, 96), (2, 304, 192, 192))
RESCALE_SHAPES = ((2, 2048, 96, 96), (2, 256, 192, 192))
HANET_ROWS = 16


def launch_configs(dtype: torch.dtype = torch.float32,
                   pool_shapes: Sequence[Tuple[int, int, int, int]] = POOL_SHAPES,
                   rescale_shapes: Sequence[Tuple[int, int, int, int]] = RESCALE_SHAPES,
                   rows: int = HANET_ROWS) -> List[Tuple[str, Launch]]:
    """(label, launch) for every launch the ops make at representative HANet shapes,
    both layouts, both pool modes, forward and backward."""
    out: List[Tuple[str, Launch]] = []

    def add(label: str, plan: Plan) -> None:
        for k, launch in enumerate(plan.launches):
            out.append((f"{label}#{k}:{launch.name}", launch))

    for (B, C, H, W) in pool_shapes:
        for layout in ("nchw", "nhwc"):
            for mode in ("mean", "max"):
                tag = f"{B}x{C}x{H}x{W}/{layout}/{mode}"
                add(f"width_pool/{tag}", plan_width_pool(B, C, H, W, rows, mode, dtype, layout))
                add(f"width_pool_backward/{tag}",
                    plan_width_pool_backward(B, C, rows, H, W, mode, dtype, layout))
        add(f"height_interp/{B}x{C}:{rows}->{H}", plan_height_interp(B * C, rows, H, dtype))
        add(f"height_interp_backward/{B}x{C}:{H}->{rows}",
            plan_height_interp_backward(B * C, rows, H, dtype))
    for (B, C, H, W) in rescale_shapes:
        for layout in ("nchw", "nhwc"):
            tag = f"{B}x{C}x{H}x{W}/{layout}/h={rows}"
            add(f"attention_rescale/{tag}",
                plan_attention_rescale(B, C, H, W, rows, dtype, layout))
            add(f"attention_rescale_backward/{tag}",
                plan_attention_rescale_backward(B, C, H, W, rows, dtype, layout))
    return out
