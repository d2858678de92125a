#!/usr/bin/env bash
# Build the grand-challenge.org algorithm image (linux/amd64).
#   ./build.sh                  # tags ctsunet-lobes:latest
#   IMAGE=myname ./build.sh --no-cache
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${IMAGE:-ctsunet-lobes}"
if [ ! -f algorithm/weights/ctsunet.pt ]; then
    echo "note: algorithm/weights/ctsunet.pt is missing: the image will run only with a model" \
         "tarball (model.tar.gz, extracted to /opt/ml/model/)" >&2
fi
docker build --platform=linux/amd64 --tag "$IMAGE" "$@" .
