#!/usr/bin/env bash
# Build, then write the files to upload to grand-challenge.org:
#   IMAGE.tar.gz   the container image (docker save | gzip)
#   model.tar.gz   the weights, for the platform's separate model upload (extracted to /opt/ml/model/)
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${IMAGE:-ctsunet-lobes}"
./build.sh
docker save "$IMAGE" | gzip -c > "${IMAGE}.tar.gz"
echo "wrote ${IMAGE}.tar.gz ($(du -h "${IMAGE}.tar.gz" | cut -f1))"
if [ -f algorithm/weights/ctsunet.pt ]; then
    tar -czf model.tar.gz -C algorithm/weights ctsunet.pt
    echo "wrote model.tar.gz ($(du -h model.tar.gz | cut -f1))"
fi
