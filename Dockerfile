# bpnet-eval container: CPU torch by default, a named CUDA build of torch by build argument. Built from the
# wheels in docker/local/ (docker/fetch-wheels.sh downloads them, pinned by docker/constraints.txt), so the build
# needs no network; the final image holds Python and one venv, and neither the wheels nor a CA bundle.
#
#   docker/fetch-wheels.sh && docker build -t bpnet-eval .
#   VARIANT=cuda CUDA_TAG=cu126 docker/fetch-wheels.sh && docker build -t bpnet-eval:cuda --build-arg VARIANT=cuda .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" bpnet-eval score preds.h5 plus.bw minus.bw
#
# It runs read-only and as any uid (caches go to a private per-uid directory in $TMPDIR, or nowhere); relative
# paths and the default report directory are in /data, the mounted directory (docs/clusters.md).
ARG BASE=python:3.11-slim-bookworm

# Python 3 where the base image lacks it (a plain Debian base: this step alone needs the network).
FROM ${BASE} AS python
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*; \
    fi

FROM python AS build
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG CUDA_TAG=cu126
ARG EXTRAS=plots
COPY docker/ /src/docker/
COPY pyproject.toml README.md /src/
COPY bpnet_eval /src/bpnet_eval
WORKDIR /src
# The wheels of docker/local only (--no-index); without a torch wheel there, docker/fetch-wheels.sh downloads the
# set first (the network and pip in the base image needed; docker/local/ca.crt: a CA bundle pip should trust).
RUN set -eu; \
    case "$VARIANT" in cpu) build=cpu; cuda=None ;; \
        cuda) build="$CUDA_TAG"; cuda=$(echo "$CUDA_TAG" | sed -n 's/^cu\([0-9]*\)\([0-9]\)$/\1.\2/p') ;; \
        *) echo "VARIANT must be cpu or cuda, not $VARIANT" >&2; exit 2 ;; esac; \
    if ! ls docker/local/torch-"$TORCH_VERSION+$build"-*.whl >/dev/null 2>&1; then \
        python3 -m pip --version >/dev/null 2>&1 || { echo "docker/local has no torch $TORCH_VERSION+$build wheel:" \
            "run VARIANT=$VARIANT CUDA_TAG=$CUDA_TAG docker/fetch-wheels.sh before building" >&2; exit 2; }; \
        if [ -f docker/local/ca.crt ]; then export PIP_CERT=/src/docker/local/ca.crt; fi; \
        VARIANT="$VARIANT" TORCH_VERSION="$TORCH_VERSION" CUDA_TAG="$CUDA_TAG" EXTRAS="$EXTRAS" \
            PYTHON_VERSION=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') bash docker/fetch-wheels.sh; \
    fi; \
    python3 -m venv --without-pip /opt/bpnet-eval; \
    pip_wheel=$(ls docker/local/pip-*.whl | head -n 1); \
    PIP_CONSTRAINT=/src/docker/constraints.txt /opt/bpnet-eval/bin/python "$pip_wheel/pip" install --no-index \
        --find-links docker/local --no-cache-dir --disable-pip-version-check --no-warn-script-location \
        "torch==$TORCH_VERSION+$build" "/src${EXTRAS:+[$EXTRAS]}"; \
    /opt/bpnet-eval/bin/python -c "import sys, torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda); \
        sys.exit(torch.__version__ != '$TORCH_VERSION+$build' or str(torch.version.cuda) != '$cuda')"; \
    torch=$(echo /opt/bpnet-eval/lib/python3*/site-packages/torch); \
    rm -rf "$torch/test" "$torch/include" "$torch/share"; \
    find "$torch/bin" -type f ! -name torch_shm_manager -delete; \
    find /opt/bpnet-eval -name '*.so*' -type f -exec /opt/bpnet-eval/bin/python docker/strip_symbols.py {} +

# The image: Python and the venv (without torch's headers, tests and static symbol tables), nothing of the build.
FROM python
COPY --from=build /opt/bpnet-eval /opt/bpnet-eval
RUN mkdir -m 0755 /data
# HDF5 without file locks (shared cluster filesystems); no cache variable: bpnet-eval picks a private one.
ENV PATH=/opt/bpnet-eval/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    HDF5_USE_FILE_LOCKING=FALSE
USER 10001:10001
WORKDIR /data
# SIGINT: Python handles it from its first instruction (SIGTERM only once bpnet-eval has installed its handler, and
# PID 1 ignores it until then), so `docker stop` ends a run at once, with no report left half-written.
STOPSIGNAL SIGINT
ENTRYPOINT ["bpnet-eval"]
CMD ["--help"]
