#!/usr/bin/env bash
# Tables III and IV of docs/results.md at a matched CPU budget: CTSU-Net (geometric criss-cross
# attention), without the non-local module, without the geometric term, and the one-stage 3D U-Net,
# each trained from scratch with the same recipe, data and seed, two runs at a time with one
# thread each (about 80 min a pair on 2 cores), then predicted and scored on the held-out test set.
#
#   [VARIANTS="geometric none"] bash training/ablation.sh [train|predict|evaluate|all]   (default: all)
#
# The test set comes from `make results` (data/testset). Runs go to runs/ablation/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONUTF8=1
RUNS=runs/ablation
TESTSET=data/testset
# Two-stage recipe, two runs as for the shipped weights (docs/results.md): 300 stage-I steps and
# 60 end-to-end steps, then 90 more end-to-end steps from there (fresh optimizer, lr 0.01).
PHASE1="run.stage1_only_iters=300 optim.max_iters=360 run.val_every=360 run.checkpoint_every=20 run.num_threads=1"
PHASE2="run.stage1_only_iters=0 optim.max_iters=90 optim.lr=0.01 optim.warmup_iters=5 run.val_every=90 run.checkpoint_every=10 run.num_threads=1"
# The 3D U-Net has no cheap stage I: 160 steps of 132^3 -> 44^3 take about the cascade's wall time.
UNET="model.kind=unet3d optim.max_iters=160 run.val_every=160 run.checkpoint_every=10 run.num_threads=1"
VARIANTS=${VARIANTS:-"geometric none appearance unet3d"}

train_one() {  # name, overrides...
  local name=$1; shift
  $PY -m training train --config training/configs/cpu.yaml --out "$RUNS/$name" --set "$@" >"$RUNS/$name.log" 2>&1
}

train_variant() {  # geometric | none | appearance | unet3d; the final weights are $RUNS/<name>-final.pt
  local name=$1
  if [ "$name" = unet3d ]; then
    train_one unet3d $UNET
    cp "$RUNS/unet3d/last.pt" "$RUNS/unet3d-final.pt"
    return
  fi
  train_one "$name" $PHASE1 model.nonlocal_mode="$name"
  $PY -m training train --config training/configs/cpu.yaml --init "$RUNS/$name/last.pt" --out "$RUNS/$name-joint" \
    --set $PHASE2 model.nonlocal_mode="$name" >"$RUNS/$name-joint.log" 2>&1
  cp "$RUNS/$name-joint/last.pt" "$RUNS/$name-final.pt"
}

train() {  # two variants at a time, one thread each
  mkdir -p "$RUNS"
  set -- $VARIANTS
  while [ $# -gt 0 ]; do
    train_variant "$1" &
    if [ $# -gt 1 ]; then train_variant "$2" & shift; fi
    shift
    wait
  done
}

predict() {
  for name in $VARIANTS; do
    $PY -m training predict "$RUNS/$name-final.pt" --images "$TESTSET/images" --out "$RUNS/$name-pred" --threads 2
  done
}

evaluate() {  # CTSU-Net (geometric, first in VARIANTS) against each other variant
  local first="" others=() names=()
  for name in $VARIANTS; do
    case $name in
      geometric) label="CTSU-Net" ;; none) label="w/o non-local" ;;
      appearance) label="w/o geometric term" ;; unet3d) label="3D U-Net" ;;
    esac
    if [ -z "$first" ]; then first=$name; else others+=("$RUNS/$name-pred"); fi
    names+=("$label")
  done
  $PY -m training evaluate --pred "$RUNS/$first-pred" --ref "$TESTSET/labels" --vs "${others[@]}" \
    --names "${names[@]}" --out results/evaluation/ablation
}

case "${1:-all}" in
  train) train ;;
  predict) predict ;;
  evaluate) evaluate ;;
  all) train; predict; evaluate ;;
  *) echo "usage: $0 [train|predict|evaluate|all]" >&2; exit 2 ;;
esac
