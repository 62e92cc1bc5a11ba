#!/usr/bin/env bash
# Sets up a fresh machine: .venv at the repository root with torch 2.14.1 and
# torchvision 0.29.1 (taken from the local disk by plain pip), the package's
# dependencies, and the hanet package itself with its C++ (and, where torch has
# CUDA and nvcc is found, CUDA) kernels.  Idempotent: re-running only rebuilds hanet.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda  # the nvcc on PATH may be a wrapper; torch guesses wrong
fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0;10.0+PTX"}
export MAX_JOBS=${MAX_JOBS:-2}

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
VPY=.venv/bin/python
if ! $VPY -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "== installing torch 2.14.1 and torchvision 0.29.1"
  $VPY -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
echo "== installing dependencies"
$VPY -m pip install --quiet -r requirements.txt
echo "== building and installing hanet (logs: build/pip-install.log)"
mkdir -p build
if ! $VPY -m pip install -v --no-build-isolation --no-deps --force-reinstall . > build/pip-install.log 2>&1; then
  tail -50 build/pip-install.log
  echo "pip install of hanet failed; full log in build/pip-install.log" >&2
  exit 1
fi
(cd /tmp && "$OLDPWD/$VPY" -c "import hanet.ops as o; print('== hanet installed; backends here:', o.available_backends())")
