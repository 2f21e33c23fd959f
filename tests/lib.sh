# lib.sh: the preamble of the run tests, sourced: the binary and the sources
# from meson's environment, Debian's Python, mpirun as root on an
# oversubscribed node, a temporary directory removed at exit; with the
# argument `fmnist`, also the Fashion-MNIST seen split as $tmp/fm.h5; a
# failure counter with fail and expect_exit.
#   . "${PROXYGML_SRC:?}/tests/lib.sh" fmnist
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${1:-}" = fmnist ]; then
  "$BIN" data fashion-mnist "$tmp/fm.h5" --protocol seen >/dev/null || { echo "FAIL convert"; exit 1; }
fi
# failures are counted, the script exits with them; expect_exit CODE CMD...
# runs CMD, checks its exit code, leaves its output in $tmp/out and $tmp/err
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_exit() {
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  [ "$got" = "$want" ] || { fail "'$*' exited $got, expected $want"; cat "$tmp/err"; }
}
