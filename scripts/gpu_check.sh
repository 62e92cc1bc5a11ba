#!/usr/bin/env bash
# The checks that need a GPU, in one run: build the extension for the local card,
# run tests/test_gpu.py (CUDA and compiled Triton kernels vs the reference), the build
# checks and the index-bounds tests past 2^31 on the GPU (pytest-xdist: requirements.txt), then the
# op and model benchmarks.  Every step runs even if an earlier one failed; logs and
# JSON land in $OUT (default: out/gpu).  Uses the python3 on PATH as it is (a machine
# with torch, triton and pytest installed; no network needed).
#
#   bash scripts/gpu_check.sh            # everything
#   STEPS="build tests" bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
STEPS=${STEPS:-"build tests ops launches triton_host model model_triton infer"}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} HANET_CUDA=1
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# Only the local card's architecture: a quicker build.
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  export TORCH_CUDA_ARCH_LIST
fi
status=0
step() { echo "=== $1 ($(date +%T))"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
$PY -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

for s in $STEPS; do
  case $s in
  build)
    step build
    start=$SECONDS
    if ! timeout 240 $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1; then
      tail -40 "$OUT/build.log"; status=1
    fi
    echo "build: $((SECONDS - start)) s"
    ;;
  tests)
    step tests
    TRITON_INTERPRET=0 HANET_REQUIRE_GPU=1 timeout "${TEST_TIMEOUT:-240}" $PY -m pytest -q -p no:cacheprovider \
      --rootdir=. -c pyproject.toml -n "${TEST_WORKERS:-8}" --tb=line -rf --durations=5 \
      tests/test_gpu.py tests/test_cuda_build.py tests/test_index_bounds.py tests/test_no_host_sync.py \
      tests/test_branch_graph.py >"$OUT/tests.log" 2>&1 || status=1
    grep -E "^(FAILED|ERROR)|passed|failed|error" "$OUT/tests.log" | tail -30
    ;;
  ops)
    step "ops benchmark"
    timeout "${OPS_TIMEOUT:-170}" $PY -m hanet.bench ops --device cuda --dtypes float32,bfloat16 --reps 5 \
      --ops attention_rescale,width_pool_acc,width_pool_max \
      --json "$OUT/ops_cuda.json" >"$OUT/ops_bench.log" 2>&1 || status=1
    cat "$OUT/ops_bench.log" | tail -60
    ;;
  launches)
    step "kernel launches per HANet site"
    timeout 60 $PY -m hanet.bench launches --device cuda >"$OUT/launches.log" 2>&1 || status=1
    timeout 60 $PY -m hanet.bench launches --device cuda --cuda-graph >>"$OUT/launches.log" 2>&1 || status=1
    cat "$OUT/launches.log"
    ;;
  triton_host)
    step "Triton host cost per call"
    timeout 60 $PY -m hanet.bench triton-host --device cuda >"$OUT/triton_host.log" 2>&1 || status=1
    tail -20 "$OUT/triton_host.log"
    ;;
  model)
    step "model benchmark"
    timeout "${MODEL_TIMEOUT:-100}" $PY -m hanet.bench model --device cuda --height 768 --width 768 --batch 2 \
      --reps 50 --cuda-graph --json "$OUT/model_cuda.json" >"$OUT/model_bench.log" 2>&1 || status=1
    tail -12 "$OUT/model_bench.log"
    ;;
  model_triton)
    step "model benchmark, Triton kernels"
    HANET_BACKEND=triton timeout "${MODEL_TIMEOUT:-100}" $PY -m hanet.bench model --device cuda --height 768 \
      --width 768 --batch 2 --reps 30 --no-memory --json "$OUT/model_cuda_triton.json" >"$OUT/model_bench_triton.log" 2>&1 || status=1
    tail -8 "$OUT/model_bench_triton.log"
    ;;
  infer)
    step "inference benchmark"
    timeout "${INFER_TIMEOUT:-150}" $PY -m hanet.bench infer --device cuda --height 1024 --width 2048 --crop 768 \
      --reps 5 --json "$OUT/infer_cuda.json" >"$OUT/infer_bench.log" 2>&1 || status=1
    tail -12 "$OUT/infer_bench.log"
    ;;
  esac
done
step done
exit $status
