#!/usr/bin/env bash
# Build the image, run it on the sample scans the way grand-challenge.org does, for both I/O
# contracts, and compare the outputs with tests/container/expected/. Prints PASS or FAIL; exit 0 = pass.
# The runs pin GC_PRECISION=float32, the arithmetic tests/container/expected/ was made with, so the comparison
# holds on any CPU or GPU (the default, "auto", uses bfloat16/float16 where the hardware has it).
#
#   ./test.sh                         # baked-in weights
#   MODEL_DIR=/path/to/model ./test.sh   # also mount a model folder at /opt/ml/model (read-only)
#   MEMORY=8g ./test.sh               # the container's memory limit (default 8g, the CPU instance)
# Needs docker (with the NVIDIA container toolkit for GPU runs) and python3 (standard library).
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${IMAGE:-ctsunet-lobes}"
MEMORY="${MEMORY:-8g}"
MEMORY_MB="$(( ${MEMORY%g} * 1024 ))"
SHM="${SHM:-$(( ${MEMORY%g} / 2 ))g}"  # the platform gives /dev/shm half the memory
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

./build.sh

user="$(docker image inspect --format '{{.Config.User}}' "$IMAGE")"
case "$user" in
    ""|root|0|0:*) echo "FAIL: the image runs as root (USER '$user'); the platform rejects it"; exit 1 ;;
esac

gpu_args=()
if nvidia-smi >/dev/null 2>&1; then
    gpu_args=(--gpus all)
    echo "GPU found: running with --gpus all"
else
    echo "no GPU (nvidia-smi failed): running on the CPU"
fi
model_args=()
if [ -n "${MODEL_DIR:-}" ]; then
    model_args=(-v "$(cd "$MODEL_DIR" && pwd):/opt/ml/model:ro")
fi

failed=0
for contract in current legacy; do
    input="$WORK/$contract/input"
    output="$WORK/$contract/output"
    python3 tests/container/make_input.py "$contract" "$input"
    mkdir -p "$output"
    chmod -R a+rX "$input"
    chmod 777 "$output"  # the image's non-root user writes here
    echo "== $contract contract"
    if ! docker run --rm --platform=linux/amd64 --network none \
        --memory="$MEMORY" --memory-swap="$MEMORY" --shm-size="$SHM" \
        -e GRAND_CHALLENGE_COMPONENT_MAX_MEMORY_MB="$MEMORY_MB" \
        -e GC_PRECISION=float32 \
        ${gpu_args[@]+"${gpu_args[@]}"} ${model_args[@]+"${model_args[@]}"} \
        -v "$input:/input:ro" -v "$output:/output" \
        "$IMAGE"; then
        echo "FAIL: the $contract run exited non-zero"
        failed=1
        continue
    fi
    # the comparison runs inside the image: it needs only the runtime requirements
    if ! docker run --rm --platform=linux/amd64 --network none --entrypoint python \
        -v "$PWD/tests/container:/opt/test:ro" -v "$output:/output:ro" \
        "$IMAGE" /opt/test/compare_outputs.py "/opt/test/expected/$contract" /output; then
        failed=1
    fi
done

if [ "$failed" = 0 ]; then
    echo "PASS: both contracts ran and match tests/container/expected/"
else
    echo "FAIL: see the messages above"
fi
exit "$failed"
