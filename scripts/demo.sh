#!/usr/bin/env bash
# The main job, on a fresh machine: set everything up, generate city scenes in the
# Cityscapes layout, train the demo (HANet) with torchrun on 2 CPU processes,
# evaluate it, draw predictions and height attention for the test scenes, train the
# same demo without HANet (same seed, same budget), and print both val mIoUs.
# Extra arguments are passed to both trainings as overrides (e.g. train.max_iter=100).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh
t_setup=$(( $(date +%s) - t0 ))
echo "== set-up took ${t_setup} s"
t1=$(date +%s)
export OMP_NUM_THREADS=1  # one thread per process: two processes on two cores
H=.venv/bin/hanet
DATA=data/synthetic_cityscapes
$H make-synthetic-cityscapes "$DATA" --train 80 --val 20 --test 4 --size 256x512 --seed 0
run() {  # run NAME OVERRIDES...
  local name=$1; shift
  rm -rf "runs/$name"
  .venv/bin/torchrun --standalone --nproc_per_node=2 train/train.py train/configs/demo.yaml \
    "output_dir=runs/$name" "data.root=$DATA" "$@"
  $H eval "runs/$name/checkpoints/last.pt" "data.root=$DATA" --json "runs/$name/eval.json"
}
run demo_hanet "$@"
$H predict runs/demo_hanet/checkpoints/last.pt "$DATA/leftImg8bit/test" --out runs/demo_hanet/pictures
run demo_baseline "model.hanet=[0,0,0,0,0]" "$@"
miou() { .venv/bin/python -c "import json,sys; print(f\"{100*json.load(open(sys.argv[1]))['miou']:.2f}\")" "$1"; }
echo
echo "== generated-scene val mIoU (same seed, same budget)"
echo "   HANet    : $(miou runs/demo_hanet/eval.json) %"
echo "   baseline : $(miou runs/demo_baseline/eval.json) %"
echo "   pictures : runs/demo_hanet/pictures/index.html"
echo "== set-up ${t_setup} s; demo $(( $(date +%s) - t1 )) s"
