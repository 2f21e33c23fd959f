#!/usr/bin/env bash
# test_install.sh: `meson install` of this build into a scratch DESTDIR, then
# experiments/example (custom_loop.c and its Makefile) built against the
# installed libproxygml through pkg-config, the way a researcher builds their
# own program, and run: it must train and the loss must go down. Checks the
# installed layout on the way: both static libraries, every header of
# include/ under include/proxygml/ (each compiling on its own with nothing
# but pkg-config's flags, without the build's config.h), the .pc files, and
# that libproxygml does not pull in the image and font libraries.
# Needs PROXYGML_BUILD and PROXYGML_SRC (set by tests/meson.build).
set -u
BUILD=${PROXYGML_BUILD:?PROXYGML_BUILD not set}
SRC=${PROXYGML_SRC:?PROXYGML_SRC not set}
PY=/usr/bin/python3
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# prefix, libdir, includedir and whether the objects need a sanitizer runtime
read -r prefix libdir includedir instrumented < <(meson introspect "$BUILD" --buildoptions | "$PY" -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["libdir"], o["includedir"],
      int(bool(o.get("sanitize")) or bool(o.get("fuzz")) or bool(o.get("b_coverage"))))')
if [ -z "${prefix:-}" ]; then echo "FAIL: cannot read the build options of $BUILD"; exit 1; fi
if [ "$instrumented" = 1 ]; then
  echo "skip: a sanitizer, fuzzer or coverage build (its static library needs that runtime to link)"
  exit 77
fi
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
root=$tmp/root
if ! DESTDIR=$root meson install -C "$BUILD" --no-rebuild >"$tmp/install.log" 2>&1; then
  echo "FAIL: meson install"; cat "$tmp/install.log"; exit 1
fi
echo "ok:   meson install into DESTDIR"
lib=$root$(abs "$libdir")
inc=$root$(abs "$includedir")/proxygml

for f in "$lib/libproxygml.a" "$lib/libproxygml_convert.a" "$lib/pkgconfig/proxygml.pc" \
         "$lib/pkgconfig/proxygml-convert.pc"; do
  [ -f "$f" ] || fail "not installed: ${f#"$root"}"
done
for h in "$SRC"/include/*.h; do
  [ -f "$inc/$(basename "$h")" ] || fail "header not installed: $(basename "$h")"
done
[ -e "$inc/config.h" ] && fail "the build's config.h was installed"

# The .pc files name the configured prefix; the DESTDIR copy gets its own.
# (--define-variable=prefix would not do: pkg-config applies it to the
# packages ours require as well, MPI's among them.)
mkdir -p "$tmp/pc"
for pc in "$lib"/pkgconfig/proxygml*.pc; do
  sed "s|^prefix=.*|prefix=$root$prefix|" "$pc" >"$tmp/pc/$(basename "$pc")"
done
export PKG_CONFIG_PATH=$tmp/pc
cflags=$(pkg-config --cflags proxygml) || fail "pkg-config --cflags proxygml"
libs=$(pkg-config --libs proxygml) || fail "pkg-config --libs proxygml"
echo "      cflags: $cflags"
echo "      libs:   $libs"
case " $libs " in *jpeg*|*png*|*freetype*) fail "libproxygml's pkg-config libs name an image or font library" ;; esac

# every public header on its own, as <proxygml/NAME.h>
nh=0
for h in "$inc"/*.h; do
  name=$(basename "$h")
  # shellcheck disable=SC2086
  if ! printf '#include <proxygml/%s>\nint main(void) { return 0; }\n' "$name" |
       "$CC" -std=c11 -fsyntax-only $cflags -x c - 2>"$tmp/hdr.err"; then
    fail "<proxygml/$name> does not compile on its own:"; cat "$tmp/hdr.err"
  fi
  nh=$((nh + 1))
done
echo "ok:   $nh installed headers compile on their own"

# the example, built with its own Makefile against the installed library
cp -r "$SRC/experiments/example" "$tmp/example"
rm -f "$tmp/example/custom_loop"
if ! make -C "$tmp/example" CC="$CC" >"$tmp/make.log" 2>&1; then
  echo "FAIL: building experiments/example"; cat "$tmp/make.log"; exit 1
fi
echo "ok:   experiments/example built through pkg-config"
"$tmp/example/custom_loop" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out"
if [ "$rc" -ne 0 ]; then
  fail "custom_loop exited $rc"; cat "$tmp/err"
elif ! grep -q "^loss decreased" "$tmp/out"; then
  fail "custom_loop did not report a decreasing loss"
else
  echo "ok:   custom_loop trained, the loss went down"
fi

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all install checks passed"
