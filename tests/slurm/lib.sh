# lib.sh: shared by the slurm tests (sourced). A real single-node Slurm
# (scripts/slurm-lab.sh, started here when it is not running and stopped again
# at the end), a scratch directory with its own Fashion-MNIST file, job
# bookkeeping (every job a test submits is cancelled when the test ends), and
# waiting for jobs with a deadline.
#   needs: PROXYGML_BIN, PROXYGML_SRC (set by tests/meson.build)
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3   # Debian's interpreter: the one with h5py
LAB="$SRC/scripts/slurm-lab.sh"
fail=0
jobs_submitted=()
lab_started=0
slurm_used=0

tmp=$(mktemp -d)
cleanup() {
  for j in "${jobs_submitted[@]}"; do scancel "$j" 2>/dev/null; done
  [ $lab_started = 1 ] && bash "$LAB" stop >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT   # a meson timeout: still cancel the jobs and stop the lab

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# a running lab Slurm, or start one (and stop it at the end); skip (77) when impossible
ensure_slurm() {
  slurm_used=1
  if bash "$LAB" status >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" -ne 0 ] || ! command -v slurmctld >/dev/null; then
    echo "SKIP no lab Slurm running, and cannot start one (needs root and scripts/setup.sh)"
    exit 77
  fi
  bash "$LAB" start || { echo "FAIL scripts/slurm-lab.sh start"; exit 1; }
  lab_started=1
}

# the job-completion log of the lab (one line per job end, requeues included)
jobcomp() { scontrol show config | awk '$1 == "JobCompLoc" { print $3 }'; }

# last JobState recorded in jobcomp for a job id (array tasks have their own ids)
job_end_state() {
  local f
  f=$(jobcomp)
  grep "^JobId=$1 " "$f" 2>/dev/null | tail -1 | grep -o 'JobState=[A-Z_]*' | cut -d= -f2
}

# a pending job that this node can never run (e.g. more CPUs than it has): fail now, not at the deadline
queue_stuck() {
  local r
  [ $slurm_used = 1 ] || return 1   # no controller to ask (squeue would wait for one)
  r=$(squeue -h -t PD -o '%i %r' 2>/dev/null | grep -E 'PartitionConfig|PartitionNodeLimit|BadConstraints|ReqNodeNotAvail|NodeDown' | head -1)
  [ -n "$r" ] || return 1
  echo "FAIL job ${r% *} can never start here (reason ${r#* }):"; squeue; scontrol show node | grep -E 'CPUTot|State'
  return 0
}

# wait_jobs JOBID SECONDS: until no task of the job is pending or running
wait_jobs() {
  local id=$1 deadline=$((SECONDS + $2))
  while [ -n "$(squeue -h -j "$id" 2>/dev/null)" ]; do
    if [ $SECONDS -ge $deadline ]; then echo "FAIL job $id still in the queue after $2 s:"; squeue; return 1; fi
    queue_stuck && return 1
    sleep 0.5
  done
  return 0
}

# wait_for PATTERN_GLOB SECONDS: until a file matching the glob exists
wait_for() {
  local glob=$1 deadline=$((SECONDS + $2)) n=0
  while ! compgen -G "$glob" >/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    n=$((n + 1))
    [ $((n % 20)) = 0 ] && queue_stuck && return 1
    sleep 0.05
  done
  return 0
}

# a Fashion-MNIST dataset file of our own
make_data() {
  "$BIN" data fashion-mnist "$tmp/fm.h5" --protocol seen >/dev/null || { echo "FAIL cannot convert Fashion-MNIST"; exit 1; }
}

# check_runs SWEEP_OUT "dir:K:N" ...: every run file complete, with that K and N, trained on 2 ranks
check_runs() {
  local out=$1
  shift
  "$PY" - "$out" "$@" <<'PYEOF'
import sys, h5py
out, want = sys.argv[1], sys.argv[2:]
bad = 0
for w in want:
    d, K, N = w.split(":")
    try:
        a = h5py.File("%s/%s/run.h5" % (out, d), "r").attrs
    except OSError as e:
        print("FAIL %s: %s" % (d, e)); bad = 1; continue
    got = (str(a["status"]), int(a["K"]), int(a["N"]), int(a["ranks"]))
    if got != ("complete", int(K), int(N), 2):
        print("FAIL %s: status/K/N/ranks %s, want complete/%s/%s/2" % (d, got, K, N)); bad = 1
    else:
        print("ok   %s: complete, K=%s N=%s, 2 ranks, %d steps" % (d, K, N, a["steps_done"]))
sys.exit(bad)
PYEOF
}

# same_result A.h5 B.h5: the science of two run files is bitwise equal
# (parameters, proxies, embeddings, subgraphs, loss trace, metrics except the
# wall-clock columns)
same_result() {
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = ["model/parameters", "proxies/values", "proxies/selection_count", "trace/loss",
         "embeddings/test", "embeddings/labels", "subgraph/proxies", "subgraph/similarity"]
names += ["metrics/" + c for c in a["metrics"] if c not in ("train_seconds", "eval_seconds")]
diff = [n for n in names if n not in b or a[n].shape != b[n].shape
        or a[n][()].tobytes() != b[n][()].tobytes()]
for k in ("status", "steps_done", "epochs_done", "K", "N", "ranks"):
    if a.attrs[k] != b.attrs[k]:
        diff.append("attribute %s: %s vs %s" % (k, a.attrs[k], b.attrs[k]))
if diff:
    print("FAIL results differ:", ", ".join(diff)); sys.exit(1)
m = a["metrics"]
print("ok   bitwise equal to the uninterrupted run: %d datasets (%d parameters), MAP@R %s"
      % (len(names), a["model/parameters"].shape[0], np.round(m["map_at_r"][()], 4)))
PYEOF
}
