"""Bad input raises an error whose message names the problem, on every backend."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from op_cases import kernel_backends

BACKENDS = kernel_backends()
f32 = torch.float32


def _x(*shape, dtype=f32):
    return torch.randn(shape).to(dtype)


BAD_CALLS = [
    ("width_pool ndim", lambda b: hops.width_pool(_x(2, 3, 4), 2, backend=b), "4-D"),
    ("width_pool int dtype", lambda b: hops.width_pool(torch.ones(1, 2, 3, 4, dtype=torch.int32), 2, backend=b), "float32"),
    ("width_pool rows<1", lambda b: hops.width_pool(_x(1, 2, 3, 4), 0, backend=b), "rows must be >= 1"),
    ("width_pool rows type", lambda b: hops.width_pool(_x(1, 2, 3, 4), 2.5, backend=b), "rows must be an int"),
    ("width_pool mode", lambda b: hops.width_pool(_x(1, 2, 3, 4), 2, "median", backend=b), "mode"),
    ("width_pool empty", lambda b: hops.width_pool(_x(1, 0, 3, 4), 2, backend=b), "empty"),
    ("height_interp ndim", lambda b: hops.height_interp(_x(2, 3), 4, backend=b), "3-D"),
    ("height_interp size<1", lambda b: hops.height_interp(_x(2, 3, 4), 0, backend=b), "size must be >= 1"),
    ("height_interp empty", lambda b: hops.height_interp(_x(2, 3, 0), 4, backend=b), "empty"),
    ("height_interp int", lambda b: hops.height_interp(torch.ones(1, 2, 3, dtype=torch.int64), 4, backend=b), "float32"),
    ("rescale feat ndim", lambda b: hops.attention_rescale(_x(2, 3, 4), _x(2, 3, 4), backend=b), "4-D"),
    ("rescale logits ndim", lambda b: hops.attention_rescale(_x(2, 3, 4, 5), _x(2, 3), backend=b), "3-D"),
    ("rescale batch", lambda b: hops.attention_rescale(_x(2, 3, 4, 5), _x(1, 3, 4), backend=b), "batch mismatch"),
    ("rescale channel", lambda b: hops.attention_rescale(_x(2, 3, 4, 5), _x(2, 4, 4), backend=b), "channel mismatch"),
    ("rescale mixed dtype", lambda b: hops.attention_rescale(_x(2, 3, 4, 5), _x(2, 3, 4, dtype=torch.float64), backend=b), "same dtype"),
    ("rescale int", lambda b: hops.attention_rescale(torch.ones(2, 3, 4, 5, dtype=torch.int32), torch.ones(2, 3, 4, dtype=torch.int32), backend=b), "float32"),
    ("rescale empty", lambda b: hops.attention_rescale(_x(2, 3, 0, 5), _x(2, 3, 4), backend=b), "empty"),
    ("rescale mixed device", lambda b: hops.attention_rescale(_x(2, 3, 4, 5), _x(2, 3, 4).to("meta"), backend=b), "same device"),
    ("rescale not a tensor", lambda b: hops.attention_rescale([1.0], _x(2, 3, 4), backend=b), "torch.Tensor"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,call,needle", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_problem(backend, name, call, needle):
    with pytest.raises((ValueError, TypeError, RuntimeError)) as info:
        call(backend)
    assert needle in str(info.value), f"{name}: message {str(info.value)!r} lacks {needle!r}"


# Direct calls of the C++ ops must be checked too (no Python validation on that path).
CPP_BAD_CALLS = [
    (lambda: torch.ops.hanet.width_pool(_x(2, 3, 4), 2, "mean"), "4-D"),
    (lambda: torch.ops.hanet.width_pool(_x(1, 2, 3, 4), 0, "mean"), "rows must be >= 1"),
    (lambda: torch.ops.hanet.width_pool(_x(1, 2, 3, 4), 2, "sum"), "mode"),
    (lambda: torch.ops.hanet.width_pool_backward(_x(1, 2, 3), torch.zeros(1, 2, 2, dtype=torch.long), 4, 4, "max", False), "indices shape"),
    (lambda: torch.ops.hanet.height_interp(_x(1, 2, 3), -1), "size must be >= 1"),
    (lambda: torch.ops.hanet.attention_rescale(_x(2, 3, 4, 5), _x(2, 2, 4)), "channel mismatch"),
    (lambda: torch.ops.hanet.attention_rescale_backward(_x(2, 3, 4, 4), _x(2, 3, 4, 5), _x(2, 3, 4)), "grad shape"),
    (lambda: torch.ops.hanet.attention_rescale(torch.ones(1, 1, 2, 2, dtype=torch.int8), torch.ones(1, 1, 2, dtype=torch.int8)), "float32"),
]


@pytest.mark.skipif("cpu" not in BACKENDS, reason="C++ extension not built")
@pytest.mark.parametrize("i", range(len(CPP_BAD_CALLS)))
def test_cpp_ops_check_their_arguments(i):
    call, needle = CPP_BAD_CALLS[i]
    with pytest.raises(RuntimeError) as info:
        call()
    assert needle in str(info.value)
