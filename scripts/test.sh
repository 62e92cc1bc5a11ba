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
# The CMake build of the C++ test runs meanwhile at the lowest priority: it takes the
# CPU time pytest leaves idle (subprocess start-ups, waits) instead of a minute after it.
mkdir -p build
(nice -n 19 bash scripts/cmake_test.sh > build/cmake-test.log 2>&1; echo $? > build/cmake-test.rc) &
cmake_job=$!
export TRITON_INTERPRET=1
# The suite writes checkpoints and runs under the temp dir (pytest keeps only failed
# tests' directories): say so up front when the disk is short, not as ENOSPC errors later.
tmp=${TMPDIR:-/tmp}
free_gb=$(df -Pk "$tmp" | awk 'NR == 2 {print int($4 / 1048576)}')
echo "== $free_gb GB free under $tmp"
if [ "$free_gb" -lt "${HANET_TEST_MIN_FREE_GB:-6}" ]; then
  echo "only $free_gb GB free under $tmp; the test suite needs about 6 GB there (set TMPDIR to a larger disk," \
       "or HANET_TEST_MIN_FREE_GB to override)" >&2
  exit 1
fi
echo "== pytest"
# Run from tests/ against the installed package (not the source tree).
.venv/bin/pytest -p no:cacheprovider -q --rootdir=. -c pyproject.toml tests --durations=15 "$@"
echo "== C++ kernel test (CMake + ctest)"
wait "$cmake_job" || true
cat build/cmake-test.log
[ "$(cat build/cmake-test.rc 2>/dev/null)" = 0 ] || { echo "the CMake build or ctest failed (above)" >&2; exit 1; }
