#!/bin/bash
# Score several prediction files, each split into N_SHARDS shards, as one SLURM array job,
# then merge each file's shards with a dependent job.
#
#   bash examples/slurm_array.sh              # submits the array and the merge job that follows it
#   PREDICTIONS="a.h5 b.h5" TRUTH="plus.bw minus.bw" N_SHARDS=16 bash examples/slurm_array.sh
#
# Array task t (1-based, --array=1-TOTAL) scores shard ((t-1) % N_SHARDS) + 1 of prediction file
# (t-1) / N_SHARDS. A preempted or failed task can simply be resubmitted: shards whose partial
# report is complete are skipped.
#SBATCH --job-name=bpnet-eval
#SBATCH --cpus-per-task=2
#SBATCH --mem=2G
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

# Settings (or set them in the environment before sbatch/bash):
read -r -a PREDICTIONS <<< "${PREDICTIONS:-fold0/predictions.h5 fold1/predictions.h5}"  # one HDF5 per model/fold
read -r -a TRUTH <<< "${TRUTH:-observed.plus.bw observed.minus.bw}"  # one bigWig per predicted track
N_SHARDS=${N_SHARDS:-8}
OUT=${OUT:-bpnet-eval-shards}
BPNET_EVAL=${BPNET_EVAL:-bpnet-eval}
export HDF5_USE_FILE_LOCKING=FALSE                         # HDF5 on shared cluster filesystems

if [[ "${1:-}" == merge ]]; then                           # the dependent job: one report per model
    for k in "${!PREDICTIONS[@]}"; do
        "$BPNET_EVAL" merge "$OUT/model$k"/shard-* --out "$OUT/model$k/report" --quiet
    done
    exit 0
fi
TOTAL=$(( ${#PREDICTIONS[@]} * N_SHARDS ))
if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then             # run by hand: submit the array + the merge
    mkdir -p logs
    array=$(sbatch --parsable --array=1-"$TOTAL" --export=ALL "$0")
    sbatch --dependency=afterok:"$array" --job-name=bpnet-eval-merge --output=logs/%x-%j.out \
        --export=ALL --wrap "bash $0 merge"
    exit 0
fi

task=$(( SLURM_ARRAY_TASK_ID - 1 ))
model=$(( task / N_SHARDS ))
shard=$(( task % N_SHARDS + 1 ))
"$BPNET_EVAL" score "${PREDICTIONS[$model]}" "${TRUTH[@]}" --device cpu \
    --shard "$shard/$N_SHARDS" --out "$OUT/model$model/shard-$shard" --quiet
# With one prediction file, --array=1-N_SHARDS and --shard auto/$N_SHARDS do the same.
