#!/usr/bin/env bash
# Test coverage of src/ and the error sites that no test reaches
# (docs/contributing.md 7). Builds with gcov instrumentation (-Db_coverage=true,
# unoptimised, so that every line maps to its code), runs the unit, fuzz
# replay, cli, mpi and analysis suites (and slurm when a local Slurm is already
# up: scripts/slurm-lab.sh status), then prints
#   * line and function coverage of src/ (gcovr), and
#   * every error site of src/*.c, a line that calls err_set, CHECK or
#     DIST_CHECK, that no test executed. A site counts as executed when the
#     line ran and so did every call on it: `if (bad) return err_set(...)` runs
#     its condition on every call, its err_set only when the check fails.
# Exit status 1 when a test failed, when an unexecuted site carries no
# "unreachable in tests:" comment, or when a site with that comment was executed.
#   scripts/coverage.sh                  build, test, report
#   scripts/coverage.sh --report         report on the counters of the last run
#   scripts/coverage.sh -v               also list the marked sites and their reasons
# Environment: BUILD (default build-coverage). The ranks of the mpi tests add
# their counters to the same files; gcov merges them.
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=1 verbose=0
for a in "$@"; do
  case $a in
    --report) run_tests=0 ;;
    -v) verbose=1 ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
done
build=${BUILD:-build-coverage}
PY=/usr/bin/python3
command -v gcovr >/dev/null || { echo "coverage: gcovr not found: scripts/setup.sh installs it" >&2; exit 2; }

failed=0
if [ "$run_tests" = 1 ]; then
  opts=(-Db_coverage=true -Dbuildtype=debug -Dnative=true)
  if [ -f "$build/build.ninja" ]; then meson setup --reconfigure "$build" "${opts[@]}" >/dev/null
  else meson setup "$build" "${opts[@]}" >/dev/null; fi
  meson compile -C "$build" >/dev/null
  find "$build" -name '*.gcda' -delete
  suites=(unit fuzz cli mpi analysis)
  if bash scripts/slurm-lab.sh status >/dev/null 2>&1; then suites+=(slurm)
  else echo "coverage: no local Slurm up (scripts/slurm-lab.sh start): the slurm suite is left out"; fi
  # same_start (a comparison with PyTorch) and valgrind (memcheck) run trainer
  # paths that train and resume run already, at many times their cost
  mapfile -t tests < <(meson test -C "$build" --list "${suites[@]/#/--suite=}" 2>/dev/null |
                       sed 's/^[^/]*\/ *//' | grep -vx -e same_start -e valgrind)
  start=$(date +%s)
  meson test -C "$build" --num-processes 2 --print-errorlogs "${tests[@]}" || failed=1
  echo "coverage: ${#tests[@]} tests in $(( $(date +%s) - start )) s"
fi
ls "$build"/libproxygml.a.p/*.gcda >/dev/null 2>&1 || { echo "coverage: no counters in $build: run without --report" >&2; exit 2; }

echo "== coverage of src/ (gcovr)"
gcovr -r . --object-directory "$build" --filter 'src/' --print-summary -o "$build/coverage.txt" | sed 's/^/  /'
echo "  per file: $build/coverage.txt"

# gcov with call counts, one .gcov file per source, for the error sites
g=$build/gcov
rm -rf "$g" && mkdir -p "$g"
# (run where the build runs the compiler: the sources are named relative to it)
(cd "$build" && for d in libproxygml.a.p/src_*.gcda libproxygml_convert.a.p/src_*.gcda; do
   [ -f "$d" ] && gcov -b -c "$d" >/dev/null 2>&1 && mv ./*.gcov gcov/
 done)
echo "== error sites of src/*.c"
"$PY" - "$g" "$verbose" <<'PYEOF' || failed=1
import glob, os, re, sys

gdir, verbose = sys.argv[1], sys.argv[2] == "1"
MARK = "unreachable in tests:"
SITE = re.compile(r"\b(err_set|CHECK|DIST_CHECK)\(")

def code_of(lines):
    """each line without comments and string literals, and whether it is inside/only comment"""
    out, in_comment = [], False
    for line in lines:
        code, i, only_comment = "", 0, True
        while i < len(line):
            if in_comment:
                j = line.find("*/", i)
                if j < 0: i = len(line); continue
                in_comment, i = False, j + 2
            elif line.startswith("/*", i): in_comment, i = True, i + 2
            elif line.startswith("//", i): break
            elif line[i] in "\"'":
                j = i + 1
                while j < len(line) and line[j] != line[i]: j += 2 if line[j] == "\\" else 1
                code += line[i] * 2; i = j + 1; only_comment = False
            else:
                if not line[i].isspace(): only_comment = False
                code += line[i]; i += 1
        out.append((code, only_comment and line.strip() != ""))
    return out

def marker(lines, code, L):
    """the reason of the marker on line L or in the comment just above L's statement"""
    if MARK in lines[L]: return lines[L].split(MARK, 1)[1]
    s = L
    while s > 0 and code[s - 1][0].strip() and not code[s - 1][0].rstrip().endswith((";", "{", "}")) \
            and not code[s - 1][0].lstrip().startswith("#"):
        s -= 1
    for k in range(s, L + 1):
        if MARK in lines[k]: return lines[k].split(MARK, 1)[1]
    k = s - 1
    while k >= 0 and code[k][1]:
        if MARK in lines[k]: return lines[k].split(MARK, 1)[1]
        k -= 1
    return None

def reason(text):
    return text.split("*/")[0].strip()

# a marker in front of a macro's #define in include/ marks every use of the macro
macro_mark = {}
for h in glob.glob("include/*.h"):
    lines = open(h).read().split("\n")
    code = code_of(lines)
    for L, line in enumerate(lines):
        m = re.match(r"\s*#\s*define\s+(\w+)\(", line)
        if m and (r := marker(lines, code, L)): macro_mark[m.group(1)] = reason(r)

def gcov_lines(path):
    """line number -> (count, calls never executed) from a gcov -b -c file"""
    info, cur = {}, None
    for t in open(path, errors="replace"):
        m = re.match(r"\s*([-#=]+|\d+)\*?:\s*(\d+):", t)
        if m:
            cur = int(m.group(2))
            c = m.group(1)
            info[cur] = [int(c) if c.isdigit() else (None if c == "-" else 0), 0]
        elif cur and t.startswith("call") and "never executed" in t:
            info[cur][1] += 1
    return info

total = covered = 0
marked, bad, stale = [], [], []
for src in sorted(glob.glob("src/*.c")):
    gc = os.path.join(gdir, os.path.basename(src) + ".gcov")
    info = gcov_lines(gc) if os.path.exists(gc) else {}
    lines = open(src).read().split("\n")
    code = code_of(lines)
    for L, (c, _) in enumerate(code):
        m = SITE.search(c)
        if not m or re.match(r"\s*int\s+err_set\(", c): continue   # the definition
        total += 1
        count, never = info.get(L + 1, [0, 0])
        ran = bool(count) and never == 0
        r = marker(lines, code, L)
        r = reason(r) if r is not None else macro_mark.get(m.group(1))
        where = "%s:%d" % (src, L + 1)
        if ran and r is not None: stale.append((where, r))
        elif ran: covered += 1
        elif r is not None: marked.append((where, r))
        else: bad.append((where, lines[L].strip()))

if verbose:
    for where, r in marked: print("  marked   %-28s %s" % (where, r))
for where, text in bad: print("  NOT RUN  %-28s %s" % (where, text[:110]))
for where, r in stale: print("  RUN, but marked unreachable: %s (%s)" % (where, r))
print("  %d error sites: %d executed by a test, %d marked unreachable, %d neither"
      % (total, covered, len(marked), len(bad)))
sys.exit(1 if bad or stale else 0)
PYEOF
exit $failed
