#!/usr/bin/env bash
# A 2 x 2 (k x N) sweep as a real Slurm job array, 2 MPI ranks per task
# (srun --mpi=pmix): every run file complete with its K and N, every array
# task COMPLETED in the job-completion log; then resubmitting finishes nothing
# new (submit_sweep.sh submits nothing, and the array script itself skips
# complete tasks without touching their run files); plan warns about the
# K <= N task, and raising epochs makes the complete runs extendable.
. "$(dirname "$0")/lib.sh"
ensure_slurm
make_data
cd "$tmp"

cat >kn.sweep <<EOF
config = "$SRC/experiments/fmnist_mlp.cfg";
out = "sweep";
grid = { k = [4, 8]; N = [2, 4]; };
set = { data = "fm.h5"; epochs = 2; max_steps_per_epoch = 20; eval_epochs = [2]; kmeans_restarts = 1; };
EOF

t0=$SECONDS
jid=$("$SRC/slurm/submit_sweep.sh" kn.sweep 2>submit.err)
rc=$?
jobs_submitted+=("$jid")
if [ $rc -ne 0 ] || [ -z "$jid" ]; then bad "submit_sweep.sh exit $rc"; cat submit.err; exit 1; fi
grep -q "submitted 4 of 4 tasks (0-3)" submit.err && ok "submitted: $(tail -1 submit.err)" || { bad "submit output"; cat submit.err; }
# k = 4, N = 4: every subgraph holds only the sample's own class; said once, before anything runs
[ "$(grep -c "warning: task 1 (k=4_N=4): K = 4 <= N = 4: .*learns nothing" submit.err)" = 1 ] &&
  ok "plan warns about K <= N: $(grep warning submit.err)" || { bad "no K <= N warning"; cat submit.err; }
# task order: grid keys in file order, the last varying fastest
want=$(printf 'task\trun_dir\tset\n'
       for kv in "4 2" "4 4" "8 2" "8 4"; do
         set -- $kv
         printf '%d\tsweep/k=%s_N=%s\t--set k=%s --set N=%s --set data=fm.h5 --set epochs=2 --set max_steps_per_epoch=20 --set eval_epochs=2 --set kmeans_restarts=1\n' \
           $(( (${1} / 8) * 2 + ${2} / 4 )) "$1" "$2" "$1" "$2"
       done)
[ "$(cat sweep/manifest.tsv)" = "$want" ] && ok "manifest.tsv: 4 tasks in grid order, last key fastest" ||
  { bad "manifest.tsv:"; cat sweep/manifest.tsv; }
wait_jobs "$jid" 600 || exit 1
ok "array $jid finished in $((SECONDS - t0)) s"

check_runs sweep k=4_N=2:4:2 k=4_N=4:4:4 k=8_N=2:8:2 k=8_N=4:8:4 || fail=1
for t in 0 1 2 3; do
  id=$(scontrol show job "${jid}_$t" 2>/dev/null | grep -o '^JobId=[0-9]*' | cut -d= -f2)
  st=$(job_end_state "$id")
  [ "$st" = COMPLETED ] || bad "array task $t (job $id) ended '$st'"
done
[ $fail = 0 ] && ok "jobcomp: the 4 array tasks COMPLETED"
"$BIN" sweep status kn.sweep >status.txt
tail -1 status.txt | grep -q "4 tasks: 4 complete" && ok "sweep status: $(tail -1 status.txt)" || { bad "sweep status"; cat status.txt; }
grep -l "task [0-3] complete" sweep/*/slurm-"${jid}"_*.out | wc -l | grep -qx 4 && ok "each task logged into its run directory" ||
  bad "task logs in the run directories"

# --- resubmission: nothing new ---------------------------------------------------
md5sum sweep/*/run.h5 >before.md5
jid2=$("$SRC/slurm/submit_sweep.sh" kn.sweep 2>resubmit.err)
rc=$?
if [ $rc -eq 0 ] && [ -z "$jid2" ] && grep -q "nothing to submit" resubmit.err; then ok "resubmit: $(tail -1 resubmit.err)"
else bad "resubmit: exit $rc, job '$jid2'"; cat resubmit.err; jobs_submitted+=("$jid2"); fi

# the array script on its own skips complete tasks too (an array submitted by hand)
jid3=$(sbatch --parsable --array=0-3 --output="$tmp/skip-%A_%a.out" "$SRC/slurm/sweep.sbatch" kn.sweep)
jobs_submitted+=("$jid3")
wait_jobs "$jid3" 300 || exit 1
n=$(cat sweep/*/slurm-"${jid3}"_*.out 2>/dev/null | grep -c "is complete: task [0-3] skipped")
[ "$n" = 4 ] && ok "sweep.sbatch skipped the 4 complete tasks" || { bad "sweep.sbatch skipped $n of 4"; cat sweep/*/slurm-"${jid3}"_*.out; }
md5sum -c --quiet before.md5 && ok "run files unchanged by the resubmissions" || bad "a run file changed"

# raising epochs: the complete runs become extendable (a resubmission would continue them)
sed 's/epochs = 2;/epochs = 3;/' kn.sweep >kn3.sweep
"$BIN" sweep status kn3.sweep >status3.txt
tail -1 status3.txt | grep -q "4 tasks: 4 extendable" && ok "epochs raised: $(tail -1 status3.txt)" || { bad "sweep status after raising epochs"; cat status3.txt; }
exit $fail
