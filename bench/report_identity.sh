#!/usr/bin/env bash
# Write every report a refactor must leave byte-identical, for one case, with one bpnet-eval:
#   bench/report_identity.sh OUT_ROOT PREDICTIONS TRUTH_PLUS TRUTH_MINUS [REGIONS]
# The command is $BPNET_EVAL (default: bpnet-eval). Run it with the code before and after a change
# and compare the trees with `diff -r` (report.html and summary.json name the inputs: give the same
# input paths both times). --metrics all and --preset bpnet pool the auPRC, which --shard refuses:
# those two are scored unsharded only. partial.json (shard bookkeeping, not a report) may differ.
set -euo pipefail
out=$1 preds=$2 plus=$3 minus=$4 regions=${5:-}
cli=${BPNET_EVAL:-bpnet-eval}
extra=()
[ -n "$regions" ] && extra=(--regions "$regions")
mkdir -p "$out"
for mode in default all preset-bpnet-lite preset-chrombpnet preset-bpnet preset-basepairmodels preset-bpreveal; do
  case $mode in
    default) opts=() ;;
    all) opts=(--metrics all) ;;
    preset-*) opts=(--preset "${mode#preset-}") ;;
  esac
  start=$(date +%s.%N)
  $cli score "$preds" "$plus" "$minus" "${extra[@]}" "${opts[@]}" --out "$out/$mode" --quiet
  echo "$mode score $(echo "$(date +%s.%N) - $start" | bc) s"
  if [ "$mode" != all ] && [ "$mode" != preset-bpnet ]; then
    for i in 1 2; do
      $cli score "$preds" "$plus" "$minus" "${extra[@]}" "${opts[@]}" --shard "$i/2" --out "$out/$mode-shard$i" --quiet
    done
    $cli merge "$out/$mode-shard1" "$out/$mode-shard2" --out "$out/$mode-merged" --quiet
  fi
done
