#!/usr/bin/env bash
# Download every wheel the image needs into docker/local/, at the versions docker/constraints.txt pins, so that
# the image builds with no network at all (`docker build --network none`, see docs/clusters.md).
#
#   docker/fetch-wheels.sh                          # CPU torch (torch==TORCH_VERSION+cpu)
#   VARIANT=cuda CUDA_TAG=cu126 docker/fetch-wheels.sh   # torch==TORCH_VERSION+cu126 from PyTorch's cu126 index
#   docker/fetch-wheels.sh --lock                   # resolve the newest versions again and rewrite the constraints
#
# Settings (environment): VARIANT (cpu|cuda), TORCH_VERSION (2.13.0), CUDA_TAG (cu126), PYTHON_VERSION (3.11: the
# base image's Python), PLATFORM (manylinux_2_28_x86_64), EXTRAS (plots), PIP ("python3 -m pip"). pip's own
# configuration applies (proxy, CA bundle: `pip config list`); torch comes only from
# https://download.pytorch.org/whl/<build> (or pip's find-links), never from PyPI, whose Linux torch wheel is
# a CUDA build other than the one asked for.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
VARIANT=${VARIANT:-cpu}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
CUDA_TAG=${CUDA_TAG:-cu126}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
PLATFORM=${PLATFORM:-manylinux_2_28_x86_64}
EXTRAS=${EXTRAS-plots}
read -r -a pip <<< "${PIP:-python3 -m pip}"
dest="$here/local"
constraints="$here/constraints.txt"

case "$VARIANT" in
  cpu) build=cpu ;;
  cuda) build=$CUDA_TAG ;;
  *) echo "fetch-wheels.sh: error: VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;;
esac
torch="torch==${TORCH_VERSION}+${build}"
arch=${PLATFORM#manylinux_*_*_}  # x86_64, aarch64
# the wheels the base image can install: CPython $PYTHON_VERSION on $PLATFORM or an older manylinux
target=(--only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION"
        --platform "$PLATFORM" --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch")

# what the image installs: the project with its extras, the build backend that installs it, pip itself
requirements=$(cd "$root" && python3 - "$EXTRAS" <<'EOF'
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11: the copy pip carries
    from pip._vendor import tomli as tomllib

project = tomllib.load(open("pyproject.toml", "rb"))
wanted = list(project["project"]["dependencies"]) + list(project["build-system"]["requires"]) + ["pip"]
for extra in filter(None, sys.argv[1].split(",")):
    wanted += project["project"]["optional-dependencies"][extra]
print("\n".join(r for r in wanted if not r.replace(" ", "").startswith("torch")))
EOF
)
mapfile -t requirements <<< "$requirements"

lock=0
[ "${1:-}" = --lock ] && lock=1
work=$dest
if [ $lock = 1 ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$dest"

# 1. torch, the build that was asked for, from PyTorch's index for that build only
"${pip[@]}" download --no-deps "${target[@]}" -d "$work" --index-url "https://download.pytorch.org/whl/$build" "$torch"
wheel=$(ls "$work"/torch-"${TORCH_VERSION}+${build}"-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
  echo "fetch-wheels.sh: error: no $torch wheel was downloaded; check that https://download.pytorch.org/whl/$build" \
       "has torch $TORCH_VERSION for Python $PYTHON_VERSION" >&2
  exit 1
fi

# 2. everything else from pip's index, torch's dependencies resolved against that wheel
pinned=()
[ $lock = 0 ] && pinned=(-c "$constraints")
"${pip[@]}" download "${target[@]}" -d "$work" --find-links "$work" "${pinned[@]}" "$torch" "${requirements[@]}"

if [ $lock = 1 ]; then
  {
    echo "# Versions of every wheel the image installs: written by docker/fetch-wheels.sh --lock"
    echo "# (CPython $PYTHON_VERSION, $PLATFORM, extras '$EXTRAS'; torch's CUDA builds pin their own nvidia-* wheels)."
    for file in "$work"/*.whl; do
      name=$(basename "$file" | cut -d- -f1 | tr '_' '-' | tr 'A-Z' 'a-z')
      version=$(basename "$file" | cut -d- -f2)
      echo "$name==${version%%+*}"
    done | sort -u
  } > "$constraints"
  cp -n "$work"/*.whl "$dest"/
  echo "fetch-wheels.sh: wrote $constraints ($(grep -vc '^#' "$constraints") packages)"
fi
echo "fetch-wheels.sh: $(ls "$dest"/*.whl | wc -l) wheels in $dest ($(du -sh "$dest" | cut -f1)); torch: $(basename "$wheel")"
