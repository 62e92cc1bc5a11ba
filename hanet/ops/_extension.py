"""Loads the compiled extension `hanet._C`, which registers the `torch.ops.hanet.*` kernels,
and probes (once, at import) whether its CUDA kernels can run on the GPUs present."""
from __future__ import annotations

import warnings

import torch

_load_error: str | None = None
try:
    from hanet import _C  # noqa: F401  (import registers the ops with the dispatcher)
except ImportError as exc:  # not built (e.g. a source checkout without `pip install .`)
    _C = None
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


def parse_archs(tag: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """hanet._C.cuda_archs ("80_90_100ptx") -> ({cubin ccs}, {PTX ccs})."""
    cubins, ptx = set(), set()
    for part in filter(None, tag.split("_")):
        is_ptx = part.endswith("ptx")
        digits = part[:-3] if is_ptx else part
        cc = (int(digits[:-1]), int(digits[-1]))
        cubins.add(cc)
        if is_ptx:
            ptx.add(cc)
    return cubins, ptx


def runs_on(capability: tuple[int, int], tag: str) -> bool:
    """Whether kernels built for `tag` load on a GPU of compute `capability`: a cubin of
    the same major version and a minor no higher (binary compatibility), or PTX of a
    capability no higher (the driver compiles it just in time)."""
    cubins, ptx = parse_archs(tag)
    major, minor = capability
    return any(m == major and n <= minor for m, n in cubins) or any(cc <= capability for cc in ptx)


def _probe_cuda() -> tuple[bool, str | None]:
    """(usable, why not) for the CUDA kernels on every visible GPU; no CUDA context is
    created (only device properties are read)."""
    if not has_kernel("attention_rescale", "CUDA"):
        return False, "hanet._C was built without CUDA kernels (rebuild with HANET_CUDA=1)"
    if not torch.cuda.is_available():
        return True, None
    tag = getattr(_C, "cuda_archs", "")
    for i in range(torch.cuda.device_count()):
        cap = torch.cuda.get_device_capability(i)
        if not runs_on(cap, tag):
            name = torch.cuda.get_device_name(i)
            return False, (f"hanet._C has no kernel image for {name} (sm_{cap[0]}{cap[1]}); it was "
                           f"built for {tag or 'no GPU'} (rebuild with TORCH_CUDA_ARCH_LIST including "
                           f"{cap[0]}.{cap[1]})")
    return True, None


# Read once at import: backend resolution runs inside torch.compile'd code, and
# Dynamo cannot trace the dispatcher query (it returns a bool, not a tensor).
HAS_CUDA_KERNELS, CUDA_UNUSABLE = _probe_cuda()
if not HAS_CUDA_KERNELS and has_kernel("attention_rescale", "CUDA"):
    # Built with CUDA but not for this GPU: dispatch falls back to Triton or the
    # reference instead of failing at the first call.
    warnings.warn(f"{CUDA_UNUSABLE}; the hanet ops fall back to the triton or reference "
                  "backend", RuntimeWarning, stacklevel=2)
