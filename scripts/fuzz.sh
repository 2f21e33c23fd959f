#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz (clang, -fsanitize=fuzzer,
# address, undefined) and fuzzes them one after the other, one process each
# (libFuzzer's default; -jobs would fork and log elsewhere). Each run starts from tests/fuzz/corpus/<harness> plus what
# earlier runs kept in BUILD/fuzz-corpus/<harness>; at the end the two are
# minimised with -merge=1 back into tests/fuzz/corpus/<harness>, the corpus
# the `fuzz` test suite replays. Findings (crash-*, leak-*, timeout-*, oom-*)
# land in BUILD/fuzz-artifacts/<harness>/; the last line per harness gives
# executions, seconds and findings. Exit status 1 if anything was found.
#   scripts/fuzz.sh                          every harness, 60 s each
#   scripts/fuzz.sh -t 1800 -r 1000000 cfg   30 min or 10^6 executions, whichever comes first
#   scripts/fuzz.sh -t 0 dataset             only build and minimise
# Environment: BUILD (default build-fuzz), CC (default clang).
set -euo pipefail
cd "$(dirname "$0")/.."

time_s=60 runs=-1
while getopts "t:r:h" o; do
  case $o in
    t) time_s=$OPTARG ;;
    r) runs=$OPTARG ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(cfg sweep dataset checkpoint)

build=${BUILD:-build-fuzz}
export CC=${CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found: scripts/setup.sh installs clang" >&2; exit 2; }
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" -Dfuzz=true -Dsanitize=true -Dbuildtype=debugoptimized >/dev/null
else
  meson setup "$build" -Dfuzz=true -Dsanitize=true -Dbuildtype=debugoptimized >/dev/null
fi
meson compile -C "$build" "${harnesses[@]/#/fuzz_}" >/dev/null

src=$PWD/tests/fuzz
# leaks inside libconfig and HDF5 are theirs; ours are findings
export LSAN_OPTIONS=suppressions=$src/lsan.supp:print_suppressions=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
found=0
for h in "${harnesses[@]}"; do
  exe=$PWD/$build/tests/fuzz/fuzz_$h
  work=$PWD/$build/fuzz-corpus/$h art=$PWD/$build/fuzz-artifacts/$h log=$PWD/$build/fuzz-$h.log
  mkdir -p "$work" "$art" "$src/corpus/$h"
  dict=()
  [ -f "$src/$h.dict" ] && dict=(-dict="$src/$h.dict")
  execs=0 secs=0
  if [ "$time_s" -gt 0 ]; then
    start=$(date +%s)
    # new inputs go to the first directory; the committed corpus only seeds
    "$exe" -max_total_time="$time_s" -runs="$runs" -max_len=4096 -timeout=30 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" \
      "$work" "$src/corpus/$h" >"$log" 2>&1 || true
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  fi
  # the minimal set that keeps every feature of both, back into the source tree
  merged=$(mktemp -d)
  "$exe" -merge=1 -max_len=4096 -timeout=30 -rss_limit_mb=2048 -artifact_prefix="$art/" \
    "$merged" "$src/corpus/$h" "$work" >"$log.merge" 2>&1 || { echo "fuzz: $h: merge failed ($log.merge)" >&2; found=1; }
  if [ -n "$(ls -A "$merged")" ]; then
    rm -f "$src/corpus/$h"/*
    cp "$merged"/* "$src/corpus/$h/"
  fi
  rm -rf "$merged"
  n=$(find "$art" -type f | wc -l)
  [ "$n" -eq 0 ] || found=1
  echo "fuzz $h: ${execs:-?} executions in ${secs} s, $n finding(s) in $art," \
       "corpus $(ls "$src/corpus/$h" | wc -l) files ($(cat "$src/corpus/$h"/* | wc -c) bytes)"
done
exit $found
