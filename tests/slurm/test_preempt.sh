#!/usr/bin/env bash
# Preemption on a real Slurm, both ways, each ending with the SAME result as an
# uninterrupted run (parameters, proxies, embeddings, loss trace and metrics
# bitwise equal):
#  1. a running sweep array task gets SIGUSR1 in its batch shell (what
#     --signal=B:USR1@N does before the time limit; here scancel --batch):
#     the ranks checkpoint, exit 75, the task requeues itself and resumes;
#  2. a train.sbatch job is requeued from outside (scontrol requeue: SIGTERM,
#     then Slurm requeues it), and resumes.
# The reference is the same task run by train.sbatch without interruption.
. "$(dirname "$0")/lib.sh"
ensure_slurm
make_data
cd "$tmp"

# 3 epochs x 50 steps, a checkpoint every 10 steps: the signal lands mid-run
cat >p.sweep <<EOF
config = "$SRC/experiments/fmnist_mlp.cfg";
out = "sweep";
grid = { k = [10, 6]; };
set = { data = "fm.h5"; epochs = 3; max_steps_per_epoch = 50; checkpoint_every = 10; eval_epochs = [1, 3];
        kmeans_restarts = 1; };
EOF
TOTAL=150
t0=$SECONDS
jid=$("$SRC/slurm/submit_sweep.sh" p.sweep 2>submit.err) || { bad "submit_sweep.sh"; cat submit.err; exit 1; }
jobs_submitted+=("$jid")
echo "     $(tail -1 submit.err)"
mapfile -t task0 < <("$BIN" sweep args p.sweep 0)

# --- 1. SIGUSR1 to the batch shell of array task 0 --------------------------------
if ! wait_for "sweep/k=10/checkpoints/step-*.h5" 300; then bad "task 0 wrote no checkpoint"; squeue; exit 1; fi
# Slurm 22.05 answers "Job can not be altered now, try again later" here even
# though the signal was delivered, and scancel would retry (and deliver it
# again, also to the requeued task) for up to 1.5 min: one attempt is enough
timeout 4 scancel --batch --signal=USR1 "${jid}_0"
ok "SIGUSR1 sent to task ${jid}_0 after its first checkpoint ($((SECONDS - t0)) s)"
# the uninterrupted reference: task 0's own arguments, another directory
ref_args=()
for ((i = 0; i < ${#task0[@]}; i++)); do
  if [ "${task0[i]}" = --out ]; then ref_args+=(--out ref); i=$((i + 1)); else ref_args+=("${task0[i]}"); fi
done
rid=$(sbatch --parsable "$SRC/slurm/train.sbatch" "${ref_args[@]}")
jobs_submitted+=("$rid")
# the run file says preempted while the task waits to be requeued
for _ in $(seq 300); do
  "$BIN" sweep status p.sweep >status.txt
  grep -q "^0 .*preempted" status.txt && break
  sleep 0.1
done
grep -q "^0 .*preempted" status.txt && ok "sweep status after the signal: $(sed -n 2p status.txt | tr -s ' ')" ||
  { bad "task 0 never showed preempted"; cat status.txt; }

# --- 2. scontrol requeue of a running train.sbatch job ----------------------------
req_args=("${ref_args[@]/#ref/req}")
qid=$(sbatch --parsable "$SRC/slurm/train.sbatch" "${req_args[@]}")
jobs_submitted+=("$qid")
if wait_for "req/checkpoints/step-*.h5" 600; then
  scontrol requeue "$qid" && ok "scontrol requeue $qid after its first checkpoint"
else bad "job $qid wrote no checkpoint"; fi

for j in "$jid" "$rid" "$qid"; do wait_jobs "$j" 800 || exit 1; done
ok "all jobs done after $((SECONDS - t0)) s"

# --- what happened -------------------------------------------------------------
log0=$(ls sweep/k=10/slurm-"${jid}"_0.out)
stop_line=$(grep -o "stopped by a signal at epoch [0-9]*, step [0-9]*" "$log0" | head -1)
step=${stop_line##* }
if grep -q "USR1 received" "$log0" && [ -n "$stop_line" ] && [ "$step" -lt $TOTAL ] &&
   grep -q "requeueing job" "$log0" && grep -q "resuming from .*step-0*$step.h5" "$log0" && grep -q "task 0 complete" "$log0"; then
  ok "task 0: $stop_line, requeued, resumed from step $step, complete"
else bad "task 0 log:"; cat "$log0"; fi
id0=$(scontrol show job "${jid}_0" | grep -o '^JobId=[0-9]*' | cut -d= -f2)
restarts=$(scontrol show job "$id0" | grep -o 'Restarts=[0-9]*')
states=$(grep "^JobId=$id0 " "$(jobcomp)" | grep -o 'JobState=[A-Z]*' | cut -d= -f2 | tr '\n' ' ')
[ "${restarts#Restarts=}" -ge 1 ] && [[ $states =~ ^(PENDING )+COMPLETED\ $ ]] && ok "task 0 (job $id0): $restarts, jobcomp: $states" ||
  bad "task 0 (job $id0): $restarts, jobcomp states: $states"
check_runs sweep k=10:10:4 k=6:6:4 || fail=1
same_result sweep/k=10/run.h5 ref/run.h5 || fail=1

logq=req/slurm-$qid.out
stop_q=$(grep -o "stopped by a signal at epoch [0-9]*, step [0-9]*" "$logq" | head -1)
if [ -n "$stop_q" ] && [ "${stop_q##* }" -lt $TOTAL ] && grep -q "restart 1" "$logq" && grep -q "^== complete" "$logq"; then
  ok "requeued job $qid: $stop_q, restarted, $(scontrol show job "$qid" | grep -o 'Restarts=[0-9]*'), complete"
else bad "requeued job log:"; cat "$logq"; fi
same_result req/run.h5 ref/run.h5 || fail=1
[ "$(job_end_state "$rid")" = COMPLETED ] && ! grep -q "received" "ref/slurm-$rid.out" && ok "reference job $rid: uninterrupted, COMPLETED" ||
  bad "reference job $rid: $(job_end_state "$rid")"
exit $fail
