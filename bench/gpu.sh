#!/usr/bin/env bash
# GPU check and benchmark, one script, under 5 minutes on a GPU machine; installs nothing beyond the project
# (run it from the project's venv, with the CUDA build of torch that machine uses):
#
#   bench/gpu.sh [WORK_DIR]            # default WORK_DIR: a new temporary directory
#
# 1. GPU == CPU on the fixture (data/fixtures): `score` on --device cpu and --device cuda, default metrics and
#    --metrics all in float64, default metrics in float32; every number of regions.tsv and summary.json
#    compared (bench/gpu_check.py: 1e-9 relative for float64 default metrics, 1e-7 for --metrics all, the
#    documented 1e-4 for float32). Exits 1 if any differs.
# 2. A 100k case (bench/make_case.py, the chip shape; GPU_BENCH_REGIONS to change), then compute alone
#    (bench/run_bench.py's compute stage) and `score` end to end (with and without figures), CPU vs GPU,
#    and the ratios cpu / gpu; and `score --no-plots --metrics all` on a 20k chip case (GPU_BENCH_ALL_REGIONS;
#    on the CPU it computes with a thread per CPU, at most 8).
#
# PYTHON (default: .venv/bin/python beside this project, else python3) is the interpreter whose bpnet-eval is
# timed. On a GPU node whose python3 already holds a CUDA torch, h5py, numpy, rich and matplotlib (as the H200 node of
# docs/performance.md): `python3 -m pip install --no-deps pyBigWig isal 'typer<0.29'` (or their wheels, offline),
# `python3 -m pip install --no-deps --no-build-isolation -e .`, then `PYTHON=python3 bench/gpu.sh` (150 s there). GPU_BENCH_DEVICE=cpu runs every step with the CPU in the GPU's place (checks the script itself on a
# machine without a GPU).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3
device=${GPU_BENCH_DEVICE:-cuda}
regions=${GPU_BENCH_REGIONS:-100000}
all_regions=${GPU_BENCH_ALL_REGIONS:-20000}
work=${1:-$(mktemp -d -t bpnet-eval-gpu-XXXXXX)}
mkdir -p "$work"
began=$(date +%s)
elapsed() { echo "$(( $(date +%s) - began )) s"; }

"$py" - "$device" <<'PY'
import sys, torch
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: "
      + (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"))
if device != "cpu" and not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: torch sees no GPU; install the CUDA build of torch in this venv "
             "(or GPU_BENCH_DEVICE=cpu to check the script on the CPU)")
PY

echo "== 1. GPU == CPU on the fixture ($(elapsed))"
"$py" "$root/bench/gpu_check.py" equal --out "$work/fixture" --device "$device"

echo "== 2. a $regions-region case ($(elapsed))"
[ -f "$work/case/case.json" ] || "$py" "$root/bench/make_case.py" "$work/case" --regions "$regions"
[ -f "$work/case_all/case.json" ] || "$py" "$root/bench/make_case.py" "$work/case_all" --regions "$all_regions"

echo "== 3. compute alone and score end to end, cpu vs $device ($(elapsed))"
"$py" "$root/bench/gpu_check.py" timing --case "$work/case" --all-case "$work/case_all" --device "$device"
echo "done in $(elapsed); numbers in $work/gpu_timing.json"
