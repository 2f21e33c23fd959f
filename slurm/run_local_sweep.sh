#!/usr/bin/env bash
# run_local_sweep.sh: the same tasks as submit_sweep.sh, without Slurm: one
# after the other on this machine, each under mpirun with P ranks, resuming
# from its checkpoints; complete runs are skipped, so running it again after
# an interruption finishes what is missing.
#
#   slurm/run_local_sweep.sh SWEEP_FILE [-np P]      (default P = 1)
#
# Run it from the directory the sweep's paths are relative to (the repository
# root for experiments/*.sweep). Ctrl-C (or SIGTERM/SIGUSR1) stops the current
# task at a checkpoint (its run is marked preempted) and ends the loop.
# Each task's output also goes to RUN_DIR/local.out.
# Environment: PROXYGML_BIN (default build/proxygml of this repository),
# PROXYGML_LAUNCHER (default: mpirun --bind-to none -np P).
# Exit status: 0 every task complete, 1 some task failed or is unfinished,
# 2 bad input (the sweep file), 75 interrupted.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$here")
BIN=${PROXYGML_BIN:-$ROOT/build/proxygml}

die() { echo "run_local_sweep.sh: $*" >&2; exit 2; }
usage="usage: slurm/run_local_sweep.sh SWEEP_FILE [-np P]"
[ $# -ge 1 ] || die "$usage"
sweep=$1
shift
np=1
while [ $# -gt 0 ]; do
  case $1 in
    -np | -n) [ $# -ge 2 ] || die "$usage"; np=$2; shift 2 ;;
    *) die "unknown argument '$1' ($usage)" ;;
  esac
done
[[ $np =~ ^[1-9][0-9]*$ ]] || die "-np takes a positive number of ranks, got '$np'"
[ -x "$BIN" ] || die "$BIN is not an executable: build first (meson compile -C build) or set PROXYGML_BIN"

# mpirun refuses root without these; --bind-to none lets a rank use its threads
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
LAUNCHER=${PROXYGML_LAUNCHER:-mpirun --bind-to none -np $np}
# threads x ranks = cores (more only makes them fight over the cores)
ncpu=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # plain nproc honours OMP_NUM_THREADS
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ncpu / np > 0 ? ncpu / np : 1 ))}

"$BIN" sweep plan "$sweep" || exit 2
ntasks=$("$BIN" sweep status "$sweep" | awk '$1 ~ /^[0-9]+$/ && $2 !~ /^tasks?:$/' | wc -l)

# the current task runs in the background so that a signal reaches this shell's
# trap at once; the trap asks the ranks to checkpoint and stop (mpirun forwards
# SIGUSR1 to every rank)
pid=
stop=
on_signal() {
  stop=$1
  if [ -n "$pid" ]; then kill -USR1 "$pid" 2>/dev/null || true; fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal USR1' USR1

done_n=0 skipped=0 failed=0
for ((task = 0; task < ntasks; task++)); do
  status=$("$BIN" sweep status "$sweep" | awk -v t="$task" '$1 == t && $2 !~ /^tasks?:$/ { print $2 }')
  mapfile -t args < <("$BIN" sweep args "$sweep" "$task")
  run_dir=
  for ((i = 0; i + 1 < ${#args[@]}; i++)); do [ "${args[i]}" = --out ] && run_dir=${args[i + 1]}; done
  case $status in
    complete) echo "== task $task: $run_dir is complete, skipped"; skipped=$((skipped + 1)); continue ;;
    foreign) echo "== task $task: $run_dir holds a run of another configuration, skipped (move it away to rerun)"
             failed=$((failed + 1)); continue ;;
  esac
  echo "== task $task/$ntasks: $run_dir ($status)"
  if ! mkdir -p "$run_dir" 2>/dev/null; then
    echo "== task $task: cannot create the run directory '$run_dir'"; failed=$((failed + 1)); continue
  fi
  # the start and the end of each attempt go into local.out too: sweep status reads the verdict there
  echo "== task $task/$ntasks: $run_dir ($status) at $(date -u +%FT%TZ)" >>"$run_dir/local.out"
  # shellcheck disable=SC2086  # LAUNCHER is a command with its options
  $LAUNCHER "$BIN" train "${args[@]}" --resume auto > >(tee -a "$run_dir/local.out") 2>&1 &
  pid=$!
  if [ -n "$stop" ]; then kill -USR1 "$pid" 2>/dev/null || true; fi
  rc=0
  wait "$pid" || rc=$?
  while [ "$rc" -gt 128 ] && kill -0 "$pid" 2>/dev/null; do rc=0; wait "$pid" || rc=$?; done
  pid=
  case $rc in
    0) done_n=$((done_n + 1)); echo "== task $task complete" >>"$run_dir/local.out" ;;
    75) echo "== task $task stopped at a checkpoint: run this script again to resume" | tee -a "$run_dir/local.out" ;;
    *) echo "== task $task failed (exit $rc)" | tee -a "$run_dir/local.out"; failed=$((failed + 1)) ;;
  esac
  if [ -n "$stop" ]; then echo "== interrupted ($stop)"; exit 75; fi
done
echo "== $ntasks tasks: $done_n trained, $skipped already complete, $failed failed or skipped"
"$BIN" sweep status "$sweep" | tail -1
[ "$failed" -eq 0 ]
