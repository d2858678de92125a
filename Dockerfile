# syntax=docker/dockerfile:1
# CTSU-Net pulmonary lobe segmentation: the grand-challenge.org algorithm image.
#
# The base image's torch is the runtime torch: requirements.txt pins torch==2.13.0 and this tag
# must carry the same version (checked below; change both together, never install a second torch).
# CUDA 12.6 rather than the 13.0/13.2 builds of 2.13.0: it runs on the widest range of host drivers
# (CUDA 12 minor-version compatibility) and covers the platform's T4 (sm_75) and A10G (sm_86).
# The platform runs amd64 only; pinning it here keeps an arm64 host (Apple silicon) from
# silently building an image the platform cannot run.
# hadolint ignore=DL3029
FROM --platform=linux/amd64 pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

ARG TORCH_VERSION=2.13.0
# The 2.12+ images use the system Python (PEP 668 "externally managed"): this image is the
# environment, so pip may install into it.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONPATH=/opt/app \
    HOME=/tmp

# Numeric non-root user (the platform rejects root); 1001 avoids the base's uid 1000 "ubuntu".
RUN groupadd --system --gid 1001 algorithm \
    && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin algorithm

WORKDIR /opt/app

# Runtime requirements without torch (the base image provides it), then verify the pin.
COPY --chmod=0755 requirements.txt /opt/app/requirements.txt
RUN grep -v '^torch' /opt/app/requirements.txt > /tmp/requirements-runtime.txt \
    && python -m pip install --no-cache-dir -r /tmp/requirements-runtime.txt \
    && rm /tmp/requirements-runtime.txt \
    && python -c "import sys, torch; v = torch.__version__; sys.exit(0 if v.startswith('${TORCH_VERSION}') else 'base image torch ' + v + ' does not match the pinned ${TORCH_VERSION}')" \
    && grep -qx "torch==${TORCH_VERSION}" /opt/app/requirements.txt

# Code and the shipped weights (algorithm/weights/ctsunet.pt when present). Owned by root and
# world-readable: checkpoints are saved 0600, which the non-root user could not read.
COPY --chmod=0755 algorithm/ /opt/app/algorithm/

USER 1001:1001

ENTRYPOINT ["python", "-m", "algorithm", "gc"]
