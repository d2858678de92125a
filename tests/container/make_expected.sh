#!/usr/bin/env bash
# Regenerate tests/container/expected/ natively (no Docker) with the shipped weights, on the CPU.
# Run it whenever the weights (algorithm/weights/ctsunet.pt) or the pipeline's output change,
# review the diff of the volumes JSON, and commit tests/container/expected/.
#
#   tests/container/make_expected.sh                 # uses .venv/bin/python if present, else python3
#   WEIGHTS_DIR=/path/to/model tests/container/make_expected.sh   # a model folder instead of the baked-in weights
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

for contract in current legacy; do
    "$PYTHON" tests/container/make_input.py "$contract" "$WORK/$contract/input"
    mkdir -p "$WORK/$contract/output"
    # GC_MODEL_DIR points at an empty folder unless WEIGHTS_DIR is given: the baked-in weights run.
    mkdir -p "$WORK/no-model"
    GC_INPUT_DIR="$WORK/$contract/input" GC_OUTPUT_DIR="$WORK/$contract/output" \
    GC_MODEL_DIR="${WEIGHTS_DIR:-$WORK/no-model}" GC_DEVICE=cpu GC_PRECISION=float32 \
        "$PYTHON" -m algorithm gc
    rm -rf "tests/container/expected/$contract"
    mkdir -p "tests/container/expected"
    cp -r "$WORK/$contract/output" "tests/container/expected/$contract"
    echo "wrote tests/container/expected/$contract"
done
