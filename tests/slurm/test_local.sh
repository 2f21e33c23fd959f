#!/usr/bin/env bash
# slurm/run_local_sweep.sh: the 2 x 2 (k x N) grid of test_sweep without
# Slurm (mpirun, 2 ranks per task, one task after the other): every run file
# complete with its K and N; a second call skips every task and changes no
# file. Then an interrupted local sweep: SIGUSR1 to the script stops the
# current task at a checkpoint (exit 75, run preempted, next task not
# started), and calling it again resumes and finishes both tasks.
. "$(dirname "$0")/lib.sh"
make_data
cd "$tmp"
RUN="$SRC/slurm/run_local_sweep.sh"

cat >kn.sweep <<EOF
config = "$SRC/experiments/fmnist_mlp.cfg";
out = "local";
grid = { k = [4, 8]; N = [2, 4]; };
set = { data = "fm.h5"; epochs = 2; max_steps_per_epoch = 20; eval_epochs = [2]; kmeans_restarts = 1; };
EOF
t0=$SECONDS
"$RUN" kn.sweep -np 2 >run1.log 2>&1
rc=$?
[ $rc -eq 0 ] && ok "run_local_sweep.sh -np 2: 4 tasks in $((SECONDS - t0)) s" || { bad "run_local_sweep.sh exit $rc"; tail -20 run1.log; }
check_runs local k=4_N=2:4:2 k=4_N=4:4:4 k=8_N=2:8:2 k=8_N=4:8:4 || fail=1
md5sum local/*/run.h5 >before.md5
"$RUN" kn.sweep -np 2 >run2.log 2>&1
rc=$?
n=$(grep -c "is complete, skipped" run2.log)
[ $rc -eq 0 ] && [ "$n" = 4 ] && ok "second call: 4 tasks skipped" || { bad "second call: exit $rc, $n skipped"; cat run2.log; }
md5sum -c --quiet before.md5 && ok "run files unchanged" || bad "a run file changed"

# --- interrupted and resumed -------------------------------------------------------
cat >long.sweep <<EOF
config = "$SRC/experiments/fmnist_mlp.cfg";
out = "long";
grid = { k = [10, 6]; };
set = { data = "fm.h5"; epochs = 3; max_steps_per_epoch = 50; checkpoint_every = 10; eval_epochs = [3]; kmeans_restarts = 1; };
EOF
"$RUN" long.sweep -np 2 >long1.log 2>&1 &
pid=$!
if wait_for "long/k=10/checkpoints/step-*.h5" 300; then kill -USR1 $pid; else bad "no checkpoint of task 0"; fi
rc=0
wait $pid || rc=$?
"$BIN" sweep status long.sweep >status1.txt
if [ $rc -eq 75 ] && grep -q "^0 .*preempted" status1.txt && grep -q "^1 .*missing" status1.txt; then
  ok "SIGUSR1: exit 75, task 0 preempted, task 1 not started"
else bad "interrupted: exit $rc"; cat status1.txt; tail -5 long1.log; fi
"$RUN" long.sweep -np 2 >long2.log 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "resuming from long/k=10/checkpoints/" long2.log; then
  ok "called again: task 0 $(grep -o 'resuming from [^:]*: epoch [0-9]*, step [0-9]*' long2.log | head -1), both complete"
else bad "resume: exit $rc"; tail -20 long2.log; fi
check_runs long k=10:10:4 k=6:6:4 || fail=1
exit $fail
