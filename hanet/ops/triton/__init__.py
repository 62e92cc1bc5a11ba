"""The Triton backend: ``torch.ops.hanet_triton.*``, one module per op (kernels, launch
plans and the ``torch.library.triton_op`` launcher), shared pieces in :mod:`.common`.

The ops have exactly the schemas and behaviour of the C++ ops of the ``hanet``
namespace; their argument rules and outputs come from :mod:`hanet.ops.contract`.
Every kernel is launched through :func:`torch.library.wrap_triton` while tracing, so
that ``torch.compile`` sees the kernels.  Autograd is registered by
:mod:`hanet.ops._library` (from the contract), not here.

Eager calls: ``triton_op`` registers its function as the op's
CompositeExplicitAutograd kernel behind several Python wrappers (dispatch-key
wrapper, aliasing check, dynamo guard, ``set_wrap_triton_enabled`` context) that cost
about as much as the whole launch.  :func:`register_direct` registers each op's
launcher itself for the device keys the kernels run on (CUDA; CPU under the
interpreter), only behind ``torch._disable_dynamo``: real tensors reach it, while
fake, meta and functional tensors still go through triton_op's fake kernel and
decomposition.  ``HANET_TRITON_DIRECT=0`` (read at import) keeps triton_op's kernel.

With ``TRITON_INTERPRET=1`` set before ``triton`` is imported, the kernels run in
Triton's interpreter on CPU tensors.  ``wrap_triton`` cannot trace interpreted
kernels, so in that mode the ops are kept opaque under ``torch.compile`` (no
decomposition into kernel calls; the fake implementation skips the launches and only
builds the outputs) and the compiled graph calls the op itself.
"""
from __future__ import annotations

import importlib
import os
import pkgutil

import torch

from .common import (INTERPRETED, NAMESPACE, HanetArgumentError, Launch, Plan, clear_plan_caches,
                     plan_cache_info)

# One module per op (every module here but the shared ones): importing it registers its
# ops; a new op's module is found without being listed.
_MODULES = tuple(importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
                 if m.name not in ("common", "aot"))
KERNELS = {k: v for m in _MODULES for k, v in m.KERNELS.items()}
OPS = {k: v for m in _MODULES for k, v in m.OPS.items()}
DIRECT = {k: v for m in _MODULES for k, v in getattr(m, "DIRECT", {}).items()}

#: Whether the launchers are registered as the ops' device kernels (register_direct).
DIRECT_KERNELS = os.environ.get("HANET_TRITON_DIRECT", "1") not in ("", "0")

__all__ = ["DIRECT_KERNELS", "INTERPRETED", "KERNELS", "NAMESPACE", "OPS", "HanetArgumentError",
           "Launch", "Plan", "clear_plan_caches", "plan_cache_info", "register_direct"]

_DIRECT_LIB = None


def _direct_kernel(impl):
    def kernel(*args, **kwargs):
        return impl(*args, **kwargs, direct=True)

    kernel.__name__ = kernel.__qualname__ = f"{impl.__name__.lstrip('_')}_direct"
    return torch._disable_dynamo(kernel)


def register_direct() -> None:
    """Each op's launcher as its kernel for the device keys the Triton kernels run on
    (CUDA, and CPU under the interpreter), in place of triton_op's wrapped kernel."""
    global _DIRECT_LIB
    if _DIRECT_LIB is not None:
        return
    lib = torch.library.Library(NAMESPACE, "IMPL")
    keys = ("CUDA", "CPU") if INTERPRETED else ("CUDA",)
    for name, impl in DIRECT.items():
        for key in keys:
            lib.impl(name, _direct_kernel(impl), key)
    _DIRECT_LIB = lib


def _finish_registration() -> None:
    # The kernels are launched through plans, which the static scan of triton_op cannot
    # follow: list them for the AOTAutograd cache key (best effort, private API).
    try:
        from torch._library import triton as _lib_triton

        for name, (_, kernels) in OPS.items():
            _lib_triton.triton_ops_to_kernels[f"{NAMESPACE}::{name}"] = [KERNELS[k] for k in kernels]
    except Exception:  # pragma: no cover
        pass
    if INTERPRETED:
        # Interpreted kernels cannot be captured by wrap_triton: keep the ops opaque
        # under torch.compile instead of decomposing them into (untraceable) launches.
        from torch._subclasses.functional_tensor import FunctionalTensorMode

        def _opaque(mode, op, types, args, kwargs):
            return mode.__torch_dispatch__(op, types, args, kwargs)

        for fn, _ in OPS.values():
            fn.register_torch_dispatch(FunctionalTensorMode, _opaque)
    if DIRECT_KERNELS:
        register_direct()


_finish_registration()
