"""Build of the hanet package and its C++/CUDA extension `hanet._C`.

The C++ CPU kernels are always built.  The CUDA kernels are built when torch has
CUDA and nvcc is found; HANET_CUDA=1 forces them (and fails without nvcc),
HANET_CUDA=0 leaves them out.  TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0;10.0+PTX"
(cubins for A100, H100 and B200, and compute_100 PTX that newer GPUs JIT-compile).
HANET_CPU_VEC=avx2|none picks the CPU vector width (default: avx2 when this
machine has AVX2+FMA+F16C, since the extension is built where it runs).
"""
from __future__ import annotations

import glob
import os
import platform

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# sm_80, sm_90, sm_100 cubins + compute_100 PTX (tests/test_cuda_build.py checks them).
DEFAULT_ARCHS = "8.0;9.0;10.0+PTX"


def _cpu_has(*flags: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return all(flag in words for flag in flags)


def _cpu_vec_flags() -> list[str]:
    choice = os.environ.get("HANET_CPU_VEC", "auto").lower()
    if choice not in ("auto", "avx2", "none"):
        raise SystemExit(f"HANET_CPU_VEC must be auto, avx2 or none, got {choice!r}")
    is_x86 = platform.machine().lower() in ("x86_64", "amd64")
    want = choice == "avx2" or (choice == "auto" and is_x86 and _cpu_has("avx2", "fma", "f16c"))
    if not want:
        return []
    # at::vec picks its AVX2 implementation (in its own inline namespace) from these macros.
    return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]


def _want_cuda() -> bool:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    forced = os.environ.get("HANET_CUDA")
    if forced not in (None, "", "0", "1"):
        raise SystemExit(f"HANET_CUDA must be 0 or 1, got {forced!r}")
    found = torch.version.cuda is not None and CUDA_HOME is not None and os.path.exists(
        os.path.join(CUDA_HOME, "bin", "nvcc")
    )
    if forced == "1" and not found:
        raise SystemExit(
            "HANET_CUDA=1 but CUDA cannot be built: torch.version.cuda="
            f"{torch.version.cuda}, CUDA_HOME={CUDA_HOME} (set CUDA_HOME=/usr/local/cuda)"
        )
    return found if forced in (None, "") else forced == "1"


def _archs_tag(arch_list: str) -> str:
    """"8.0;9.0;10.0+PTX" -> "80_90_100ptx": the targets, as an identifier-safe macro
    value that hanet._C exposes as cuda_archs (read by hanet/ops/_extension.py)."""
    tags = []
    for entry in arch_list.replace(" ", ";").split(";"):
        if entry:
            cc = entry.split("+")[0].replace(".", "")
            tags.append(cc + ("ptx" if entry.endswith("+PTX") else ""))
    return "_".join(tags)


def _extensions():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension, include_paths

    # csrc/README.md: one registration point, the C++ contract, shared code, one file per op.
    sources = ["csrc/registration.cpp"] + sorted(
        glob.glob("csrc/common/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -fopenmp: at::parallel_for is header code that runs on OpenMP only when _OPENMP is
    # defined; without it every CPU kernel runs on one thread.  The extension then uses
    # the libgomp.so.1 that torch ships and has already loaded (same soname).
    cxx = ["-O3", "-std=c++20", "-Wall", "-Wextra", "-DHANET_PYTHON_MODULE", "-fopenmp"] + _cpu_vec_flags()
    include = [os.path.join(ROOT, "csrc")]
    # torch's headers as system headers: -Wall -Wextra then report our sources only.
    cxx += [f"-isystem{d}" for d in include_paths()]
    if _want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
        cxx = cxx + [f"-DHANET_CUDA_ARCHS={_archs_tag(os.environ['TORCH_CUDA_ARCH_LIST'])}"]
        nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo",
                "-Xcompiler=-Wall", "-DHANET_PYTHON_MODULE"]
        return [CUDAExtension("hanet._C", sources + sorted(glob.glob("csrc/cuda/*.cu")),
                              include_dirs=include, extra_link_args=["-fopenmp"],
                              extra_compile_args={"cxx": cxx + ["-DHANET_WITH_CUDA"], "nvcc": nvcc})]
    return [CppExtension("hanet._C", sources, include_dirs=include, extra_compile_args={"cxx": cxx},
                         extra_link_args=["-fopenmp"])]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    packages=find_packages(include=["hanet", "hanet.*"]),
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
)
