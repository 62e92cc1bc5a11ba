"""Backend selection: which implementation runs an op for given tensors.

Backends: "reference" (pure PyTorch, everywhere), "cpu" (C++ kernels of
`hanet._C`), "cuda" (CUDA kernels of `hanet._C`), "triton" (CUDA tensors, or CPU
tensors when TRITON_INTERPRET=1 was set before triton was imported).
`backend=None` takes $HANET_BACKEND if set, else the fastest backend available
for the tensors' device.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from . import _extension

from .contract import BACKENDS
# Fastest first.  The Triton interpreter is a test vehicle, never a CPU default.
_PREFERENCE = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpu", "reference")}


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run here (or not on these tensors)."""


# Constants read at import: resolve() runs inside torch.compile'd models, where Dynamo
# cannot trace importlib or dispatcher queries.
_TRITON_IMPORTABLE = importlib.util.find_spec("triton") is not None


def _triton_importable() -> bool:
    return _TRITON_IMPORTABLE


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _why_unavailable(backend: str, device_type: str) -> str | None:
    """None when `backend` can run ops on `device_type` tensors, else the reason."""
    if backend == "reference":
        return None
    if backend == "cpu":
        if device_type != "cpu":
            return f"the cpu backend runs on CPU tensors, these are on {device_type}"
        if not _extension.extension_loaded():
            return f"the C++ extension hanet._C is not built ({_extension.load_error()})"
        return None
    if backend == "cuda":
        if device_type != "cuda":
            return f"the cuda backend runs on CUDA tensors, these are on {device_type}"
        if not _extension.HAS_CUDA_KERNELS:  # not built, or no kernel image for this GPU
            return _extension.CUDA_UNUSABLE
        return None
    if backend == "triton":
        if not _triton_importable():
            return "triton is not installed"
        if device_type == "cuda":
            return None
        if device_type == "cpu" and _triton_interpret():
            return None
        return (
            f"triton runs on CUDA tensors, or on CPU tensors only with TRITON_INTERPRET=1 "
            f"(these are on {device_type})"
        )
    return f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"


def available_backends(device: str | torch.device | None = None) -> list[str]:
    """Names of the backends usable in this process, for `device` if given
    (e.g. "cpu", "cuda"), else for any device present."""
    if device is not None:
        types = [torch.device(device).type]
    else:
        types = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [b for b in BACKENDS if any(_why_unavailable(b, t) is None for t in types)]


def resolve(backend: str | None, device: torch.device) -> str:
    """The backend to run on tensors of `device`; raises BackendUnavailableError."""
    if backend is None:
        backend = os.environ.get("HANET_BACKEND") or None
        source = "HANET_BACKEND"
    else:
        source = "backend"
    if backend is None:
        for candidate in _PREFERENCE.get(device.type, ("reference",)):
            if _why_unavailable(candidate, device.type) is None:
                return candidate
        return "reference"
    if backend not in BACKENDS:
        raise BackendUnavailableError(
            f"{source}={backend!r} is not a hanet backend; choose one of {', '.join(BACKENDS)}"
        )
    reason = _why_unavailable(backend, device.type)
    if reason is not None:
        raise BackendUnavailableError(f"{source}={backend!r} is not available: {reason}")
    return backend


def eager_triton_registration() -> bool:
    """Whether the Triton backend can run in this process (then its ops are
    registered when hanet.ops is imported)."""
    if not _triton_importable():
        return False
    return _triton_interpret() or torch.cuda.is_available()


_triton_registered = False


def triton_ops():
    """torch.ops.hanet_triton, registering the Triton ops and their autograd on first use."""
    global _triton_registered
    if not _triton_registered:
        from . import _library, triton  # noqa: F401  (registers the ops)

        _library.register_autograd("hanet_triton")
        _triton_registered = True
    return torch.ops.hanet_triton


def kernel_ops(backend: str):
    """The op namespace of a kernel backend: torch.ops.hanet ("cpu", "cuda") or
    torch.ops.hanet_triton ("triton"), whose ops take the schemas of csrc/contract.h."""
    if backend == "reference":
        raise ValueError("the reference backend has no op namespace (hanet.ops.reference is plain PyTorch)")
    if backend != "triton":
        return torch.ops.hanet
    # Registered at import where Triton can run (torch.compile cannot trace registration).
    return torch.ops.hanet_triton if _triton_registered else triton_ops()
