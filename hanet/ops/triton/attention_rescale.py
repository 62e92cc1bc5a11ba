"""attention_rescale on Triton: out = feat * A, A = interp(sigmoid(logits), H), and its
fused backward.  Kernels, launch plans and the ``hanet_triton`` ops.

One streaming kernel per layout serves both directions (BACKWARD constexpr):
forward: out = feat * A; backward: grad_feat = grad * A and the width sums of
grad * feat, from one read of grad and feat.  NCHW tiles BLOCK_R rows (b, c, h) x
BLOCK_W columns; channels_last tiles BLOCK_H rows (b, h) x BLOCK_W pixels x BLOCK_C
channels (BLOCK_H > 1 only for short rows).  A is computed once per row (per row and
channel) of a tile, in fp32 (fp64 for fp64).  Each program covers a split of its rows'
width: one block in the forward; in the backward the whole row, or a split of it when
there are too few rows (fp32 partial sums (n_split, B*C*H)), which the interpolation
adjoint of :mod:`.height_interp` then sums, with s*(1-s), into grad_logits.
With ``feat_is_output`` the backward reads the forward's output (feat * A) in feat's
place and divides each row sum by A (A > 0), so autograd need not keep feat.  With
``attention_grad`` the row sums are the answer (the gradient of A, (B, C, H)): the second
kernel only sums the splits (the interpolation adjoint at H -> H is the identity).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op

from .common import (NAMESPACE, Call, CallCache, Launch, Plan, acc_constexpr, acc_dtype,
                     attention, cached_plan, cdiv, check_layout, feat_dot_from_result, launch,
                     layout_of, memory_format, nhwc_blocks, nhwc_program, nhwc_rows, outputs, pick_block, rows_block, run,
                     split_extent, split_rows, tile_elems, validate, warps)
from .height_interp import interp_backward_launch


@triton.jit(do_not_specialize=["R"])
def _rescale_nchw_kernel(in_ptr, feat_ptr, logits_ptr, out_ptr, part_ptr, R, H, W, h_in,
                         w_per_split, BACKWARD: tl.constexpr, FEAT_IS_OUTPUT: tl.constexpr,
                         ACC: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
    """NCHW rows r = (b*C + c)*H + h of length W.  Program (row block, width split):
    out = in * A over its columns, and (BACKWARD) part[split, r] = sum over its columns
    of in * feat.  w_per_split is a multiple of BLOCK_W."""
    rows, bc, hh, sp = split_rows(tl.program_id(0), tl.cdiv(W, w_per_split), H, BLOCK_R)
    rmask = rows < R
    a = attention(logits_ptr, bc, hh, h_in, H, rmask, ACC)
    acc = tl.zeros([BLOCK_R], dtype=ACC)
    w_start = sp * w_per_split
    w_end = tl.minimum(w_start + w_per_split, W)
    row_off = rows[:, None] * W
    for w0 in range(w_start, w_end, BLOCK_W):
        cols = w0 + tl.arange(0, BLOCK_W)
        m = rmask[:, None] & (cols < w_end)[None, :]
        offs = row_off + cols[None, :]
        g = tl.load(in_ptr + offs, mask=m, other=0.0).to(ACC)
        tl.store(out_ptr + offs, (g * a[:, None]).to(out_ptr.dtype.element_ty), mask=m)
        if BACKWARD:
            f = tl.load(feat_ptr + offs, mask=m, other=0.0).to(ACC)
            acc += tl.sum(g * f, axis=1)
    if BACKWARD:
        if FEAT_IS_OUTPUT:
            acc = feat_dot_from_result(acc, a)
        tl.store(part_ptr + (sp.to(tl.int64) * R + rows), acc, mask=rmask)


@triton.jit(do_not_specialize=["BH"])
def _rescale_nhwc_kernel(in_ptr, feat_ptr, logits_ptr, out_ptr, part_ptr, BH, H, W, C, h_in,
                         w_per_split, BACKWARD: tl.constexpr, FEAT_IS_OUTPUT: tl.constexpr,
                         ACC: tl.constexpr,
                         BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """channels_last.  Program (block of BLOCK_H rows (b, h), width split, c-block):
    tiles BLOCK_H x BLOCK_W pixels x BLOCK_C channels (channels contiguous); out = in * A
    and (BACKWARD) part[split, (b*C + c)*H + h] = sum over its pixels of in * feat."""
    hb, sp, c, cmask = nhwc_program(tl.program_id(0), C, tl.cdiv(W, w_per_split), BLOCK_C)
    bh, hmask, hh, lrow = nhwc_rows(hb, BH, H, C, c, BLOCK_H)
    rc_mask = hmask[:, None] & cmask[None, :]
    a = attention(logits_ptr, lrow, hh[:, None], h_in, H, rc_mask, ACC)
    acc = tl.zeros([BLOCK_H, BLOCK_C], dtype=ACC)
    w_start = sp * w_per_split
    w_end = tl.minimum(w_start + w_per_split, W)
    for w0 in range(w_start, w_end, BLOCK_W):
        w = w0 + tl.arange(0, BLOCK_W)
        pm = hmask[:, None] & (w < w_end)[None, :]
        m = pm[:, :, None] & cmask[None, None, :]
        offs = ((bh[:, None] * W + w[None, :]) * C)[:, :, None] + c[None, None, :]
        g = tl.load(in_ptr + offs, mask=m, other=0.0).to(ACC)
        tl.store(out_ptr + offs, (g * a[:, None, :]).to(out_ptr.dtype.element_ty), mask=m)
        if BACKWARD:
            f = tl.load(feat_ptr + offs, mask=m, other=0.0).to(ACC)
            acc += tl.sum(g * f, axis=1)
    if BACKWARD:
        R = tl.cast(BH, tl.int64) * C  # = B*C*H
        p_offs = sp.to(tl.int64) * R + lrow * H + hh[:, None]
        if FEAT_IS_OUTPUT:
            acc = feat_dot_from_result(acc, a)
        tl.store(part_ptr + p_offs, acc, mask=rc_mask)


def _stream_launch(B: int, C: int, H: int, W: int, h_in: int, dtype: torch.dtype, layout: str,
                   backward: bool, feat_is_output: bool = False):
    """(launch, n_split) of the streaming pass; roles: in, feat, logits, out, part."""
    tile = tile_elems(dtype)
    acc = acc_dtype(dtype)
    ptrs = {"in_ptr": ("in", dtype), "feat_ptr": ("feat", dtype), "logits_ptr": ("logits", dtype),
            "out_ptr": ("out", dtype), "part_ptr": ("part", acc) if backward else ("out", dtype)}
    consts = {"BACKWARD": backward, "FEAT_IS_OUTPUT": feat_is_output, "ACC": acc_constexpr(dtype)}
    if not check_layout(layout):
        bw = pick_block(W, 256, lo=16)
        br = rows_block(tile, bw, B * C * H)
        base = cdiv(B * C * H, br)
        wps, n_split = split_extent(W, bw, base) if backward else (bw, cdiv(W, bw))
        return Launch(_rescale_nchw_kernel, (base * n_split,), ptrs,
                      {"R": B * C * H, "H": H, "W": W, "h_in": h_in, "w_per_split": wps},
                      {**consts, "BLOCK_R": br, "BLOCK_W": bw}, warps(br * bw)), n_split
    bh, bw, bc = nhwc_blocks(tile, C, W, B * H)
    base = cdiv(B * H, bh) * cdiv(C, bc)
    wps, n_split = split_extent(W, bw, base) if backward else (bw, cdiv(W, bw))
    return Launch(_rescale_nhwc_kernel, (base * n_split,), ptrs,
                  {"BH": B * H, "H": H, "W": W, "C": C, "h_in": h_in, "w_per_split": wps},
                  {**consts, "BLOCK_H": bh, "BLOCK_W": bw, "BLOCK_C": bc},
                  warps(bh * bw * bc)), n_split


@cached_plan
def plan_attention_rescale(B: int, C: int, H: int, W: int, h_in: int, dtype: torch.dtype,
                           layout: str) -> Plan:
    """feat (B, C, H, W) -> out; roles: in (= feat), feat, logits, out."""
    return Plan([_stream_launch(B, C, H, W, h_in, dtype, layout, False)[0]])


@cached_plan
def plan_attention_rescale_backward(B: int, C: int, H: int, W: int, h_in: int,
                                    dtype: torch.dtype, layout: str,
                                    feat_is_output: bool = False,
                                    attention_grad: bool = False) -> Plan:
    """roles: in (= grad), feat (or the forward's output, feat_is_output), logits
    (inputs), out (= grad_feat), grad_logits (the gradient of A with attention_grad),
    and the temporary ``part`` (n_split, B*C*H) fp32 (fp64 for fp64) of width partial
    sums."""
    first, n_split = _stream_launch(B, C, H, W, h_in, dtype, layout, True, feat_is_output)
    acc = acc_dtype(dtype)
    if attention_grad:  # H -> H: the splits' sum, cast
        second = interp_backward_launch(B * C, H, H, "part", acc, "grad_logits", dtype, n_split,
                                        False, "logits")
    else:
        second = interp_backward_launch(B * C, h_in, H, "part", acc, "grad_logits", dtype, n_split,
                                        True, "logits")
    return Plan([first, second], temps={"part": ((n_split, B * C * H), acc)})


_FWD_CALLS = CallCache("attention_rescale")
_BWD_CALLS = CallCache("attention_rescale_backward")


def _attention_rescale(feat: Tensor, logits: Tensor, direct: bool = False) -> Tensor:
    key = None
    if type(feat) is Tensor and type(logits) is Tensor:
        key = (feat.shape, feat.stride(), feat.dtype, feat.device,
               logits.shape, logits.stride(), logits.dtype, logits.device)
        call = _FWD_CALLS.get(key)
        if call is not None:  # checked and planned before: allocate and launch
            (out,) = call.outputs()
            if call.plan is not None:
                dense_feat, dense_logits = call.flags
                if not dense_feat:
                    feat = feat.contiguous()
                launch(call.plan, {"in": feat, "feat": feat,
                                   "logits": logits if dense_logits else logits.contiguous(),
                                   "out": out}, call.device, direct)
            return out
    validate("attention_rescale", feat, logits)
    out = outputs("attention_rescale", feat, logits)
    dense_feat = feat.is_contiguous() or feat.is_contiguous(memory_format=torch.channels_last)
    dense_logits = logits.is_contiguous()
    feat, layout = layout_of(feat)
    logits = logits.contiguous()
    B, C, H, W = feat.shape
    plan = run(plan_attention_rescale, (B, C, H, W, logits.shape[2]),
               {"in": feat, "feat": feat, "logits": logits, "out": out}, feat.device,
               feat.dtype, layout, direct=direct)
    _FWD_CALLS.put(key, Call(plan, (out,), feat.device, (dense_feat, dense_logits)))
    return out


def _attention_rescale_backward(grad: Tensor, feat: Tensor, logits: Tensor,
                                feat_is_output: bool = False, attention_grad: bool = False,
                                direct: bool = False) -> tuple[Tensor, Tensor]:
    key = None
    feat_is_output, attention_grad = bool(feat_is_output), bool(attention_grad)
    if type(grad) is Tensor and type(feat) is Tensor and type(logits) is Tensor:
        key = (grad.shape, grad.stride(), grad.dtype, grad.device,
               feat.shape, feat.stride(), feat.dtype, feat.device,
               logits.shape, logits.stride(), logits.dtype, logits.device, feat_is_output,
               attention_grad)
        call = _BWD_CALLS.get(key)
        if call is not None:  # checked and planned before: allocate and launch
            grad_feat, grad_logits = call.outputs()
            if call.plan is not None:
                dense_grad, dense_feat, dense_logits, fmt = call.flags
                launch(call.plan, {
                    "in": grad if dense_grad else grad.contiguous(memory_format=fmt),
                    "feat": feat if dense_feat else feat.contiguous(),
                    "logits": logits if dense_logits else logits.contiguous(),
                    "out": grad_feat, "grad_logits": grad_logits}, call.device, direct)
            return grad_feat, grad_logits
    validate("attention_rescale_backward", grad, feat, logits)
    grad_feat, grad_logits = outputs("attention_rescale_backward", grad, feat, logits,
                                     feat_is_output, attention_grad)
    dense_feat = feat.is_contiguous() or feat.is_contiguous(memory_format=torch.channels_last)
    dense_logits = logits.is_contiguous()
    feat, layout = layout_of(feat)
    fmt = memory_format(layout)
    dense_grad = grad.is_contiguous(memory_format=fmt)
    grad = grad.contiguous(memory_format=fmt)  # no copy when already so
    logits = logits.contiguous()
    B, C, H, W = feat.shape
    plan = run(plan_attention_rescale_backward, (B, C, H, W, logits.shape[2]),
               {"in": grad, "feat": feat, "logits": logits, "out": grad_feat,
                "grad_logits": grad_logits}, feat.device, feat.dtype, layout, feat_is_output,
               attention_grad, direct=direct)
    _BWD_CALLS.put(key, Call(plan, (grad_feat, grad_logits), feat.device,
                             (dense_grad, dense_feat, dense_logits, fmt)))
    return grad_feat, grad_logits


@triton_op(f"{NAMESPACE}::attention_rescale", mutates_args=())
def attention_rescale(feat: Tensor, logits: Tensor) -> Tensor:
    """feat * interp(sigmoid(logits), H)[..., None], in feat's memory format; one pass
    over feat, A computed in fp32 (fp64 for fp64) inside the kernel."""
    return _attention_rescale(feat, logits)


@triton_op(f"{NAMESPACE}::attention_rescale_backward", mutates_args=())
def attention_rescale_backward(grad: Tensor, feat: Tensor, logits: Tensor,
                               feat_is_output: bool = False,
                               attention_grad: bool = False) -> tuple[Tensor, Tensor]:
    """(grad_feat, grad_logits): grad_feat = grad * A in feat's memory format;
    grad_logits = height_interp_backward(sum_w grad * feat) * s * (1 - s).  With
    feat_is_output, ``feat`` is the forward's output and the row sums are divided by A;
    with attention_grad the second output is the row sums (B, C, H), the gradient of A."""
    return _attention_rescale_backward(grad, feat, logits, feat_is_output, attention_grad)


KERNELS = {"rescale_nchw": _rescale_nchw_kernel, "rescale_nhwc": _rescale_nhwc_kernel}
OPS = {"attention_rescale": (attention_rescale, ("rescale_nchw", "rescale_nhwc")),
       "attention_rescale_backward": (attention_rescale_backward,
                                      ("rescale_nchw", "rescale_nhwc", "height_interp_backward"))}
# The launchers without triton_op's wrapper, for hanet.ops.triton.register_direct.
DIRECT = {"attention_rescale": _attention_rescale,
          "attention_rescale_backward": _attention_rescale_backward}
