/* fuzz_sweep.c: libFuzzer harness of the sweep-file parser (sweep_load,
 * include/sweep.h).
 *
 * Input: the sweep file. Its `config` may name the base configs written
 * here (base.cfg, r.cfg, bad.cfg, inc.cfg, the directory sub) or anything
 * else in the working directory; inputs whose `config` or `@include` points elsewhere are
 * rejected, so that the fuzzer cannot make libconfig read devices or files
 * outside it. Beyond "no crash, no sanitizer report", for a sweep that loads:
 *   - every task has a directory name that is one path component and
 *     training arguments (sweep_task);
 *   - those arguments, applied as train applies them (cfg_load of --config,
 *     then each --set in order, then cfg_validate), rebuild the task's
 *     Config byte for byte: the checked configuration is the one trained.
 * Grids beyond 4096 points are rejected before sweep_load (each point costs
 * a Config), except those beyond SWEEP_MAX_TASKS, which it must refuse.
 */
#include "fuzz_util.h"

#include "cfg.h"
#include "common.h"
#include "sweep.h"

#include <hdf5.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_POINTS 4096
#define CHECKED_TASKS 64

static void setup(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  static const char BASE[] = "name = \"base\";\ndata = \"data/x.h5\";\nC = 10;\nN = 4;\nk = 8;\nepochs = 3;\n"
                             "decay_epochs = [2];\neval_epochs = [0, 3];\n",
                    R[] = "r = 0.25;\nepochs = 2;\n", BAD[] = "epochs = -1;\n", INC[] = "@include \"r.cfg\"\nN = 2;\n";
  fuzz_write("base.cfg", BASE, sizeof BASE - 1);
  fuzz_write("r.cfg", R, sizeof R - 1);
  fuzz_write("bad.cfg", BAD, sizeof BAD - 1);
  fuzz_write("inc.cfg", INC, sizeof INC - 1);
  mkdir("sub", 0777);   /* what an @include or config may wrongly name */
}

static int plain_name(const char *s) { return !strchr(s, '/') && !strstr(s, ".."); }

/* The same parse sweep_load makes (config_read_file, no include directory):
 * 1 if the input is safe and small enough to give to sweep_load. */
static int admissible(const char *path) {
  if (cfg_check_includes(path, NULL) != 0) return 1;   /* sweep_load refuses it before libconfig exits */
  config_t lc;
  config_init(&lc);
  int ok = 1;
  if (config_read_file(&lc, path)) {
    const config_setting_t *root = config_root_setting(&lc);
    const config_setting_t *c = config_setting_get_member(root, "config");
    if (c && config_setting_type(c) == CONFIG_TYPE_STRING) ok = plain_name(config_setting_get_string(c));
    const config_setting_t *g = config_setting_get_member(root, "grid");
    if (ok && g && config_setting_type(g) == CONFIG_TYPE_GROUP) {
      int64_t points = 1;
      for (int i = 0; i < config_setting_length(g) && points <= SWEEP_MAX_TASKS; i++) {
        const config_setting_t *e = config_setting_get_elem(g, (unsigned)i);
        int t = config_setting_type(e);
        if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) points *= config_setting_length(e);
      }
      ok = points <= MAX_POINTS || points > SWEEP_MAX_TASKS;
    }
  }
  config_destroy(&lc);
  return ok;
}

/* what train does with a task's arguments: --config, then --set in order */
static void check_task(const Sweep *s, int id, SweepTask *t) {
  FUZZ_CHECK(sweep_task(s, id, t) == 0, "sweep_task(%d) failed on a loaded sweep: %s", id, err_msg());
  FUZZ_CHECK(t->id == id && t->dir[0] && !strchr(t->dir, '/') && strcmp(t->dir, ".") && strcmp(t->dir, ".."),
             "task %d: bad directory name '%s'", id, t->dir);
  FUZZ_CHECK(t->argc >= 4 && t->argc % 2 == 0 && !strcmp(t->argv[0], "--config") && !strcmp(t->argv[2], "--out"),
             "task %d: unexpected arguments", id);
  Config c;
  cfg_defaults(&c);
  FUZZ_CHECK(cfg_load(&c, t->argv[1]) == 0, "task %d: --config %s: %s", id, t->argv[1], err_msg());
  for (int i = 4; i < t->argc; i += 2) {
    FUZZ_CHECK(!strcmp(t->argv[i], "--set"), "task %d: argument %d is '%s', not --set", id, i, t->argv[i]);
    FUZZ_CHECK(cfg_set(&c, t->argv[i + 1]) == 0, "task %d: --set %s: %s", id, t->argv[i + 1], err_msg());
  }
  FUZZ_CHECK(cfg_validate(&c) == 0, "task %d: its arguments give an invalid config: %s", id, err_msg());
  FUZZ_CHECK(!memcmp(&c, &s->cfgs[id], sizeof c), "task %d (%s): its arguments give another config than the one checked",
             id, t->dir);
}

static int run(const uint8_t *data, size_t size) {
  static int ready;
  static SweepTask task;   /* about 600 KB: not on the stack */
  if (!ready) {
    setup();
    ready = 1;
  }
  char *text = malloc(size + 1);
  FUZZ_CHECK(text, "out of memory");
  memcpy(text, data, size);
  text[size] = 0;
  int ok = fuzz_include_ok(text);
  free(text);
  if (!ok) return -1;
  fuzz_write("fuzz.sweep", data, size);
  if (!admissible("fuzz.sweep")) return -1;

  Sweep *s = calloc(1, sizeof *s);
  FUZZ_CHECK(s, "out of memory");
  if (sweep_load(s, "fuzz.sweep") == 0) {
    FUZZ_CHECK(s->ntasks >= 1 && s->ntasks <= SWEEP_MAX_TASKS && s->cfgs, "loaded sweep has %d tasks", s->ntasks);
    for (int id = 0; id < s->ntasks && id < CHECKED_TASKS; id++) check_task(s, id, &task);
    if (s->ntasks > CHECKED_TASKS) check_task(s, s->ntasks - 1, &task);
    FUZZ_CHECK(sweep_task(s, s->ntasks, &task) != 0 && sweep_task(s, -1, &task) != 0, "sweep_task accepts a bad id");
  } else {
    FUZZ_CHECK(s->ntasks == 0 && s->cfgs == NULL && s->naxes == 0, "a failed sweep_load left state behind");
  }
  sweep_free(s);
  free(s);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_enter();
  int rc = run(data, size);
  fuzz_leave();
  return rc;
}
