#!/usr/bin/env bash
# Train at the paper's resolution in a fixed window on a lent GPU and leave everything to bring
# back in one folder (issue 19). Phantoms are generated on that machine (nothing is carried over).
#   benchmarks/gpu_train.sh [OUT_DIR]          (default: $OUT, else a temporary folder)
# Leaves in OUT_DIR: ctsunet-gpu.pt (the exported weights), train/ (last.pt, best.pt, metrics.jsonl,
# curves.png, config.yaml), eval/report.md (held-out phantoms, IoU and HD95), *.log, summary.txt.
# Settings (environment; the defaults fit a 15-minute device budget with time to spare):
#   TRAIN_MINUTES=6       the training window (run.time_limit_min)
#   N_TRAIN=48 N_TEST=6   phantoms to train on / to score on (test seeds 200+, training 5000+)
#   SIZE=256x256x208      phantom size in voxels (~1.6 mm; the paper's grid is 256 in plane)
#   DEVICE=cuda           cpu runs the same plumbing (with tiny sizes it is the script's own test)
#   JOBS=$(nproc)         parallel phantom generators
#   EXTRA_SET=""          more --set overrides for the training, e.g. "optim.max_iters=3000"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
OUT_DIR="${1:-${OUT:-$(mktemp -d)}}"
TRAIN_MINUTES="${TRAIN_MINUTES:-6}"
N_TRAIN="${N_TRAIN:-48}"
N_TEST="${N_TEST:-6}"
SIZE="${SIZE:-256x256x208}"
DEVICE="${DEVICE:-cuda}"
JOBS="${JOBS:-$(nproc)}"
EXTRA_SET="${EXTRA_SET:-}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS

generate() {  # generate FOLDER FIRST_SEED COUNT [extra args]: JOBS generators in parallel, then one folder
    local folder="$1" first="$2" count="$3"; shift 3
    local per=$(( (count + JOBS - 1) / JOBS )) pids=() part
    for ((part = 0; part * per < count; part++)); do
        local n=$(( count - part * per < per ? count - part * per : per ))
        "$PYTHON" -m training phantoms --out "$folder/part$part" --n "$n" --seed $((first + part * per)) \
            --size "$SIZE" --no-progress "$@" > "$folder.part$part.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    mkdir -p "$folder/images" "$folder/labels"
    mv "$folder"/part*/images/* "$folder/images/" && mv "$folder"/part*/labels/* "$folder/labels/"
    rm -rf "$folder"/part*
}

echo "== phantoms: $N_TRAIN training + $N_TEST test at $SIZE, $JOBS generators"
generate "$OUT_DIR/phantoms" 5000 "$N_TRAIN"
generate "$OUT_DIR/test" 200 "$N_TEST" --pathology none,copd,covid,effusion --cycle-pathology
echo "phantoms ready after $((SECONDS - started)) s"

echo "== training for $TRAIN_MINUTES min on $DEVICE"
# shellcheck disable=SC2086  # EXTRA_SET is a list of overrides
"$PYTHON" -m training train --config training/configs/gpu_window.yaml --set \
    data.root="$OUT_DIR/phantoms" data.cache_dir="$OUT_DIR/cache" run.out_dir="$OUT_DIR/train" \
    run.device="$DEVICE" run.time_limit_min="$TRAIN_MINUTES" $EXTRA_SET 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tee "$OUT_DIR/train.log"
rm -rf "$OUT_DIR/cache"  # preprocessed copies: large and regenerated from the phantoms anyway

echo "== export and score on the held-out phantoms"
"$PYTHON" -m training export "$OUT_DIR/train" --out "$OUT_DIR/ctsunet-gpu.pt"
"$PYTHON" -m algorithm predict "$OUT_DIR/test/images" -o "$OUT_DIR/test-pred" --weights "$OUT_DIR/ctsunet-gpu.pt" \
    --device "$DEVICE" --fissures network --no-preview --quiet
"$PYTHON" -m training evaluate --pred "$OUT_DIR/test-pred" --ref "$OUT_DIR/test/labels" --out "$OUT_DIR/eval"
rm -rf "$OUT_DIR/phantoms" "$OUT_DIR/test/images" "$OUT_DIR/test-pred"  # keep the folder small to bring back

{
    echo "gpu_train.sh: $N_TRAIN phantoms at $SIZE, $TRAIN_MINUTES min on $DEVICE, $((SECONDS - started)) s in all"
    "$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
    grep -h "trained to step\|time_limit_min" "$OUT_DIR/train.log" || true
    sed -n '/| Method/,/^$/p' "$OUT_DIR/eval/report.md"
} | tee "$OUT_DIR/summary.txt"
