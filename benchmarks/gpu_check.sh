#!/usr/bin/env bash
# One pass of the GPU checks on a CUDA machine, under 8 minutes; a summary table is printed last.
#   benchmarks/gpu_check.sh [OUT_DIR]      (default: $OUT, else a temporary folder)
# Steps (each time-boxed; a failing step does not stop the others):
#   1. pytest -m cuda                      the CUDA tests
#   2. the grand-challenge mode on CUDA    both contracts on the sample scans, tiny test weights
#   3. benchmarks/inference.py --device cuda   when it exists
#   4. short training runs on CUDA         tiny config, then the paper's resolution (paper.yaml)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
OUT_DIR="${1:-${OUT:-$(mktemp -d)}}"
mkdir -p "$OUT_DIR"
export PYTHON OUT_DIR
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
rows=()

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to OUT_DIR/NAME.log, record a summary row
    local name="$1" limit="$2"; shift 2
    local started=$SECONDS status
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > >(tee "$OUT_DIR/$name.log") 2>&1
    case $? in
        0) status=PASS ;;
        124|137) status=TIMEOUT ;;
        *) status=FAIL ;;
    esac
    rows+=("$(printf '%-22s %-8s %6ss  %s' "$name" "$status" "$((SECONDS - started))" "$OUT_DIR/$name.log")")
}

skip() { rows+=("$(printf '%-22s %-8s %6s   %s' "$1" SKIP - "$2")"); }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

step cuda-tests 90 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider

gc_on_cuda() {
    local work="$OUT_DIR/gc"
    rm -rf "$work" && mkdir -p "$work/model" "$work/ct"
    "$PYTHON" - "$work" <<'PY' || return 1
import sys
from pathlib import Path
sys.path.insert(0, "tests")
import SimpleITK as sitk
from conftest import make_simple_chest, make_test_weights
work = Path(sys.argv[1])
make_test_weights(work / "model" / "test.pt")
for name in ("sample-healthy", "sample-covid"):
    src = Path("samples/ct") / f"{name}.mha"
    sitk.WriteImage(sitk.ReadImage(str(src)) if src.is_file() else make_simple_chest(), str(work / "ct" / f"{name}.mha"))
PY
    for contract in current legacy; do
        "$PYTHON" tests/container/make_input.py "$contract" "$work/$contract/input" --ct-dir "$work/ct" || return 1
        mkdir -p "$work/$contract/output"
        GC_INPUT_DIR="$work/$contract/input" GC_OUTPUT_DIR="$work/$contract/output" GC_MODEL_DIR="$work/model" \
            GC_DEVICE=cuda GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB=16384 "$PYTHON" -m algorithm gc || return 1
        grep -h '"device"' -r "$work/$contract/output" | head -2
    done
}
export -f gc_on_cuda  # timeout runs programs, not functions: run it in a child bash
step gc-mode-cuda 60 bash -c gc_on_cuda

if [ -f benchmarks/inference.py ]; then
    # 512x512x400 is the issue's GPU target (<= 5 s end to end, <= 4 GB GPU memory)
    step inference-bench 210 "$PYTHON" -m benchmarks.inference --device cuda --sizes 100,400 --no-peer \
        --out "$OUT_DIR/performance"
else
    skip inference-bench "benchmarks/inference.py not present"
fi

if "$PYTHON" -m training train --help >/dev/null 2>&1; then
    train_short() {
        "$PYTHON" -c "from training.toy import write_toy_dataset; write_toy_dataset('$OUT_DIR/toy', range(4))" || return 1
        "$PYTHON" -m training train --config training/configs/tiny.yaml --out "$OUT_DIR/train" \
            --set run.device=cuda optim.max_iters=20 data.root="$OUT_DIR/toy" data.cache_dir="$OUT_DIR/cache"
    }
    export -f train_short
    step train-short 45 bash -c train_short
    # the paper's resolution (256 in plane, two 116^3 -> 28^3 stage-II patches, OHEM, AMP) on the toy
    # scans: step time and GPU memory of real training (checked on CPU: 2 steps run)
    train_paper() {
        "$PYTHON" -m training train --config training/configs/paper.yaml --out "$OUT_DIR/train-paper" \
            --set run.device=cuda optim.max_iters=20 run.val_every=1000000 run.checkpoint_every=20 \
            data.root="$OUT_DIR/toy" data.cache_dir="$OUT_DIR/cache-paper" data.num_workers=2
    }
    export -f train_paper
    step train-paper-res 75 bash -c train_paper
else
    skip train-short "python -m training train not available"
fi

echo
echo "== summary (logs in $OUT_DIR)"
printf '%-22s %-8s %7s  %s\n' step status time log
for row in "${rows[@]}"; do echo "$row"; done
