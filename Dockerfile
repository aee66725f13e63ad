# bpnet-eval container: CPU by default, CUDA by build argument; runs as a non-root user from a
# read-only image (Apptainer), with every cache pointed at /tmp.
#
#   docker build -t bpnet-eval .                                   # CPU torch
#   docker build -t bpnet-eval:cuda --build-arg VARIANT=cuda .     # CUDA torch (wheels bundle CUDA)
#   docker run --rm -v "$PWD:/data" -w /data bpnet-eval score preds.h5 plus.bw minus.bw
#   apptainer run docker-daemon://bpnet-eval:latest score ...
#
# Offline builds: put wheels (e.g. torch) and an extra CA bundle (ca.crt) into docker/local/.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG CUDA_TAG=cu126
ARG EXTRAS=plots

# Python 3 where the base image lacks it (a plain Debian base).
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

COPY docker/local/ /tmp/local/
RUN set -eu; \
    python3 -m venv /opt/bpnet-eval; \
    pip="/opt/bpnet-eval/bin/pip --disable-pip-version-check --no-cache-dir"; \
    if [ -f /tmp/local/ca.crt ]; then pip="$pip --cert /tmp/local/ca.crt"; fi; \
    torch_wheel=$(ls /tmp/local/torch-"${TORCH_VERSION}"*.whl 2>/dev/null | head -n 1 || true); \
    if [ "$VARIANT" = cpu ] && [ -n "$torch_wheel" ]; then \
        $pip install "$torch_wheel"; \
    elif [ "$VARIANT" = cpu ]; then \
        $pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple; \
    elif [ "$VARIANT" = cuda ]; then \
        $pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${CUDA_TAG}" \
            --extra-index-url https://pypi.org/simple; \
    else \
        echo "VARIANT must be cpu or cuda, not $VARIANT" >&2; exit 2; \
    fi
COPY pyproject.toml README.md /tmp/src/
COPY bpnet_eval /tmp/src/bpnet_eval
RUN set -eu; \
    if [ -f /tmp/local/ca.crt ]; then export PIP_CERT=/tmp/local/ca.crt; fi; \
    /opt/bpnet-eval/bin/pip --disable-pip-version-check --no-cache-dir install "/tmp/src${EXTRAS:+[$EXTRAS]}"; \
    rm -rf /tmp/src /tmp/local; \
    useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin bpnet

# Read-only image friendly: nothing is written below / ; caches go to /tmp (writable under
# Docker --read-only --tmpfs /tmp and under Apptainer); HDF5 does not lock (shared filesystems).
ENV PATH=/opt/bpnet-eval/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/bpnet-eval-mpl \
    XDG_CACHE_HOME=/tmp/bpnet-eval-cache \
    TORCHINDUCTOR_CACHE_DIR=/tmp/bpnet-eval-inductor \
    TRITON_CACHE_DIR=/tmp/bpnet-eval-triton \
    NUMBA_CACHE_DIR=/tmp \
    HDF5_USE_FILE_LOCKING=FALSE

USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["bpnet-eval"]
CMD ["--help"]
