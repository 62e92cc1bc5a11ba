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


# ---- the device code inside the built extension (no GPU needed) -------------------

WANT_CUBINS = ("sm_80", "sm_90", "sm_100")  # A100, H100, B200
WANT_PTX = "sm_100"  # compute_100 PTX: newer GPUs JIT-compile it (forward compatibility)


def _cuobjdump() -> str | None:
    """The cuobjdump of the PyPI package nvidia-cuda-cuobjdump (requirements.txt)."""
    import glob
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "**", "bin", "cuobjdump"), recursive=True))
        if found:
            return found[0]
    return None


def _cuda_so() -> str:
    import hanet._C

    return hanet._C.__file__


@pytest.fixture(scope="module")
def cuobjdump():
    if not REQUIRED and not _built_with_cuda():
        pytest.skip("hanet._C built without CUDA (set HANET_REQUIRE_CUDA_BUILD=1 to require it)")
    tool = _cuobjdump()
    assert tool, "cuobjdump not found: pip install nvidia-cuda-cuobjdump (requirements.txt)"

    def run(*args: str) -> str:
        import subprocess

        proc = subprocess.run([tool, *args, _cuda_so()], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def test_cubins_and_ptx_for_every_target(cuobjdump):
    """cubins for sm_80, sm_90 and sm_100, and PTX for the newest, so that the kernels
    load on A100/H100/B200 and JIT on later GPUs (no "no kernel image" error)."""
    elf = cuobjdump("--list-elf")
    ptx = cuobjdump("--list-ptx")
    print(elf, ptx)
    for arch in WANT_CUBINS:
        assert f".{arch}.cubin" in elf, f"no {arch} cubin in {_cuda_so()}:\n{elf}"
    assert f".{WANT_PTX}.ptx" in ptx, f"no {WANT_PTX} PTX in {_cuda_so()}:\n{ptx}"


def _stack_frames(text: str) -> dict[str, int]:
    """{"sm_XX kernel": STACK bytes} of every kernel in cuobjdump -res-usage output."""
    import re

    frames, arch, lines = {}, "?", text.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"arch = (sm_\d+)", line)
        if m:
            arch = m.group(1)
        m = re.match(r"\s*Function (\S+):", line)
        if not m:
            continue
        usage = lines[i + 1] if i + 1 < len(lines) else ""
        stack, local = re.search(r"STACK:(\d+)", usage), re.search(r"LOCAL:(\d+)", usage)
        assert stack and local, f"unexpected cuobjdump output: {usage!r}"
        frames[f"{arch} {m.group(1)}"] = int(stack.group(1)) + int(local.group(1))
    return frames


def test_no_kernel_spills_registers(cuobjdump):
    """No kernel of any cubin has a stack frame or local memory (register spills, or
    arrays kept in memory), per cuobjdump -res-usage.  The kernels divide int64 indices
    only by FastDivmod arguments (csrc/common/fast_divmod.h: a 64-bit `/` is a call, and
    ptxas spills around calls) and declare a minimum of resident blocks, so that ptxas
    does not spill registers to raise occupancy (min_blocks in csrc/common/cuda_helpers.cuh)."""
    frames = _stack_frames(cuobjdump("-res-usage"))
    print(f"{len(frames)} kernels checked; {sum(v > 0 for v in frames.values())} with a stack frame")
    assert len(frames) >= 3 * 6, f"too few kernels in the cubins ({len(frames)})"
    bad = [f"{k}: {v} bytes" for k, v in frames.items() if v > 0]
    assert not bad, f"{len(bad)} kernels spill or use local memory:\n" + "\n".join(sorted(bad)[:40])
