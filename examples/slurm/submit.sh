#!/bin/bash
# A dataset-scale run on Slurm: the paths as a job array of $SHARDS tasks, their
# merge, then the same for the manipulation.
#
#   MODEL=vit-base IMAGES=imagenet/val SHARDS=100 examples/slurm/submit.sh
#   examples/slurm/submit.sh paths 7,42      # resubmit tasks 7 and 42, then the rest
#   examples/slurm/submit.sh manipulate 3    # resubmit manipulate task 3, then its merge
#
# Environment: MODEL, IMAGES (required), SHARDS (100), OUT (out), PATHS_ARGS
# (further `paths` flags), NEURONPATH (the binary, default: on PATH), JOB_OPTS
# (further sbatch options for every job: --partition, --account, --cpus-per-task ...).
# Arguments: the step to start from (paths, or manipulate once the paths are
# merged) and its array tasks (default: all, 0 to SHARDS-1).
#
# Each merge waits for every task of its array to end (afterany) and refuses,
# naming them, shards that did not finish; the jobs after a failed merge are
# cancelled (--kill-on-invalid-dep), so that nothing waits forever. Watch the run
# with `neuronpath status $OUT`: it names a task that stopped (an error, scancel, a
# time limit) and the command that resumes it, this script with the same settings
# for that task alone; a resumed task carries on where it stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SHARDS=${SHARDS:-100} OUT=${OUT:-out} NEURONPATH=${NEURONPATH:-neuronpath}
export PATHS_ARGS=${PATHS_ARGS:-} JOB_OPTS=${JOB_OPTS:-}
: "${MODEL:?set MODEL to the checkpoint}" "${IMAGES:?set IMAGES to the ImageFolder}"
export MODEL IMAGES
from=${1:-paths}
all=0-$((SHARDS - 1))
tasks=${2:-$all}
# What `status` shows to resume a task: this script, in this folder, with these
# settings (the task adds its step and index).
RESUME="cd $(printf %q "$PWD") &&"
for name in MODEL IMAGES SHARDS OUT PATHS_ARGS NEURONPATH JOB_OPTS; do
    RESUME+=" $name=$(printf %q "${!name}")"
done
export RESUME="$RESUME $(printf %q "$here/submit.sh")"
mkdir -p logs "$OUT"
# shellcheck disable=SC2086
submit() { sbatch --parsable $JOB_OPTS "$@"; }
merge_paths="" after_paths=()
case $from in
paths)
    paths=$(submit --array="$tasks" "$here/paths.sbatch")
    merge_paths=$(submit --dependency="afterany:$paths" --export=ALL,STEM=paths "$here/merge.sbatch")
    echo "paths array $paths -> merge $merge_paths"
    after_paths=(--kill-on-invalid-dep=yes --dependency="afterok:$merge_paths")
    tasks=$all
    ;;
manipulate) ;;
*)
    echo "submit.sh: $from: the step is paths or manipulate" >&2
    exit 2
    ;;
esac
manipulate=$(submit --array="$tasks" "${after_paths[@]}" "$here/manipulate.sbatch")
merge=$(submit --dependency="afterany:$manipulate${merge_paths:+,afterok:$merge_paths}" \
    --kill-on-invalid-dep=yes --export=ALL,STEM=manipulate "$here/merge.sbatch")
echo "manipulate array $manipulate -> merge $merge"
