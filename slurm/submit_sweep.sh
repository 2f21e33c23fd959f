#!/usr/bin/env bash
# submit_sweep.sh: plan a sweep and submit the tasks that are not complete as
# one Slurm job array of slurm/sweep.sbatch. Prints the array's job id on
# stdout (nothing when every task is complete); what it does goes to stderr. Run it again after preemptions, failures or an edit
# that adds grid points: it submits only what is missing.
#
#   slurm/submit_sweep.sh SWEEP_FILE [sbatch options...]
#   slurm/submit_sweep.sh experiments/fmnist_kn.sweep --time=1:00:00 --ntasks=4
#
# Run it from the directory the sweep's paths are relative to (the repository
# root for experiments/*.sweep): the jobs start there.
# Environment: PROXYGML_BIN (default build/proxygml of this repository),
# PROXYGML_LAUNCHER (default srun --mpi=pmix), passed on to the jobs;
# PROXYGML_ARRAY_MAX_RUNNING=N runs at most N tasks at once (--array=...%N).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$here")
export PROXYGML_BIN=${PROXYGML_BIN:-$ROOT/build/proxygml}
SBATCH_SCRIPT=${PROXYGML_SWEEP_SBATCH:-$here/sweep.sbatch}

die() { echo "submit_sweep.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: slurm/submit_sweep.sh SWEEP_FILE [sbatch options...]"
sweep=$1
shift
[ -x "$PROXYGML_BIN" ] || die "$PROXYGML_BIN is not an executable: build first (meson compile -C build) or set PROXYGML_BIN"
command -v sbatch >/dev/null || die "sbatch not found: is this a Slurm login node? (scripts/slurm-lab.sh starts a local one)"

# checks the sweep file and every grid point, writes OUT/manifest.tsv
"$PROXYGML_BIN" sweep plan "$sweep" >&2 || exit 2
# OUT is the parent of any task's run directory
out=$("$PROXYGML_BIN" sweep args "$sweep" 0 | sed -n '/^--out$/{n;p;q}')
out=$(dirname "$out")

# tasks to submit: everything but complete runs and runs of another configuration
status=$("$PROXYGML_BIN" sweep status "$sweep")
todo=$(awk '$1 ~ /^[0-9]+$/ && $2 !~ /^tasks?:$/ && $2 != "complete" && $2 != "foreign" { print $1 }' <<<"$status")
awk '$1 ~ /^[0-9]+$/ && $2 == "foreign" {
       printf "submit_sweep.sh: task %s: %s holds a run of another configuration: not submitted (move it away to rerun)\n", $1, $3 }' \
  <<<"$status" >&2
ntasks=$(awk '$1 ~ /^[0-9]+$/ && $2 !~ /^tasks?:$/' <<<"$status" | wc -l)
if [ -z "$todo" ]; then
  echo "submit_sweep.sh: all $ntasks tasks of $sweep are complete (or foreign): nothing to submit" >&2
  exit 0
fi

# a second array over the same run directories would train them twice at once
tag="proxygml-sweep:$(cd "$out" && pwd)"
busy=$(squeue -h -o '%i|%k' 2>/dev/null | awk -F'|' -v t="$tag" '$2 == t { print $1 }' | head -1)
[ -z "$busy" ] || die "job $busy of this sweep is still queued or running: wait for it or scancel it first"

# compress the task ids into array ranges: 0 1 2 5 -> 0-2,5
ranges=$(awk 'NR == 1 { a = b = $1; next }
              $1 == b + 1 { b = $1; next }
              { printf "%s%s,", a, (a == b ? "" : "-" b); a = b = $1 }
              END { printf "%s%s\n", a, (a == b ? "" : "-" b) }' <<<"$todo")
n=$(wc -l <<<"$todo")
mkdir -p "$out/logs"
# Slurm's own output file only gets what happens before the task's log is
# opened in its run directory (e.g. a run directory that cannot be written)
jobid=$(sbatch --parsable --array="$ranges${PROXYGML_ARRAY_MAX_RUNNING:+%$PROXYGML_ARRAY_MAX_RUNNING}" --comment="$tag" --output="$out/logs/slurm-%A_%a.out" "$@" \
  "$SBATCH_SCRIPT" "$sweep")
jobid=${jobid%%;*}
echo "submit_sweep.sh: submitted $n of $ntasks tasks ($ranges) as job array $jobid" >&2
echo "$jobid"
