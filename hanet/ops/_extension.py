"""Loads the compiled extension `hanet._C`, which registers the `torch.ops.hanet.*` kernels."""
from __future__ import annotations

import torch

_load_error: str | None = None
try:
    from hanet import _C  # noqa: F401  (import registers the ops with the dispatcher)
except ImportError as exc:  # not built (e.g. a source checkout without `pip install .`)
    _load_error = f"{type(exc).__name__}: {exc}"


def extension_loaded() -> bool:
    return _load_error is None


def load_error() -> str | None:
    """Why `hanet._C` could not be imported, or None."""
    return _load_error


def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when `hanet::<op>` has a kernel registered for `dispatch_key` ("CPU", "CUDA")."""
    if _load_error is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"hanet::{op}", dispatch_key)


# Read once at import: backend resolution runs inside torch.compile'd code, and
# Dynamo cannot trace the dispatcher query (it returns a bool, not a tensor).
HAS_CUDA_KERNELS: bool = has_kernel("attention_rescale", "CUDA")
