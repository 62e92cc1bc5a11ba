"""The Python op contract (hanet/ops/contract.py) and its C++ mirror (csrc/contract.cpp)
accept and reject exactly the same calls.

Calls are generated from a seed: a valid call of each op with one argument (or none)
broken in one way (a zero dimension anywhere, the batch included; another rank; an int,
bool or other float dtype; a batch / channel / shape mismatch; indices of another dtype
or shape; a bad mode; a size <= 0).  Every call goes to contract.check and to the C++
kernel torch.ops.hanet.<op> (CPU tensors), and the two verdicts must agree.  Arguments
keep their schema types, so that neither side is spared by the dispatcher's own parsing.
"""
from __future__ import annotations

import random

import pytest
import torch

from hanet.ops import contract
from op_cases import KERNELS

pytestmark = pytest.mark.skipif("cpu" not in KERNELS, reason="C++ extension not built")

CALLS = 800
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
OTHER_DTYPES = [torch.int32, torch.int64, torch.bool, torch.uint8]


class Maker:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def dims(self, n):
        return [self.rng.randint(1, 4) for _ in range(n)]

    def t(self, shape, dtype=torch.float32, channels_last=False):
        x = torch.zeros(shape, dtype=dtype)
        if channels_last and len(shape) == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def broken_tensor(self, shape, dtype):
        """(tensor, what): `shape`/`dtype` broken one way, or intact."""
        how = self.rng.choice(["zero", "zero", "rank", "dtype", "float", "ok"])
        shape = list(shape)
        if how == "zero":
            k = self.rng.randrange(len(shape))
            shape[k] = 0
            return self.t(shape, dtype), f"zero dim {k}"
        if how == "rank":
            n = self.rng.choice([d for d in range(1, 6) if d != len(shape)])
            return self.t(self.dims(n), dtype), f"rank {n}"
        if how == "dtype":
            dt = self.rng.choice(OTHER_DTYPES)
            return self.t(shape, dt), str(dt)
        if how == "float":
            dt = self.rng.choice(FLOATS)
            return self.t(shape, dt), str(dt)
        return self.t(shape, dtype, self.rng.random() < 0.5), "ok"

    def size(self):
        return self.rng.choice([1, 2, 5, 0, -1]) if self.rng.random() < 0.3 else self.rng.randint(1, 6)

    def call(self):
        op = self.rng.choice(list(contract.OPS))
        B, C, H, W, h = self.dims(5)
        if self.rng.random() < 0.2:
            B = 0
        dt = self.rng.choice(FLOATS)
        mode = self.rng.choice(["mean", "max", "mean", "max", "median", ""])
        if op == "width_pool":
            x, what = self.broken_tensor([B, C, H, W], dt)
            return op, (x, self.size(), mode), what
        if op == "width_pool_backward":
            rows = self.rng.randint(1, 5)
            grad, what = self.broken_tensor([B, C, rows], dt)
            ishape = list(grad.shape) if self.rng.random() < 0.8 else self.dims(3)
            height, width = self.size(), self.size()
            # values a real arg-max can take (the first element of each bin): the C++
            # kernel also checks index values, which no metadata rule can
            first = [(i * max(height, 1)) // ishape[-1] * max(width, 1) for i in range(ishape[-1])]
            idx = torch.tensor(first).expand(ishape).to(
                self.rng.choice([torch.int64] * 4 + [torch.int32, torch.float32]))
            return op, (grad, idx, height, width, mode, self.rng.random() < 0.5), what
        if op in ("height_interp", "height_interp_backward"):
            a, what = self.broken_tensor([B, C, h], dt)
            return op, (a, self.size()), what
        lshape = [B, C, h]
        if self.rng.random() < 0.25:  # a batch or channel mismatch alone
            lshape[self.rng.randrange(2)] += 1
            feat, what = self.t([B, C, H, W], dt, self.rng.random() < 0.5), "mismatch"
            logits, lwhat = self.t(lshape, dt), "ok"
        else:
            feat, what = self.broken_tensor([B, C, H, W], dt)
            logits, lwhat = self.broken_tensor(lshape, dt) if self.rng.random() < 0.3 else (self.t(lshape, dt), "ok")
        if op == "attention_rescale":
            return op, (feat, logits), f"{what}/{lwhat}"
        gshape = list(feat.shape) if self.rng.random() < 0.8 else self.dims(4)
        grad = self.t(gshape, self.rng.choice([dt, dt, dt, torch.float64, torch.int32]))
        return op, (grad, feat, logits), f"{what}/{lwhat}"


def _verdict(fn):
    try:
        fn()
        return "accept"
    except (TypeError, ValueError, RuntimeError, IndexError) as e:
        return f"reject: {str(e).splitlines()[0][:160]}"


def test_python_and_cpp_reject_exactly_the_same_calls():
    maker = Maker(20251206)
    disagree, counts = [], {"accept": 0, "reject": 0}
    for i in range(CALLS):
        op, args, what = maker.call()
        py = _verdict(lambda: contract.check(op, args, f"contract.{op}"))
        cpp = _verdict(lambda: getattr(torch.ops.hanet, op)(*args))
        counts[py.split(":")[0]] += 1
        if py.split(":")[0] != cpp.split(":")[0]:
            shapes = [tuple(a.shape) + (str(a.dtype),) if isinstance(a, torch.Tensor) else a for a in args]
            disagree.append(f"#{i} {op}{shapes} ({what}): python {py} / C++ {cpp}")
    print(counts)
    assert not disagree, f"{len(disagree)} of {CALLS} calls judged differently:\n" + "\n".join(disagree[:30])
    # both verdicts occur often: the comparison has teeth either way
    assert counts["accept"] > CALLS // 10 and counts["reject"] > CALLS // 10, counts


@pytest.mark.parametrize("op", list(contract.OPS))
def test_every_op_has_a_kernel_per_backend_and_a_schema(op):
    """The contract's ops are the registered ones, in both namespaces."""
    from hanet.ops import _extension

    assert _extension.has_kernel(op, "CPU"), op
    assert hasattr(torch.ops.hanet, op)
    if "triton" in KERNELS:
        import hanet.ops as hops

        assert hasattr(hops.dispatch.triton_ops(), op)


def test_empty_batch_is_valid_and_other_empty_dims_are_not():
    x = torch.zeros(0, 2, 3, 4)
    contract.check("width_pool", (x, 2, "mean"), "t")
    for shape in [(1, 0, 3, 4), (1, 2, 0, 4), (1, 2, 3, 0)]:
        with pytest.raises(ValueError, match="empty"):
            contract.check("width_pool", (torch.zeros(shape), 2, "mean"), "t")
