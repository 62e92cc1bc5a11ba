"""The CUDA kernels are built and registered for the CUDA dispatch key.

No GPU is needed: registration happens when hanet._C loads.  CI sets
HANET_REQUIRE_CUDA_BUILD=1, so there a CPU-only build fails instead of skipping.
"""
from __future__ import annotations

import os

import pytest
import torch

from hanet.ops import _extension

OPS = [
    "width_pool",
    "width_pool_backward",
    "height_interp",
    "height_interp_backward",
    "attention_rescale",
    "attention_rescale_backward",
]
REQUIRED = os.environ.get("HANET_REQUIRE_CUDA_BUILD") == "1"


def _built_with_cuda() -> bool:
    return _extension.has_kernel("attention_rescale", "CUDA")


def test_extension_loads():
    assert _extension.extension_loaded(), _extension.load_error()


@pytest.mark.parametrize("op", OPS)
def test_cpu_kernels_registered(op):
    assert _extension.has_kernel(op, "CPU")


@pytest.mark.parametrize("op", OPS)
def test_cuda_kernels_registered(op):
    if not REQUIRED and not _built_with_cuda():
        pytest.skip("hanet._C built without CUDA (set HANET_REQUIRE_CUDA_BUILD=1 to require it)")
    assert torch.version.cuda is not None
    assert _extension.has_kernel(op, "CUDA"), f"hanet::{op} has no CUDA kernel"
