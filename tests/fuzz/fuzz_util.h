/* fuzz_util.h: what the libFuzzer harnesses of tests/fuzz share: a reader of
 * the fuzz bytes as a recipe, a private working directory, files, the
 * harness's own checks, and a count of HDF5 handles the project left open.
 *
 * Each harness defines LLVMFuzzerTestOneInput. Built with clang and
 * -fsanitize=fuzzer it is a libFuzzer target (scripts/fuzz.sh); built with
 * replay.c by any compiler it replays a corpus (the `fuzz` test suite).
 */
#ifndef PROXYGML_FUZZ_UTIL_H
#define PROXYGML_FUZZ_UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a property the project promises does not hold: print and abort, which
 * libFuzzer reports as a crash and the replay as a failed test */
#define FUZZ_CHECK(cond, ...) \
  do { if (!(cond)) fuzz_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The fuzz bytes as a recipe: every read takes the next bytes, and reads
 * past the end give 0, so any input is a complete recipe. */
typedef struct {
  const uint8_t *p;
  size_t n, i;
} FuzzIn;

uint8_t fuzz_u8(FuzzIn *in);
uint32_t fuzz_u32(FuzzIn *in);
int fuzz_below(FuzzIn *in, int n);                        /* 0 .. n-1 */
int64_t fuzz_pick(FuzzIn *in, const int64_t *table, int n);   /* an entry of table */
int fuzz_done(const FuzzIn *in);                          /* 1 when every byte is used */

/* fuzz_enter makes the harness's directory the working directory (made on
 * the first call under /dev/shm when it is writable, else $TMPDIR or /tmp,
 * and removed at exit): every file a harness writes, and every relative
 * path an input names, stays in it. fuzz_leave returns to the directory
 * the input came from, before libFuzzer or the replay opens the next one
 * by a path that may be relative. */
void fuzz_enter(void);
void fuzz_leave(void);
void fuzz_write(const char *path, const void *data, size_t n);   /* aborts on failure */
/* 1 if every libconfig `@include "NAME"` in text names something in the
 * working directory (letters, digits, _ - and dots, no ..). libconfig
 * resolves names against the include directory but follows .., and reads
 * anything, devices included: harnesses reject inputs that fail this. */
int fuzz_include_ok(const char *text);
void fuzz_rm_tree(const char *path);                              /* rm -rf, quiet */

/* The project's readers must close every HDF5 handle they open, on every
 * error path: fuzz_h5_mark counts the open identifiers (files, groups,
 * datasets, attributes, datatypes, dataspaces) before a call, fuzz_h5_check
 * aborts if there are more after it. */
void fuzz_h5_mark(void);
void fuzz_h5_check(const char *call);

/* ---- HDF5 edits driven by the recipe ---------------------------------------
 * Types: integers of every size, sign and byte order, IEEE floats and half
 * precision, fixed and variable strings, bitfield, opaque, enum, compound,
 * array, variable-length sequence and object reference. Shapes: scalar,
 * null, or rank 1..5 with the first dimension from `rows` and the others
 * from `dims`. Shapes beyond 4096 elements are chunked (at most 2^13
 * elements a chunk) and left unwritten, so a declared 2^62 x 2^62 costs
 * nothing on file; smaller ones are filled from the recipe. */
#define FUZZ_H5_NTYPES 24
hid_t fuzz_h5_type(int kind);   /* 0 .. FUZZ_H5_NTYPES-1: a new type id, or -1 */
/* replaces the link `name` of loc (creating missing parent groups) by a new
 * dataset of a recipe's type and shape */
void fuzz_h5_dataset(hid_t loc, const char *name, FuzzIn *in, const int64_t *rows, int nrows, const int64_t *dims,
                     int ndims);
/* replaces (or, one time in eight, deletes) the attribute `name` of the
 * object at path `obj`: a recipe's type and shape (scalar, null, 0 or 2
 * entries), holding values of `values` (as text in string types) */
void fuzz_h5_attr(hid_t file, const char *obj, const char *name, FuzzIn *in, const int64_t *values, int nvalues);
/* delete, group, soft link (to `other`: may dangle or point at itself) or
 * hard link (to `other`) in place of `name` */
void fuzz_h5_link(hid_t file, const char *name, const char *other, int how);

#endif
