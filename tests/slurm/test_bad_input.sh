#!/usr/bin/env bash
# Bad input around sweeps and Slurm jobs: one clear line, exit 2, no job
# submitted, and nothing a user had is overwritten.
#  - sweep files: an unknown key, an empty grid, a duplicate point, a missing
#    config, a missing dataset, a batch beyond the dataset (proxygml sweep
#    plan, and submit_sweep.sh which submits nothing);
#  - resuming into the run directory of another experiment (train --resume
#    auto directly, and as a Slurm job: FAILED with exit 2, not requeued; the
#    sweep lists it as foreign and submit_sweep.sh leaves it alone);
#  - a run directory that cannot be written (a path below a regular file:
#    root ignores permissions), for train, a sweep, and a Slurm job;
#  - a task that fails in its job (exit 2): sweep status says failed, and why.
. "$(dirname "$0")/lib.sh"
ensure_slurm
make_data
cd "$tmp"
CFG="$SRC/experiments/fmnist_mlp.cfg"
SMALL=(--set data=fm.h5 --set epochs=1 --set max_steps_per_epoch=5 --set eval_epochs=1 --set kmeans_restarts=1)

# expect_fail EXPECTED_RC PATTERN LABEL CMD...: exit code and a one-line message matching PATTERN
expect_fail() {
  local want=$1 pat=$2 label=$3
  shift 3
  "$@" >out.txt 2>err.txt
  local rc=$?
  if [ $rc -eq "$want" ] && grep -qE "$pat" err.txt && [ "$(wc -l <err.txt)" -le 2 ]; then ok "$label: exit $rc: $(grep -E "$pat" err.txt | head -1)"
  else bad "$label: exit $rc (want $want), stderr:"; cat err.txt; fi
}

# --- sweep files ---------------------------------------------------------------------
mkdir -p keep && echo "an earlier manifest" >keep/manifest.tsv
sweep_file() {   # sweep_file NAME BODY: a sweep whose out is the directory `keep`
  printf 'config = "%s";\nout = "keep";\n%s\n' "$CFG" "$2" >"$1.sweep"
}
sweep_file unknown 'grid = { k = [4, 8]; };
sets = { epochs = 1; };'
sweep_file unknown_cfg 'grid = { k = [4, 8]; kk = [1]; };'
sweep_file empty 'grid = { };'
sweep_file empty_key 'grid = { k = [ ]; };'
sweep_file duplicate 'grid = { k = [4, 8]; seed = [0, 1, 0]; };'
sweep_file duplicate_cfg 'grid = { scale = (1, 1.0); };'
printf 'config = "missing.cfg";\nout = "keep";\ngrid = { k = [4]; };\n' >missing.sweep
sweep_file nodata 'grid = { k = [4, 8]; };
set = { data = "nope.h5"; };'
sweep_file big_batch 'grid = { k = [4, 8]; };
set = { data = "fm.h5"; batch = 70000; };'
nq=$(squeue -h | wc -l)
expect_fail 2 "unknown.sweep:4: unknown sweep key 'sets'" "unknown top-level key" "$BIN" sweep plan unknown.sweep
expect_fail 2 "unknown config key 'kk' \(did you mean 'k'\?\)" "unknown config key in grid" "$BIN" sweep plan unknown_cfg.sweep
expect_fail 2 "the grid is empty" "empty grid" "$BIN" sweep plan empty.sweep
expect_fail 2 "grid key 'k' has no values" "grid key without values" "$BIN" sweep plan empty_key.sweep
expect_fail 2 "the value 0 is listed twice \(a duplicate grid point\)" "duplicate value" "$BIN" sweep plan duplicate.sweep
expect_fail 2 "give the same configuration \(a duplicate grid point\)" "duplicate point" "$BIN" sweep plan duplicate_cfg.sweep
expect_fail 2 "cannot open config file '.*missing.cfg': No such file" "missing config" "$BIN" sweep plan missing.sweep
# what train checks before it reads a row, checked for every task before anything is submitted
expect_fail 2 "nodata.sweep: task 0 \(k=4\): nope.h5: no such file" "missing dataset" "$BIN" sweep plan nodata.sweep
expect_fail 2 "task 0 \(k=4\): config key 'batch': 70000 is larger than the training split \(60000 rows\)" \
  "batch larger than the dataset's training split" "$BIN" sweep plan big_batch.sweep
sweep_file two 'grid = { k = [4, 8]; };'
expect_fail 2 "task 7 does not exist: two.sweep has 2 tasks \(0-1\)" "sweep args of a task out of range" \
  "$BIN" sweep args two.sweep 7
for f in unknown empty duplicate missing nodata; do
  "$SRC/slurm/submit_sweep.sh" $f.sweep >out.txt 2>err.txt
  rc=$?
  [ $rc -eq 2 ] && [ ! -s out.txt ] || bad "submit_sweep.sh $f.sweep: exit $rc, stdout '$(cat out.txt)'"
done
[ "$(squeue -h | wc -l)" = "$nq" ] && ok "submit_sweep.sh: exit 2 for each bad sweep file, no job submitted" || bad "a job was submitted"
[ "$(cat keep/manifest.tsv)" = "an earlier manifest" ] && ok "the existing manifest.tsv is untouched" || bad "manifest.tsv overwritten"

# --- another experiment's run directory -------------------------------------------------
"$BIN" train --config "$CFG" "${SMALL[@]}" --set N=2 --out other >/dev/null 2>&1 || bad "cannot make the other run"
md5sum other/run.h5 >other.md5
expect_fail 2 "belongs to another experiment .*refusing to resume" "train --resume auto into another experiment's directory" \
  "$BIN" train --config "$CFG" "${SMALL[@]}" --set N=4 --out other --resume auto
expect_fail 2 "already exists \(status complete\): pass --force" "train without --resume into an existing run" \
  "$BIN" train --config "$CFG" "${SMALL[@]}" --set N=4 --out other
jid=$(sbatch --parsable "$SRC/slurm/train.sbatch" --config "$CFG" "${SMALL[@]}" --set N=4 --out other)
jobs_submitted+=("$jid")
wait_jobs "$jid" 300 || exit 1
st=$(job_end_state "$jid")
ec=$(scontrol show job "$jid" | grep -o ' ExitCode=[0-9:]*' | cut -d= -f2)
if [ "$st" = FAILED ] && [ "$ec" = 2:0 ] && grep -q "another experiment" "other/slurm-$jid.out" && grep -q "not requeued" "other/slurm-$jid.out" &&
   scontrol show job "$jid" | grep -q "Restarts=0"; then
  ok "as a Slurm job: FAILED, ExitCode $ec, not requeued, the log says why"
else bad "job into another experiment's directory: $st $ec"; cat "other/slurm-$jid.out"; fi
# a sweep whose task directory holds that run
printf 'config = "%s";\nout = ".";\ngrid = { N = [4]; };\nset = { data = "fm.h5"; epochs = 1; max_steps_per_epoch = 5; eval_epochs = [1]; kmeans_restarts = 1; };\n' \
  "$CFG" >foreign.sweep
mv other N=4
"$BIN" sweep status foreign.sweep | grep -q "^0 .*foreign" && ok "sweep status: the task shows as foreign" || bad "sweep status: not foreign"
out=$("$SRC/slurm/submit_sweep.sh" foreign.sweep 2>err.txt)
[ -z "$out" ] && grep -q "another configuration: not submitted" err.txt && ok "submit_sweep.sh leaves the foreign run alone" ||
  { bad "submit_sweep.sh with a foreign run: '$out'"; cat err.txt; jobs_submitted+=("$out"); }
mv N=4 other
md5sum -c --quiet other.md5 && ok "the other experiment's run.h5 kept its bytes" || bad "the other run.h5 changed"

# --- a run directory that cannot be written -----------------------------------------------
echo "a file, not a directory" >plain
expect_fail 2 "cannot create directory 'plain(/run)?'|not writable" "train --out below a regular file" \
  "$BIN" train --config "$CFG" "${SMALL[@]}" --out plain/run --resume auto
printf 'config = "%s";\nout = "plain/sweep";\ngrid = { k = [4]; };\nset = { data = "fm.h5"; };\n' "$CFG" >plain.sweep
expect_fail 2 "cannot create directory 'plain': a file is in the way" "sweep with out below a regular file" "$BIN" sweep plan plain.sweep
jid=$(sbatch --parsable --output="$tmp/plain-%j.out" "$SRC/slurm/train.sbatch" --config "$CFG" "${SMALL[@]}" --out plain/run)
jobs_submitted+=("$jid")
wait_jobs "$jid" 300 || exit 1
st=$(job_end_state "$jid")
if [ "$st" = FAILED ] && grep -q "cannot write the run directory 'plain/run'" "plain-$jid.out"; then
  ok "as a Slurm job: FAILED: $(cat "plain-$jid.out")"
else bad "job with an unwritable run directory: $st"; cat "plain-$jid.out"; fi
[ "$(cat plain)" = "a file, not a directory" ] && ok "the regular file is untouched" || bad "the regular file changed"

# --- tasks that fail where sweep plan cannot see it (the rank count is the job's) ---------
printf 'config = "%s";\nout = "odd";\ngrid = { k = [4]; };\nset = { data = "fm.h5"; batch = 63; epochs = 1; };\n' "$CFG" >odd.sweep
jid=$("$SRC/slurm/submit_sweep.sh" odd.sweep 2>err.txt)
jobs_submitted+=("$jid")
wait_jobs "$jid" 300 || exit 1
"$BIN" sweep status odd.sweep >status.txt
if grep -qE "^0 +failed +odd/k=4  \(proxygml train: .*config key 'batch': the global batch 63 does not divide over 2 ranks\)" status.txt &&
   tail -1 status.txt | grep -q "1 task: 1 failed"; then ok "sweep status: a task that failed without a run file: $(head -2 status.txt | tail -1)"
else bad "sweep status of a failed task:"; cat status.txt; fi
exit $fail
