#!/usr/bin/env bash
# Builds the kernels against libtorch with CMake and runs the C++ test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
VPY=.venv/bin/python
SITE=$($VPY -c 'import site; print(site.getsitepackages()[0])')
args=(-DCMAKE_PREFIX_PATH="$($VPY -c 'import torch; print(torch.utils.cmake_prefix_path)')")
if $VPY -c 'import torch, sys; sys.exit(torch.version.cuda is None)'; then
  # A CUDA build of torch: its CMake config needs the toolkit and nvrtc located,
  # and an arch list so that it does not probe for a GPU.
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0;10.0+PTX"}
  nvrtc=$(ls "$SITE"/nvidia/cu*/lib/libnvrtc.so.* 2>/dev/null | grep -v builtins | head -n1 || true)
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME")
  [ -n "$nvrtc" ] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi
cmake -S . -B build/cmake "${args[@]}" > build/cmake-configure.log 2>&1 || { cat build/cmake-configure.log; exit 1; }
cmake --build build/cmake -j"${MAX_JOBS:-2}" > build/cmake-build.log 2>&1 || { cat build/cmake-build.log; exit 1; }
ctest --test-dir build/cmake --output-on-failure
