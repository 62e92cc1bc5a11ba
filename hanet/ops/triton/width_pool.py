"""width_pool on Triton: (B, C, H, W) -> (B, C, rows), adaptive mean / max over bins of
rows, and its backward.  Kernels, launch plans and the ``hanet_triton`` ops.

Forward.  NCHW: a bin of one plane is one contiguous run of (rows of bin)*W elements
(its memory order is the scan order): tiles of BLOCK_S bins x BLOCK_L elements reduce
into fp32.  channels_last: a bin is a contiguous run of pixels; tiles BLOCK_S bins x
BLOCK_P pixels x BLOCK_C channels; when there are few programs the run is split and
_pool_finish_kernel combines the partial results in order.  Positions inside a bin are
int64: a bin of 2**31 elements or more must not wrap.

Backward: a gather, every element written once, no atomics; one helper gives the
gradient of a tile for both layouts.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op

from .common import (NAMESPACE, Call, CallCache, Launch, Plan, acc_constexpr, acc_dtype,
                     cached_plan, cdiv, check_layout, launch, layout_of, mean_div, nhwc_blocks,
                     nhwc_program, nhwc_rows, next_pow2, outputs, pick_block, rows_block, run,
                     split_extent, split_rows, tile_elems, validate, warps)

_BIG = tl.constexpr(0x7FFFFFFFFFFFFFFF)  # past any int64 position (jit globals must be constexpr)


@triton.jit
def _max_chunk(v, valid, pos, cur, cur_idx, AXIS: tl.constexpr):
    """Fold one chunk (scanned in order along AXIS) into the running (max, arg-max).

    PyTorch's rule: a new maximum when strictly greater, or NaN.  Within the chunk this
    is the first occurrence of the maximum, or the last NaN; a chunk replaces the
    running state under the same rule.  ``pos`` (int64, broadcast against ``v``) holds
    the scan positions of ``v`` relative to the start of the bin.
    """
    isn = (v != v) & valid
    vm = tl.where(valid, tl.where(isn, float("-inf"), v), float("-inf"))
    cmax = tl.max(vm, axis=AXIS)
    has_nan = tl.max(isn.to(tl.int32), axis=AXIS) > 0
    nan_pos = tl.max(tl.where(isn, pos, -1), axis=AXIS)
    is_max = valid & (vm == tl.expand_dims(cmax, AXIS))
    first = tl.min(tl.where(is_max, pos, _BIG), axis=AXIS)
    cval = tl.where(has_nan, float("nan"), cmax)
    cidx = tl.where(has_nan, nan_pos, first)
    take = (cval > cur) | has_nan
    return tl.where(take, cval, cur), tl.where(take, cidx, cur_idx)


@triton.jit
def _bin_rows(i, rows, H):
    """[hs, he): the input rows of adaptive bin i (int64)."""
    return (i * H) // rows, ((i + 1) * H + rows - 1) // rows


@triton.jit(do_not_specialize=["NSEG", "n_iter"])
def _pool_nchw_kernel(x_ptr, out_ptr, idx_ptr, NSEG, rows, H, W, n_iter,
                      IS_MAX: tl.constexpr, ACC: tl.constexpr, BLOCK_S: tl.constexpr,
                      BLOCK_L: tl.constexpr):
    """NCHW: segment s = (b*C + c)*rows + i is bin i of plane (b, c), a contiguous run
    of (he - hs)*W elements starting at row hs.  Tile: BLOCK_S segments x BLOCK_L elements,
    n_iter chunks; memory order is the scan order, so the flat index is hs*W + offset."""
    pid = tl.program_id(0).to(tl.int64)
    seg = pid * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = seg < NSEG
    bc = seg // rows
    i = seg - bc * rows
    hs, he = _bin_rows(i, rows, H)
    length = (he - hs) * W
    base = bc * H * W + hs * W
    if IS_MAX:
        cur = tl.full([BLOCK_S], float("-inf"), ACC)
    else:
        cur = tl.zeros([BLOCK_S], dtype=ACC)
    cur_idx = tl.zeros([BLOCK_S], dtype=tl.int64)  # offset in the bin: 0 = its start
    for it in range(0, n_iter):
        l = tl.cast(it, tl.int64) * BLOCK_L + tl.arange(0, BLOCK_L)
        m = smask[:, None] & (l[None, :] < length[:, None])
        offs = base[:, None] + l[None, :]
        if IS_MAX:
            v = tl.load(x_ptr + offs, mask=m, other=float("-inf")).to(ACC)
            cur, cur_idx = _max_chunk(v, m, l[None, :], cur, cur_idx, 1)
        else:
            cur += tl.sum(tl.load(x_ptr + offs, mask=m, other=0.0).to(ACC), axis=1)
    if IS_MAX:
        tl.store(idx_ptr + seg, hs * W + cur_idx, mask=smask)
    else:
        cur = mean_div(cur, he - hs, W)
    tl.store(out_ptr + seg, cur.to(out_ptr.dtype.element_ty), mask=smask)


@triton.jit(do_not_specialize=["B", "pix_per_split", "n_split", "max_pix"])
def _pool_nhwc_kernel(x_ptr, val_ptr, idx_ptr, B, C, rows, H, W, pix_per_split, n_split,
                      max_pix, IS_MAX: tl.constexpr, FINAL: tl.constexpr, ACC: tl.constexpr,
                      BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """channels_last: bin i of image b is the contiguous pixel run [hs*W, he*W) (pixel
    order is the scan order, the pixel index is the flat index).  Program (block of
    BLOCK_S bins s = b*rows + i, split, c-block) reduces pixels
    [hs*W + split*pix_per_split, ...) of each of its bins in tiles of BLOCK_S bins x
    BLOCK_P pixels x BLOCK_C channels (BLOCK_S > 1 only for short bins, unsplit).
    FINAL: write the result (one split); else write partial results at
    [split, b, c, bin] for _pool_finish_kernel.  max_pix: pixels of the longest bin."""
    sb, sp, c, cmask = nhwc_program(tl.program_id(0), C, n_split, BLOCK_C)
    seg = sb * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = seg < B * rows
    b = seg // rows
    i = seg - b * rows
    hs, he = _bin_rows(i, rows, H)
    # pixel offsets q inside each bin (int64); the pixel index is hs*W + q
    q_start = tl.cast(sp, tl.int64) * pix_per_split
    q_stop = tl.minimum(q_start + pix_per_split, max_pix)
    q_end = tl.minimum(q_start + pix_per_split, (he - hs) * W)  # [BLOCK_S]
    first_pix = (b * H + hs) * W
    if IS_MAX:
        cur = tl.full([BLOCK_S, BLOCK_C], float("-inf"), ACC)
    else:
        cur = tl.zeros([BLOCK_S, BLOCK_C], dtype=ACC)
    cur_idx = tl.zeros([BLOCK_S, BLOCK_C], dtype=tl.int64)
    for q0 in range(q_start, q_stop, BLOCK_P):
        q = tl.cast(q0, tl.int64) + tl.arange(0, BLOCK_P)
        pm = smask[:, None] & (q[None, :] < q_end[:, None])
        m = pm[:, :, None] & cmask[None, None, :]
        offs = ((first_pix[:, None] + q[None, :]) * C)[:, :, None] + c[None, None, :]
        if IS_MAX:
            v = tl.load(x_ptr + offs, mask=m, other=float("-inf")).to(ACC)
            cur, cur_idx = _max_chunk(v, m, q[None, :, None], cur, cur_idx, 1)
        else:
            cur += tl.sum(tl.load(x_ptr + offs, mask=m, other=0.0).to(ACC), axis=1)
    o_offs = ((sp * B + b[:, None]) * C + c[None, :]) * rows + i[:, None]
    om = smask[:, None] & cmask[None, :]
    if IS_MAX:
        tl.store(idx_ptr + o_offs, (hs * W)[:, None] + cur_idx, mask=om)
    elif FINAL:
        cur = mean_div(cur, (he - hs)[:, None], W)
    tl.store(val_ptr + o_offs, cur.to(val_ptr.dtype.element_ty), mask=om)


@triton.jit(do_not_specialize=["n_split"])
def _pool_finish_kernel(pval_ptr, pidx_ptr, out_ptr, idx_ptr, N, rows, H, W, n_split,
                        IS_MAX: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Combines the n_split partial results [split, N] of _pool_nhwc_kernel in scan order."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = e < N
    hs, he = _bin_rows(e % rows, rows, H)
    if IS_MAX:
        cur = tl.full([BLOCK], float("-inf"), ACC)
    else:
        cur = tl.zeros([BLOCK], dtype=ACC)
    cur_idx = hs * W
    for s in range(0, n_split):
        v = tl.load(pval_ptr + (s * N + e), mask=m, other=0.0).to(ACC)
        if IS_MAX:
            ix = tl.load(pidx_ptr + (s * N + e), mask=m, other=0)
            take = (v > cur) | (v != v)
            cur = tl.where(take, v, cur)
            cur_idx = tl.where(take, ix, cur_idx)
        else:
            cur += v
    if IS_MAX:
        tl.store(idx_ptr + e, cur_idx, mask=m)
    else:
        cur = mean_div(cur, he - hs, W)
    tl.store(out_ptr + e, cur.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _row_grad(grad_ptr, idx_ptr, g_row, hh, mask, w, rows, H, W, max_bins,
              IS_MAX: tl.constexpr, ACC: tl.constexpr):
    """Gradient of input row hh at columns w (broadcast together), the bins containing
    hh being [fb, lb) of the grad row starting at g_row (int64).
    mean: every element of row hh gets sum_i grad[i] / kh_i / W.
    max: element (hh, w) gets the sum of grad[i] over those bins with indices[i] == hh*W+w."""
    fb = (hh * rows) // H
    lb = ((hh + 1) * rows + H - 1) // H
    res = tl.where(mask & (w >= 0), 0.0, 0.0).to(ACC)  # zeros of the tile's shape
    row = tl.where(mask, 0.0, 0.0).to(ACC)  # mean: one value per row, broadcast at the end
    for k in range(0, max_bins):
        i = fb + k
        valid = (i < lb) & mask
        gv = tl.load(grad_ptr + (g_row + i), mask=valid, other=0.0).to(ACC)
        if IS_MAX:
            iv = tl.load(idx_ptr + (g_row + i), mask=valid, other=-1)
            # column of the arg-max when it lies in this row, else -1 (int32 compare)
            row_start = hh * W
            col = tl.where(valid & (iv >= row_start) & (iv < row_start + W),
                           iv - row_start, -1).to(tl.int32)
            res += tl.where(col == w, gv, 0.0)
        else:
            kh = ((i + 1) * H + rows - 1) // rows - (i * H) // rows
            row += tl.where(valid, mean_div(gv, kh, W), 0.0)
    return res + row


@triton.jit(do_not_specialize=["R", "max_bins"])
def _pool_bwd_nchw_kernel(grad_ptr, idx_ptr, out_ptr, R, rows, H, W, max_bins,
                          IS_MAX: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr,
                          BLOCK_W: tl.constexpr):
    """NCHW: rows r = (b*C + c)*H + h, tile BLOCK_R rows x BLOCK_W columns."""
    r, bc, hh, wb = split_rows(tl.program_id(0), tl.cdiv(W, BLOCK_W), H, BLOCK_R)
    rmask = r < R
    cols = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    # int64: h * rows and i * H pass 2**31 (e.g. 65539 rows pooled to 65535 bins), and
    # so does the flat index h * W of a large plane
    res = _row_grad(grad_ptr, idx_ptr, (bc * rows)[:, None], hh.to(tl.int64)[:, None],
                    rmask[:, None], cols[None, :], rows, H, W, max_bins, IS_MAX, ACC)
    m = rmask[:, None] & (cols < W)[None, :]
    tl.store(out_ptr + (r[:, None] * W + cols[None, :]), res.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["BH", "max_bins"])
def _pool_bwd_nhwc_kernel(grad_ptr, idx_ptr, out_ptr, BH, C, rows, H, W, max_bins,
                          IS_MAX: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """channels_last: program (block of BLOCK_H rows (b, h), w-block, c-block), tile
    BLOCK_H x BLOCK_W pixels x BLOCK_C channels."""
    hb, wb, c, cmask = nhwc_program(tl.program_id(0), C, tl.cdiv(W, BLOCK_W), BLOCK_C)
    bh, hmask, hh, lrow = nhwc_rows(hb, BH, H, C, c, BLOCK_H)
    w = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    rc_mask = hmask[:, None] & cmask[None, :]
    res = _row_grad(grad_ptr, idx_ptr, (lrow * rows)[:, None, :], hh[:, None, None],
                    rc_mask[:, None, :], w[None, :, None], rows, H, W, max_bins, IS_MAX, ACC)
    m = (hmask[:, None] & (w < W)[None, :])[:, :, None] & cmask[None, None, :]
    offs = ((bh[:, None] * W + w[None, :]) * C)[:, :, None] + c[None, None, :]
    tl.store(out_ptr + offs, res.to(out_ptr.dtype.element_ty), mask=m)


def _max_bin_rows(H: int, rows: int) -> int:
    """Rows of the longest adaptive bin (exact; an upper bound for huge ``rows``)."""
    if H % rows == 0:
        return H // rows
    if rows > 65536:
        return cdiv(H, rows) + 1
    return max(((i + 1) * H + rows - 1) // rows - (i * H) // rows for i in range(rows))


@cached_plan
def plan_width_pool(B: int, C: int, H: int, W: int, rows: int, mode: str, dtype: torch.dtype,
                    layout: str) -> Plan:
    """x (B, C, H, W) -> out (B, C, rows) [, idx int64]; roles: x, out, idx, and for
    channels_last reductions split in several programs the temporaries pval (acc dtype)
    and pidx (int64), both (n_split, B*C*rows)."""
    is_max = mode == "max"
    # the arg-max bookkeeping needs more registers per element: smaller tiles
    tile = min(tile_elems(dtype), 4096) if is_max else tile_elems(dtype)
    max_len = _max_bin_rows(H, rows) * W
    idx = ("idx", torch.int64) if is_max else ("out", dtype)
    consts = {"IS_MAX": is_max, "ACC": acc_constexpr(dtype)}
    if not check_layout(layout):
        nseg = B * C * rows
        bl = pick_block(max_len, 1024, lo=16, single=0.75)
        bs = rows_block(tile, bl, nseg)
        return Plan([Launch(
            _pool_nchw_kernel, (cdiv(nseg, bs),),
            {"x_ptr": ("x", dtype), "out_ptr": ("out", dtype), "idx_ptr": idx},
            {"NSEG": nseg, "rows": rows, "H": H, "W": W, "n_iter": cdiv(max_len, bl)},
            {**consts, "BLOCK_S": bs, "BLOCK_L": bl}, warps(bs * bl))])
    bs, bp, bc = nhwc_blocks(tile, C, max_len, B * rows, c_hi=64)
    base = cdiv(B * rows, bs) * cdiv(C, bc)
    pps, n_split = split_extent(max_len, bp, base)
    final = n_split == 1
    acc = acc_dtype(dtype)
    part_idx = ("pidx", torch.int64) if is_max else ("pval", acc)
    main = Launch(_pool_nhwc_kernel, (base * n_split,),
                  {"x_ptr": ("x", dtype), "val_ptr": ("out", dtype) if final else ("pval", acc),
                   "idx_ptr": idx if final else part_idx},
                  {"B": B, "C": C, "rows": rows, "H": H, "W": W, "pix_per_split": pps,
                   "n_split": n_split, "max_pix": max_len},
                  {**consts, "FINAL": final, "BLOCK_S": bs, "BLOCK_P": bp, "BLOCK_C": bc},
                  warps(bs * bp * bc))
    if final:
        return Plan([main])
    n = B * C * rows
    blk = min(1024, next_pow2(n))
    finish = Launch(_pool_finish_kernel, (cdiv(n, blk),),
                    {"pval_ptr": ("pval", acc), "pidx_ptr": part_idx, "out_ptr": ("out", dtype),
                     "idx_ptr": idx},
                    {"N": n, "rows": rows, "H": H, "W": W, "n_split": n_split},
                    {**consts, "BLOCK": blk}, 4)
    temps = {"pval": ((n_split, n), acc)}
    if is_max:
        temps["pidx"] = ((n_split, n), torch.int64)
    return Plan([main, finish], temps=temps)


@cached_plan
def plan_width_pool_backward(B: int, C: int, rows: int, H: int, W: int, mode: str,
                             dtype: torch.dtype, layout: str) -> Plan:
    """grad (B, C, rows) [+ indices] -> out (B, C, H, W); roles: grad, idx, out."""
    is_max = mode == "max"
    max_bins = rows // H + 2  # bins containing one row: at most ceil(rows/H) + 1
    # max: per-row bin state lives across the bin loop, keep few rows per thread
    tile = 2048 if is_max else tile_elems(dtype)
    ptrs = {"grad_ptr": ("grad", dtype),
            "idx_ptr": ("idx", torch.int64) if is_max else ("grad", dtype),
            "out_ptr": ("out", dtype)}
    consts = {"IS_MAX": is_max, "ACC": acc_constexpr(dtype)}
    if not check_layout(layout):
        R = B * C * H
        bw = pick_block(W, 256, lo=16)
        br = rows_block(tile, bw, R)
        return Plan([Launch(
            _pool_bwd_nchw_kernel, (cdiv(R, br) * cdiv(W, bw),), ptrs,
            {"R": R, "rows": rows, "H": H, "W": W, "max_bins": max_bins},
            {**consts, "BLOCK_R": br, "BLOCK_W": bw},
            8 if is_max and br * bw >= 2048 else warps(br * bw))])
    bh, bw, bc = nhwc_blocks(tile, C, W, B * H)
    return Plan([Launch(
        _pool_bwd_nhwc_kernel, (cdiv(B * H, bh) * cdiv(W, bw) * cdiv(C, bc),), ptrs,
        {"BH": B * H, "C": C, "rows": rows, "H": H, "W": W, "max_bins": max_bins},
        {**consts, "BLOCK_H": bh, "BLOCK_W": bw, "BLOCK_C": bc}, warps(bh * bw * bc))])


_FWD_CALLS = CallCache("width_pool")
_BWD_CALLS = CallCache("width_pool_backward")


def _width_pool(x: Tensor, rows: int, mode: str = "mean",
                direct: bool = False) -> tuple[Tensor, Tensor]:
    key = None
    if type(x) is Tensor:
        key = (x.shape, x.stride(), x.dtype, x.device, rows, mode)
        call = _FWD_CALLS.get(key)
        if call is not None:  # checked and planned before: allocate and launch
            out, idx = call.outputs()
            if call.plan is not None:
                launch(call.plan, {"x": x if call.flags[0] else x.contiguous(), "out": out,
                                   "idx": idx}, call.device, direct)
            return out, idx
    validate("width_pool", x, rows, mode)
    out, idx = outputs("width_pool", x, rows, mode)
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    x, layout = layout_of(x)
    plan = run(plan_width_pool, (*x.shape, rows), {"x": x, "out": out, "idx": idx}, x.device,
               mode, x.dtype, layout, direct=direct)
    _FWD_CALLS.put(key, Call(plan, (out, idx), x.device, (dense,)))
    return out, idx


def _width_pool_backward(grad: Tensor, indices: Tensor, height: int, width: int, mode: str,
                         channels_last: bool, direct: bool = False) -> Tensor:
    key = None
    if type(grad) is Tensor and type(indices) is Tensor:
        key = (grad.shape, grad.stride(), grad.dtype, grad.device, indices.shape,
               indices.stride(), indices.dtype, indices.device, height, width, mode,
               channels_last)
        call = _BWD_CALLS.get(key)
        if call is not None:  # checked and planned before: allocate and launch
            (out,) = call.outputs()
            if call.plan is not None:
                dense_grad, dense_idx = call.flags
                launch(call.plan, {"grad": grad if dense_grad else grad.contiguous(),
                                   "idx": indices if dense_idx else indices.contiguous(),
                                   "out": out}, call.device, direct)
            return out
    validate("width_pool_backward", grad, indices, height, width, mode, channels_last)
    out = outputs("width_pool_backward", grad, indices, height, width, mode, channels_last)
    dense_idx = mode != "max" or indices.is_contiguous()
    dense_grad = grad.is_contiguous()
    indices = indices.contiguous() if mode == "max" else indices
    grad = grad.contiguous()
    B, C, rows = grad.shape
    plan = run(plan_width_pool_backward, (B, C, rows, height, width),
               {"grad": grad, "idx": indices, "out": out}, grad.device, mode, grad.dtype,
               "nhwc" if channels_last else "nchw", direct=direct)
    _BWD_CALLS.put(key, Call(plan, (out,), grad.device, (dense_grad, dense_idx)))
    return out


@triton_op(f"{NAMESPACE}::width_pool", mutates_args=())
def width_pool(x: Tensor, rows: int, mode: str = "mean") -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> (B, C, rows) adaptive average or max pooling to (rows, 1), and
    for mode="max" the int64 arg-max flat index h*W + w (else an empty int64 tensor)."""
    return _width_pool(x, rows, mode)


@triton_op(f"{NAMESPACE}::width_pool_backward", mutates_args=())
def width_pool_backward(grad: Tensor, indices: Tensor, height: int, width: int, mode: str,
                        channels_last: bool) -> Tensor:
    """(B, C, rows) -> (B, C, height, width), channels_last memory format if the flag."""
    return _width_pool_backward(grad, indices, height, width, mode, channels_last)


KERNELS = {"pool_nchw": _pool_nchw_kernel, "pool_nhwc": _pool_nhwc_kernel,
           "pool_finish": _pool_finish_kernel, "pool_bwd_nchw": _pool_bwd_nchw_kernel,
           "pool_bwd_nhwc": _pool_bwd_nhwc_kernel}
OPS = {"width_pool": (width_pool, ("pool_nchw", "pool_nhwc", "pool_finish")),
       "width_pool_backward": (width_pool_backward, ("pool_bwd_nchw", "pool_bwd_nhwc"))}
# The launchers without triton_op's wrapper, for hanet.ops.triton.register_direct.
DIRECT = {"width_pool": _width_pool, "width_pool_backward": _width_pool_backward}
