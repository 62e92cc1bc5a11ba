#!/usr/bin/env bash
# The main job on a fresh machine: set everything up, then run the op benchmark
# (table printed, JSON written to bench/results/).  The training demo on generated
# city scenes replaces this once training lands.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh
echo "== set-up took $(( $(date +%s) - t0 )) s"
mkdir -p bench/results
(cd /tmp && "$OLDPWD/.venv/bin/python" -m hanet.bench ops --json "$OLDPWD/bench/results/ops_$(uname -n | tr -c 'a-zA-Z0-9\n' _)cpu.json" "$@")
