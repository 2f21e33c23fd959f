/* fuzz_checkpoint.c: libFuzzer harness of checkpoint validation
 * (checkpoint_find_latest, checkpoint_load, checkpoint_remove_partial;
 * include/checkpoint.h).
 *
 * The input is a recipe, not file bytes (HDF5's own parser is not the
 * target): the caller's sizes (parameters, Adam groups, loss-trace
 * capacity, table columns), then up to three checkpoints, each written by
 * checkpoint_save for a step of the recipe and moved into run/checkpoints
 * under a name of the recipe (the usual one, unpadded, .tmp, a name whose
 * number is not the file's step, a negative or overflowing number), or
 * replaced by an empty file, a text file or a directory. Then the recipe's
 * edits through the HDF5 API: header attributes deleted or given another
 * type, shape or value; payload datasets deleted or replaced by others of
 * another type or shape, by groups or links. Then what `train --resume
 * auto` does: checkpoint_find_latest, checkpoint_load of what it found, and
 * on failure the next older one. Beyond "no crash, no sanitizer report"
 * (the loss-trace buffer has exactly trace_cap steps, so ASan sees any
 * write past it):
 *   - no HDF5 identifier stays open;
 *   - find returns 1 with a step below `before` and an existing path, or 0
 *     with an empty path;
 *   - a load that succeeds held at most trace_cap steps; one that fails
 *     leaves the tables empty;
 *   - train's loop ends: after a failed load, the next search (below the
 *     step of the header) finds an older file, never the same one;
 *   - checkpoint_remove_partial removes every step-*.h5.tmp and nothing else.
 */
#include "fuzz_util.h"

#include "checkpoint.h"
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 3
#define MAX_EDITS 12
#define MAX_SAVED_STEP 16
#define N_OF(t) ((int)(sizeof t / sizeof t[0]))
#define HASH 0x0123456789abcdefULL
#define STEPS_PER_EPOCH 4

static const char *const COLS[] = {"epoch", "r1", "r2", "r4", "map", "nmi"};
static const int64_t DIMS[] = {0, 1, 2, 3, 4, 5, 6, 8, 16, 24, 48, 4096, (int64_t)1 << 31, (int64_t)1 << 40,
                               (int64_t)1 << 62};
static const int64_t VALUES[] = {0, 1, 2, 3, 8, 9, 16, -1, INT_MAX, (int64_t)INT_MAX + 1, (int64_t)1 << 40,
                                 INT64_MAX, INT64_MIN, 0x0123456789abcdefLL};
static const char *const HEADER[] = {"complete", "format_version", "step", "epoch", "step_in_epoch", "ranks",
                                     "train_seconds", "wall_seconds", "config_hash"};
static const char *const PAYLOAD[] = {"params", "adam/m", "adam/v", "adam/t", "adam/lr", "adam/frozen",
                                      "loss_trace", "metrics", "timing", "adam"};

/* the buffers of a caller that resumes a run of these sizes */
typedef struct {
  size_t n_params;
  int ngroups, mcols, tcols;
  int64_t trace_cap;
  float *params;
  Adam opt;
  double *trace;
  RunTable metrics, timing;
} Caller;

static void caller_init(Caller *k, FuzzIn *in) {
  static const int64_t NP[] = {1, 2, 3, 16}, CAP[] = {0, 1, 2, 3, 8, 16};
  memset(k, 0, sizeof *k);
  k->n_params = (size_t)fuzz_pick(in, NP, N_OF(NP));
  k->ngroups = 1 + fuzz_below(in, 3);
  k->trace_cap = fuzz_pick(in, CAP, N_OF(CAP));
  k->mcols = 1 + fuzz_below(in, N_OF(COLS));
  k->tcols = 1 + fuzz_below(in, 3);
  k->params = malloc(k->n_params * sizeof *k->params);
  /* exactly trace_cap steps: a write past them is a heap overflow ASan reports */
  k->trace = malloc(k->trace_cap ? (size_t)k->trace_cap * 3 * sizeof *k->trace : 1);
  FUZZ_CHECK(k->params && k->trace, "out of memory");
  adam_init(&k->opt, k->n_params, 0.9, 0.999, 0.01, 1e-4);
  for (int g = 0; g < k->ngroups; g++)
    adam_add_group(&k->opt, k->n_params * (size_t)g / (size_t)k->ngroups,
                   k->n_params * (size_t)(g + 1) / (size_t)k->ngroups, 1e-3 * (g + 1));
  runtable_init(&k->metrics, k->mcols, COLS);
  runtable_init(&k->timing, k->tcols, COLS);
}

static void caller_free(Caller *k) {
  free(k->params);
  free(k->trace);
  adam_free(&k->opt);
  runtable_free(&k->metrics);
  runtable_free(&k->timing);
}

static Checkpoint caller_view(Caller *k) {
  return (Checkpoint){.n_params = k->n_params, .params = k->params, .opt = &k->opt, .m = k->opt.m, .v = k->opt.v,
                      .loss_trace = k->trace,
                      .trace_cap = k->trace_cap, .metrics = &k->metrics, .timing = &k->timing, .epoch = 1};
}

/* ---- the files ------------------------------------------------------------------- */

/* a valid checkpoint of step `step` for the caller's sizes, at `path` */
static void save(Caller *k, int64_t step, FuzzIn *in, const char *path) {
  double trace[3 * MAX_SAVED_STEP + 1];
  for (int64_t i = 0; i < 3 * step; i++) trace[i] = (double)i / 8;
  RunTable m, t;
  runtable_init(&m, k->mcols, COLS);
  runtable_init(&t, k->tcols, COLS);
  double row[N_OF(COLS)] = {1, 0.5, 0.25, 0.125, 0.0625, 0.03125};
  for (int r = fuzz_below(in, 4); r > 0; r--) runtable_add(&m, row);
  for (int r = fuzz_below(in, 3); r > 0; r--) runtable_add(&t, row);
  Checkpoint c = caller_view(k);
  c.step = step;
  c.epoch = 1 + (int)(step / STEPS_PER_EPOCH);
  c.step_in_epoch = step % STEPS_PER_EPOCH;
  c.config_hash = HASH;
  c.ranks = 1 + fuzz_below(in, 4);
  c.loss_trace = trace;
  c.metrics = &m;
  c.timing = &t;
  for (size_t i = 0; i < k->n_params; i++) k->params[i] = (float)i;
  FUZZ_CHECK(checkpoint_save("stage", &c) == 0, "checkpoint_save failed: %s", err_msg());
  char saved[64];
  snprintf(saved, sizeof saved, "stage/checkpoints/step-%09lld.h5", (long long)step);
  FUZZ_CHECK(rename(saved, path) == 0, "cannot move %s to %s: %s", saved, path, strerror(errno));
  runtable_free(&m);
  runtable_free(&t);
}

static void edit(const char *path, FuzzIn *in) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return;
  int n = fuzz_below(in, MAX_EDITS + 1);
  for (int e = 0; e < n && !fuzz_done(in); e++) {
    const char *name = PAYLOAD[fuzz_below(in, N_OF(PAYLOAD))], *other = PAYLOAD[fuzz_below(in, N_OF(PAYLOAD))];
    switch (fuzz_below(in, 4)) {
    case 0:
    case 1: fuzz_h5_attr(f, "/", HEADER[fuzz_below(in, N_OF(HEADER))], in, VALUES, N_OF(VALUES)); break;
    case 2: fuzz_h5_dataset(f, name, in, DIMS, N_OF(DIMS), DIMS, N_OF(DIMS)); break;
    case 3: fuzz_h5_link(f, name, other, fuzz_u8(in)); break;
    }
  }
  H5Fclose(f);
}

/* one file of run/checkpoints; counts the .tmp names checkpoint_remove_partial must remove */
static void make_file(Caller *k, FuzzIn *in, int *tmps) {
  static const int64_t STEPS[] = {0, 1, 2, 3, 4, 5, 8, 9, 15, MAX_SAVED_STEP};
  static const int64_t NAMES[] = {0, 1, 2, 9, 17, 999999999, (int64_t)1 << 40, INT64_MAX, -1};
  int64_t step = fuzz_pick(in, STEPS, N_OF(STEPS));
  int64_t named = fuzz_u8(in) & 1 ? step : fuzz_pick(in, NAMES, N_OF(NAMES));
  char path[128];
  switch (fuzz_below(in, 6)) {
  case 0: snprintf(path, sizeof path, "run/checkpoints/step-%lld.h5", (long long)named); break;
  case 1: snprintf(path, sizeof path, "run/checkpoints/step-%09lld.h5.tmp", (long long)named); break;
  case 2: snprintf(path, sizeof path, "run/checkpoints/step-%lld.h5x", (long long)named); break;
  case 3: snprintf(path, sizeof path, "run/checkpoints/step-99999999999999999999%lld.h5", (long long)named); break;
  default: snprintf(path, sizeof path, "run/checkpoints/step-%09lld.h5", (long long)named); break;
  }
  struct stat st;
  if (stat(path, &st) == 0) return;   /* two recipes for one name: the first stays */
  int kind = fuzz_below(in, 8);
  *tmps += kind != 2 && strstr(path, ".h5.tmp") != NULL;   /* a directory is not removed */
  switch (kind) {
  case 0: fuzz_write(path, "", 0); break;
  case 1: fuzz_write(path, "not an HDF5 file\n", 17); break;
  case 2: FUZZ_CHECK(mkdir(path, 0777) == 0, "mkdir %s: %s", path, strerror(errno)); break;
  default:
    save(k, step, in, path);
    edit(path, in);
  }
}

static int count_tmps(void) {
  DIR *d = opendir("run/checkpoints");
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".h5.tmp") != NULL;
  if (d) closedir(d);
  return n;
}

/* ---- the caller: train's resume ------------------------------------------------- */

/* find, with the checks of its promise; 1 found, 0 none */
static int find(int64_t before, Checkpoint *c, char *path, size_t cap) {
  memset(path, 'x', cap);
  fuzz_h5_mark();
  int got = checkpoint_find_latest("run", before, 0, c, path, cap);
  fuzz_h5_check("checkpoint_find_latest");
  FUZZ_CHECK(got == 0 || got == 1, "checkpoint_find_latest returned %d", got);
  struct stat st;
  if (got == 0) FUZZ_CHECK(path[0] == 0, "checkpoint_find_latest found nothing but gave a path");
  else FUZZ_CHECK(memchr(path, 0, cap) && stat(path, &st) == 0, "checkpoint_find_latest gave a path that does not exist");
  return got;
}

static int load(Caller *k, const char *path, Checkpoint *c) {
  fuzz_h5_mark();
  int rc = checkpoint_load(path, c);
  fuzz_h5_check("checkpoint_load");
  if (rc == 0)
    FUZZ_CHECK(c->step >= 0 && c->step <= k->trace_cap, "checkpoint_load accepted %lld steps for a trace of %lld",
               (long long)c->step, (long long)k->trace_cap);
  else
    FUZZ_CHECK(k->metrics.nrows == 0 && k->timing.nrows == 0, "a failed checkpoint_load left table rows (%d, %d)",
               k->metrics.nrows, k->timing.nrows);
  FUZZ_CHECK(k->metrics.ncols == k->mcols && k->timing.ncols == k->tcols, "checkpoint_load changed the columns");
  return rc;
}

/* train's resume (src/train.c): header checks against the configuration
 * (hash, the step range of trace_cap = epochs x STEPS_PER_EPOCH, epoch and
 * step agreeing), then the payload; after a failed load the next older
 * checkpoint. Each round must find an older file than the last, or the
 * loop would never end. */
static void resume(Caller *k, FuzzIn *in) {
  static const int64_t BEFORE[] = {INT64_MAX, 0, 1, 3, 9, 17, (int64_t)1 << 40};
  char path[4300], last[4300] = "";
  Checkpoint c = caller_view(k);
  /* first the loader alone, on whatever the finder accepts */
  if (find(fuzz_pick(in, BEFORE, N_OF(BEFORE)), &c, path, sizeof path)) load(k, path, &c);
  int64_t before = INT64_MAX;
  for (int tried = 0;; tried++) {
    c = caller_view(k);
    if (!find(before, &c, path, sizeof path)) return;
    if (c.config_hash != HASH || c.step > k->trace_cap) return;   /* refused */
    if (c.epoch < 1 || c.step_in_epoch < 0 || c.step_in_epoch >= STEPS_PER_EPOCH ||
        c.step != (int64_t)(c.epoch - 1) * STEPS_PER_EPOCH + c.step_in_epoch)
      return;   /* refused as corrupt */
    FUZZ_CHECK(strcmp(path, last) && tried <= MAX_FILES, "resume would loop: checkpoint_find_latest (before = %lld) "
               "finds %s again after its load failed", (long long)before, path);
    if (load(k, path, &c) == 0) return;
    snprintf(last, sizeof last, "%s", path);
    before = c.step;
  }
}

static int run(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
      H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    ready = 1;
  }
  FuzzIn in = {data, size, 0};
  fuzz_rm_tree("run");
  fuzz_rm_tree("stage");
  FUZZ_CHECK(mkdir("run", 0777) == 0 && mkdir("run/checkpoints", 0777) == 0 && mkdir("stage", 0777) == 0,
             "cannot make the run directory: %s", strerror(errno));
  Caller k;
  caller_init(&k, &in);
  int nfiles = fuzz_below(&in, MAX_FILES + 1), tmps = 0;
  for (int i = 0; i < nfiles; i++) make_file(&k, &in, &tmps);
  resume(&k, &in);
  int before = count_tmps(), removed = checkpoint_remove_partial("run");
  FUZZ_CHECK(removed == tmps && count_tmps() == before - removed,
             "checkpoint_remove_partial removed %d of %d .tmp files (%d before, %d after)", removed, tmps, before,
             count_tmps());
  caller_free(&k);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_enter();
  int rc = run(data, size);
  fuzz_leave();
  return rc;
}
