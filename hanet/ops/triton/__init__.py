"""The Triton backend: ``torch.ops.hanet_triton.*``, one module per op (kernels, launch
plans and the ``torch.library.triton_op`` launcher), shared pieces in :mod:`.common`.

The ops have exactly the schemas and behaviour of the C++ ops of the ``hanet``
namespace; their argument rules and outputs come from :mod:`hanet.ops.contract`.
Every kernel is launched through :func:`torch.library.wrap_triton`, so that
``torch.compile`` sees the kernels.  Autograd is registered by
:mod:`hanet.ops._library` (from the contract), not here.

With ``TRITON_INTERPRET=1`` set before ``triton`` is imported, the kernels run in
Triton's interpreter on CPU tensors.  ``wrap_triton`` cannot trace interpreted
kernels, so in that mode the ops are kept opaque under ``torch.compile`` (no
decomposition into kernel calls; the fake implementation skips the launches and only
builds the outputs) and the compiled graph calls the op itself.
"""
from __future__ import annotations

import importlib
import pkgutil

from .common import INTERPRETED, NAMESPACE, HanetArgumentError, Launch, Plan

# One module per op (every module here but the shared ones): importing it registers its
# ops; a new op's module is found without being listed.
_MODULES = tuple(importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
                 if m.name not in ("common", "aot"))
KERNELS = {k: v for m in _MODULES for k, v in m.KERNELS.items()}
OPS = {k: v for m in _MODULES for k, v in m.OPS.items()}

__all__ = ["INTERPRETED", "KERNELS", "NAMESPACE", "OPS", "HanetArgumentError", "Launch", "Plan"]


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


_finish_registration()
