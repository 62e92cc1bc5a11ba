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
    arrays kept in memory), per cuobjdump -res-usage, except the KNOWN_STACK_FRAMES
    below, which may not grow: a new spill, or a bigger frame, fails."""
    frames = _stack_frames(cuobjdump("-res-usage"))
    print(f"{len(frames)} kernels checked; {sum(v > 0 for v in frames.values())} with a stack frame")
    assert len(frames) >= 3 * 6, f"too few kernels in the cubins ({len(frames)})"
    bad = [f"{k}: {v} bytes (allowed {KNOWN_STACK_FRAMES.get(_short(k), 0)})" for k, v in frames.items()
           if v > KNOWN_STACK_FRAMES.get(_short(k), 0)]
    assert not bad, f"{len(bad)} kernels spill or use local memory:\n" + "\n".join(sorted(bad)[:40])


def _short(name: str) -> str:
    """"sm_90 _ZN5hanet3gpu60_GLOBAL__N__<hash>_27_attention_rescale_kernel_cu_<hash>19rescale..."
    without the per-build hashes of the anonymous namespace."""
    import re

    return re.sub(r"_GLOBAL__N__[0-9a-f]+_\d+_(\w+?)_cu_[0-9a-f]+", r"_\1_", name)


# Kernels that keep a small stack frame: ptxas spills a few registers around the calls
# to its 64-bit integer division subroutine (tile and bin index arithmetic).  Known
# debt (issue 13 item 3: no int64 division in the kernels), measured on the build of
# 2026-12-06 (29 of 348 kernels, 8-16 bytes); the test holds the line.
KNOWN_STACK_FRAMES: dict[str, int] = {
    "sm_100 "
    "_ZN5hanet3gpu53_width_pool_kernel_max_pool_backward_nhwc_kernelIffLi4EEEvPKT_PKlPS3_lllllll": 8,
    "sm_100 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIddLi1ELb1EEEvPKT_PS3_PlPT0_S7_lllllll": 8,
    "sm_100 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIddLi2ELb0EEEvPKT_PS3_PlPT0_S7_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIN3c104HalfEfLi1ELb0EEEvPKT_S7_S7_PS5_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIN3c104HalfEfLi1ELb1EEEvPKT_S7_S7_PS5_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIN3c108BFloat16EfLi1ELb0EEEvPKT_S7_S7_PS5_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIN3c108BFloat16EfLi1ELb1EEEvPKT_S7_S7_PS5_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIddLi1ELb0EEEvPKT_S5_S5_PS3_PT0_lllllll": 8,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIddLi2ELb0EEEvPKT_S5_S5_PS3_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIffLi1ELb0EEEvPKT_S5_S5_PS3_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIffLi1ELb1EEEvPKT_S5_S5_PS3_PT0_lllllll": 16,
    "sm_100 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIffLi4ELb1EEEvPKT_S5_S5_PS3_PT0_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu53_width_pool_kernel_max_pool_backward_nhwc_kernelIddLi2EEEvPKT_PKlPS3_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIN3c104HalfEfLi1ELb1EEEvPKT_PS5_PlPT0_S9_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIN3c108BFloat16EfLi1ELb1EEEvPKT_PS5_PlPT0_S9_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIddLi2ELb0EEEvPKT_PS3_PlPT0_S7_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIddLi2ELb1EEEvPKT_PS3_PlPT0_S7_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu53_width_pool_kernel_width_pool_nhwc_kernelIffLi1ELb1EEEvPKT_PS3_PlPT0_S7_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIN3c104HalfEfLi8ELb1EEEvPKT_S7_S7_PS5_PT0_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIN3c108BFloat16EfLi8ELb1EEEvPKT_S7_S7_PS5_PT0_lllllll": 8,
    "sm_80 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIddLi1ELb1EEEvPKT_S5_S5_PS3_PT0_lllllll": 16,
    "sm_80 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIffLi1ELb1EEEvPKT_S5_S5_PS3_PT0_lllllll": 8,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nchw_kernelIddLi2ELb0EEEvPKT_S5_S5_PS3_PT0_lllli": 8,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nchw_kernelIddLi2ELb1EEEvPKT_S5_S5_PS3_PT0_lllli": 16,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nchw_kernelIffLi4ELb1EEEvPKT_S5_S5_PS3_PT0_lllli": 8,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIddLi1ELb0EEEvPKT_S5_S5_PS3_PT0_lllllll": 16,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIddLi2ELb1EEEvPKT_S5_S5_PS3_PT0_lllllll": 8,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIffLi1ELb0EEEvPKT_S5_S5_PS3_PT0_lllllll": 8,
    "sm_90 "
    "_ZN5hanet3gpu60_attention_rescale_kernel_rescale_nhwc_kernelIffLi4ELb0EEEvPKT_S5_S5_PS3_PT0_lllllll": 8,
}
