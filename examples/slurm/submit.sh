#!/bin/bash
# A dataset-scale run on Slurm: the paths as a job array of $SHARDS tasks, their
# merge once every task succeeded, then the same for the manipulation.
#
#   MODEL=vit-base IMAGES=imagenet/val SHARDS=100 examples/slurm/submit.sh
#
# Environment: MODEL, IMAGES (required), SHARDS (100), OUT (out), PATHS_ARGS
# (further `paths` flags), NEURONPATH (the binary, default: on PATH).
# Watch it with `neuronpath status $OUT`. A task that failed (time limit, node
# lost) leaves its merge waiting forever (afterok): resubmit just those tasks
# (`sbatch --array=7,42 paths.sbatch`: they resume) and then the merge by hand.
set -euo pipefail
here=$(dirname "$0")
export SHARDS=${SHARDS:-100} OUT=${OUT:-out}
: "${MODEL:?set MODEL to the checkpoint}" "${IMAGES:?set IMAGES to the ImageFolder}"
export MODEL IMAGES
mkdir -p logs "$OUT"
last=$((SHARDS - 1))
paths=$(sbatch --parsable --array="0-$last" "$here/paths.sbatch")
merge_paths=$(sbatch --parsable --dependency="afterok:$paths" --export=ALL,STEM=paths "$here/merge.sbatch")
manipulate=$(sbatch --parsable --array="0-$last" --dependency="afterok:$merge_paths" "$here/manipulate.sbatch")
merge_manipulate=$(sbatch --parsable --dependency="afterok:$manipulate" --export=ALL,STEM=manipulate "$here/merge.sbatch")
echo "paths array $paths -> merge $merge_paths -> manipulate array $manipulate -> merge $merge_manipulate"
