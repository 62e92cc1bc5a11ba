"""ONNX translations of the fused HANet ops (``torch.ops.hanet.*``), for
``torch.onnx.export(..., dynamo=True, custom_translation_table=TABLE)``.

Each is written with standard ONNX operators (opset 18) and computes what
:mod:`hanet.ops.reference` computes, for any (symbolic) image size:

* ``width_pool(x, rows, mode)``: the width reduced (ReduceMean / ReduceMax), then
  row bin i = [floor(i*H/rows), ceil((i+1)*H/rows)) of the H rows: mean as a MatMul
  with the (rows, H) bin-averaging matrix, max as ReduceMax over the masked rows.
  Its second output (the arg-max indices, used only by the op's backward) is not
  computed: a placeholder of the right shape.
* ``height_interp(a, size)``: Resize, linear, half-pixel (``align_corners=False``).
* ``attention_rescale(feat, logits)``: ``feat * height_interp(sigmoid(logits), H)``
  broadcast over the width.
"""
from __future__ import annotations

import torch
from onnxscript import opset18 as op

_INT64 = 7  # onnx.TensorProto.INT64


def _const(v: int):
    return op.Constant(value_int=v)


def _bin_mask(rows: int, height):
    """(rows, H) bool: row h is in bin i; and the bin sizes (rows,) int64."""
    i = op.Range(_const(0), _const(rows), _const(1))
    start = op.Div(op.Mul(i, height), _const(rows))
    end = op.Div(op.Sub(op.Add(op.Mul(op.Add(i, _const(1)), height), _const(rows)), _const(1)), _const(rows))
    h = op.Range(_const(0), height, _const(1))
    inside = op.And(op.GreaterOrEqual(op.Unsqueeze(h, [0]), op.Unsqueeze(start, [1])),
                    op.Less(op.Unsqueeze(h, [0]), op.Unsqueeze(end, [1])))
    return inside, op.Sub(end, start)


def width_pool(x, rows: int, mode: str = "mean"):
    height = op.Squeeze(op.Shape(x, start=2, end=3), [0])
    inside, sizes = _bin_mask(rows, height)
    if mode == "mean":
        xw = op.ReduceMean(x, [3], keepdims=0)  # (B, C, H)
        weights = op.Div(op.CastLike(inside, xw), op.CastLike(op.Unsqueeze(sizes, [1]), xw))  # (rows, H)
        out = op.MatMul(xw, op.Transpose(weights, perm=[1, 0]))  # (B, C, rows)
    elif mode == "max":
        xw = op.ReduceMax(x, [3], keepdims=0)
        lowest = op.CastLike(op.Constant(value_float=float("-inf")), xw)
        out = op.ReduceMax(op.Where(inside, op.Unsqueeze(xw, [2]), lowest), [3], keepdims=0)
    else:
        raise ValueError(f'width_pool: mode must be "mean" or "max", got {mode!r}')
    return out, op.Cast(out, to=_INT64)


def _resize_rows(a, size):
    """(B, C, h) -> (B, C, size), linear with half-pixel centres (size: a 1-element int64 tensor)."""
    shape = op.Concat(op.Shape(a, start=0, end=2), size, op.Constant(value_ints=[1]), axis=0)
    out = op.Resize(op.Unsqueeze(a, [3]), None, None, shape, mode="linear", coordinate_transformation_mode="half_pixel")
    return op.Squeeze(out, [3])


def height_interp(a, size):
    size = op.Constant(value_ints=[size]) if isinstance(size, int) else op.Reshape(size, op.Constant(value_ints=[1]))
    return _resize_rows(a, size)


def attention_rescale(feat, logits):
    attention = _resize_rows(op.Sigmoid(logits), op.Shape(feat, start=2, end=3))
    return op.Mul(feat, op.Unsqueeze(attention, [3]))


def translation_table() -> dict:
    return {torch.ops.hanet.width_pool.default: width_pool,
            torch.ops.hanet.height_interp.default: height_interp,
            torch.ops.hanet.attention_rescale.default: attention_rescale}
