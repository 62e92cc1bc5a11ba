"""Cross-op checks of the kernel backends: both are present here, odd strides are
copied (not misread), and the Triton ops' argument errors."""
from __future__ import annotations

import pytest
import torch

import hanet.ops as hops
from hanet.ops import reference
from op_cases import KERNELS, kernel_backends, make, namespace, needs_triton, x_

BACKENDS = kernel_backends()
T = namespace("triton") if "triton" in KERNELS else None


def test_cpu_and_triton_backends_are_tested_here():
    # The kernels under test must really be available: a silently missing
    # backend would make this file test the reference against itself.
    assert "cpu" in BACKENDS, f"C++ extension not loaded: {hops._extension.load_error()}"
    assert "triton" in BACKENDS, "triton backend unavailable under TRITON_INTERPRET=1"


@pytest.mark.parametrize("backend", KERNELS)
def test_other_strides_are_copied_not_misread(backend):
    """A sliced (non-dense) input gives the same result as its contiguous copy."""
    base = make((2, 6, 10, 16), torch.float32, "nchw", seed=6)
    x = base[:, ::2, :, 3:12]
    logits = make((2, 3, 4), torch.float32, "nchw", seed=7)[:, :, :]
    torch.testing.assert_close(
        hops.attention_rescale(x, logits, backend=backend),
        reference.attention_rescale(x.contiguous(), logits),
    )
    torch.testing.assert_close(
        hops.width_pool(x, 5, backend=backend), reference.width_pool(x.contiguous(), 5)
    )


@needs_triton
def test_triton_validation():
    x = x_((1, 2, 3, 4))
    with pytest.raises(ValueError, match="x must be a 4-D tensor"):
        T.width_pool(x[0], 2)
    with pytest.raises(RuntimeError, match="rows must be >= 1"):
        T.width_pool(x, 0)
    with pytest.raises(ValueError, match="mode"):
        T.width_pool(x, 2, "median")
    with pytest.raises(ValueError, match="float32, float16, bfloat16 or float64"):
        T.width_pool(x.int(), 2)
    with pytest.raises(ValueError, match="empty"):
        T.width_pool(x[:, :0], 2)
    g = x_((1, 2, 2))
    with pytest.raises(ValueError, match="indices must be int64"):
        T.width_pool_backward(g, g, 3, 4, "max", False)
    with pytest.raises(ValueError, match="height and width"):
        T.width_pool_backward(g, torch.empty(0, dtype=torch.int64), 0, 4, "mean", False)
    with pytest.raises(ValueError, match="size must be >= 1"):
        T.height_interp(g, 0)
    with pytest.raises(ValueError, match="in_size must be >= 1"):
        T.height_interp_backward(g, 0)
    with pytest.raises(ValueError, match="batch mismatch"):
        T.attention_rescale(x, x_((2, 2, 3)))
    with pytest.raises(ValueError, match="channel mismatch"):
        T.attention_rescale(x, x_((1, 3, 3)))
    with pytest.raises(ValueError, match="same dtype"):
        T.attention_rescale(x, x_((1, 2, 3)).double())
    with pytest.raises(ValueError, match="logits must be a 3-D tensor"):
        T.attention_rescale(x, x)
    with pytest.raises(ValueError, match="grad shape"):
        T.attention_rescale_backward(x_((1, 2, 3, 5)), x, x_((1, 2, 3)))
