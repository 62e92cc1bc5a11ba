#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite: pytest
# (Triton kernels under TRITON_INTERPRET=1), the build-warning check, and the
# C++ kernel test through CMake/ctest.  Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== compiler warnings in our sources"
if grep -E "csrc/[^ ]*[:(][0-9]+[^ ]*:? (warning|remark)" build/pip-install.log; then
  echo "the build of csrc/ printed warnings (above); see build/pip-install.log" >&2
  exit 1
fi
echo "none"
export TRITON_INTERPRET=1
echo "== pytest"
# Run from tests/ against the installed package (not the source tree).
.venv/bin/pytest -p no:cacheprovider -q --rootdir=. -c pyproject.toml tests "$@"
echo "== C++ kernel test (CMake + ctest)"
bash scripts/cmake_test.sh
