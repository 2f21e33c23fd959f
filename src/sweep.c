/* sweep.c: sweeps (include/sweep.h): reading and checking sweep files,
 * numbering the grid points as tasks, their training arguments, the
 * manifest, the plan's checks against the datasets, and the status of each
 * task's run file. The command line is tools/sweep.c; submitting and running
 * the tasks is left to the scripts in slurm/ (job array, local loop). */
#include "sweep.h"

#include "fsutil.h"

#include "common.h"
#include "dataset.h"
#include "h5io.h"
#include "trainer.h"

#include <dirent.h>
#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const TOP_KEYS = "config, out, grid and set";

/* ------------------------------------------------------------ values as --set text */

/* the shortest text that reads back as x, and still reads as a float */
static void format_double(double x, char *buf, size_t cap) {
  for (int p = 1; p <= 17; p++) {
    snprintf(buf, cap, "%.*g", p, x);
    if (strtod(buf, NULL) == x) break;
  }
  if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

/* "FILE:LINE: " + the current message */
static int at_line(const char *file, int line, const char *what) {
  return err_set("%s:%d: %s%s", file, line, what, err_msg());
}

/* one scalar, or an array of integers (list keys: "20,40"), as --set text */
static int value_text(const config_setting_t *v, const char *key, int allow_array, char *buf, size_t cap) {
  int t = config_setting_type(v);
  buf[0] = 0;
  switch (t) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64: snprintf(buf, cap, "%lld", config_setting_get_int64(v)); return 0;
  case CONFIG_TYPE_FLOAT: format_double(config_setting_get_float(v), buf, cap); return 0;
  case CONFIG_TYPE_STRING: {
    const char *s = config_setting_get_string(v);
    for (const char *p = s; *p; p++)
      if ((unsigned char)*p < 0x20) return err_set("key '%s': a value holds a tab, newline or control character", key);
    if (strlen(s) >= cap) return err_set("key '%s': the value \"%.40s...\" is too long", key, s);
    snprintf(buf, cap, "%s", s);
    return 0;
  }
  case CONFIG_TYPE_BOOL: return err_set("key '%s': true/false is not a configuration value", key);
  case CONFIG_TYPE_ARRAY:
  case CONFIG_TYPE_LIST: {
    /* unreachable in tests: libconfig's arrays hold scalars only, and an array inside a list ( ... ) is allowed */
    if (!allow_array) return err_set("key '%s': a value may not be a nested array or list", key);
    size_t len = 0;
    for (int j = 0; j < config_setting_length(v); j++) {
      const config_setting_t *e = config_setting_get_elem(v, (unsigned)j);
      if (config_setting_type(e) != CONFIG_TYPE_INT && config_setting_type(e) != CONFIG_TYPE_INT64)
        return err_set("key '%s': arrays hold integers only (entry %d is not one)", key, j + 1);
      len += (size_t)snprintf(buf + len, cap - len, "%s%lld", j ? "," : "", config_setting_get_int64(e));
      if (len >= cap) return err_set("key '%s': the array is too long", key);
    }
    return 0;
  }
  default: return err_set("key '%s': a group { ... } is not a configuration value", key);
  }
}

/* ------------------------------------------------------------ reading the file */

static int read_config_path(Sweep *s, const config_setting_t *e) {
  if (config_setting_type(e) != CONFIG_TYPE_STRING || !config_setting_get_string(e)[0])
    return err_set("'config' must be a file name in double quotes");
  const char *c = config_setting_get_string(e);
  if (c[0] == '/') snprintf(s->config, sizeof s->config, "%s", c);
  else {   /* relative to the sweep file */
    char joined[2 * CFG_PATH_MAX];
    const char *slash = strrchr(s->path, '/');
    int dirlen = slash ? (int)(slash - s->path) + 1 : 0;
    snprintf(joined, sizeof joined, "%.*s%s", dirlen, s->path, c);
    if (strlen(joined) >= sizeof s->config) return err_set("'config': the path is too long");
    memcpy(s->config, joined, strlen(joined) + 1);
  }
  return 0;
}

/* grid = { key = [values]; ... }: errors name the file and line */
static int read_grid(Sweep *s, const config_setting_t *g, int line) {
  if (config_setting_type(g) != CONFIG_TYPE_GROUP)
    return err_set("%s:%d: 'grid' must be a group: grid = { k = [4, 8]; N = [2, 4]; };", s->path, line);
  int n = config_setting_length(g);
  if (n == 0)
    return err_set("%s:%d: the grid is empty: give at least one key with its values, e.g. grid = { seed = [0]; };",
                   s->path, line);
  if (n > SWEEP_MAX_KEYS) return err_set("%s:%d: the grid has more than %d keys", s->path, line, SWEEP_MAX_KEYS);
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(g, (unsigned)i);
    SweepAxis *a = &s->axes[s->naxes++];
    snprintf(a->key, sizeof a->key, "%s", config_setting_name(e));
    a->line = config_setting_source_line(e);
    int t = config_setting_type(e), many = t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST;
    if (t == CONFIG_TYPE_GROUP)
      return err_set("%s:%d: grid key '%s': give its values as an array [a, b], not a group", s->path, a->line, a->key);
    int nv = many ? config_setting_length(e) : 1;
    if (nv == 0) return err_set("%s:%d: grid key '%s' has no values (the grid is empty)", s->path, a->line, a->key);
    a->text = xcalloc((size_t)nv, sizeof *a->text);
    a->n = nv;
    for (int j = 0; j < nv; j++) {
      const config_setting_t *v = many ? config_setting_get_elem(e, (unsigned)j) : e;
      /* in a list ( ... ) an array is one value of a list key; in [ ... ] every entry is a value */
      if (value_text(v, a->key, t == CONFIG_TYPE_LIST, a->text[j], SWEEP_TEXT_MAX) != 0)
        return at_line(s->path, a->line, "grid: ");
      for (int q = 0; q < j; q++)
        if (!strcmp(a->text[q], a->text[j]))
          return err_set("%s:%d: grid key '%s': the value %s is listed twice (a duplicate grid point)", s->path,
                         a->line, a->key, a->text[j][0] ? a->text[j] : "[]");
    }
  }
  return 0;
}

/* set = { key = value; ... } */
static int read_set(Sweep *s, const config_setting_t *g, int line) {
  if (config_setting_type(g) != CONFIG_TYPE_GROUP)
    return err_set("%s:%d: 'set' must be a group: set = { epochs = 2; };", s->path, line);
  int n = config_setting_length(g);
  if (n > SWEEP_MAX_KEYS) return err_set("%s:%d: 'set' has more than %d keys", s->path, line, SWEEP_MAX_KEYS);
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(g, (unsigned)i);
    char text[SWEEP_TEXT_MAX];
    if (value_text(e, config_setting_name(e), 1, text, sizeof text) != 0)
      return at_line(s->path, config_setting_source_line(e), "set: ");
    snprintf(s->set[s->nset++], sizeof s->set[0], "%s=%s", config_setting_name(e), text);
  }
  return 0;
}

static int read_file(Sweep *s, const config_t *lc) {
  const config_setting_t *root = config_root_setting(lc);
  int have_config = 0, have_grid = 0;
  for (int i = 0; i < config_setting_length(root); i++) {
    const config_setting_t *e = config_setting_get_elem(root, (unsigned)i);
    const char *name = config_setting_name(e);
    int line = config_setting_source_line(e);
    if (!strcmp(name, "config")) {
      if (read_config_path(s, e) != 0) return at_line(s->path, line, "");
      s->config_line = line;
      have_config = 1;
    } else if (!strcmp(name, "out")) {
      if (config_setting_type(e) != CONFIG_TYPE_STRING || !config_setting_get_string(e)[0])
        return err_set("%s:%d: 'out' must be a directory name in double quotes", s->path, line);
      snprintf(s->out, sizeof s->out, "%s", config_setting_get_string(e));
    } else if (!strcmp(name, "grid")) {
      if (read_grid(s, e, line) != 0) return -1;
      have_grid = 1;
    } else if (!strcmp(name, "set")) {
      if (read_set(s, e, line) != 0) return -1;
    } else {
      return err_set("%s:%d: unknown sweep key '%s' (a sweep file has %s; configuration keys go inside grid = { ... } "
                     "or set = { ... })", s->path, line, name, TOP_KEYS);
    }
  }
  if (!have_config) return err_set("%s: no config = \"FILE.cfg\"; (the base configuration of every task)", s->path);
  if (!have_grid) return err_set("%s: no grid = { key = [values]; ... }; (the grid is empty)", s->path);
  if (!s->out[0]) {   /* like train: runs/<file name without extension> */
    const char *base = strrchr(s->path, '/') ? strrchr(s->path, '/') + 1 : s->path;
    char stem[CFG_PATH_MAX];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
    /* unreachable in tests: a file name has at most NAME_MAX = 255 bytes, and the file was opened */
    if (strlen(stem) + 6 > sizeof s->out) return err_set("%s: the file name is too long", s->path);
    memcpy(s->out, "runs/", 5);
    memcpy(s->out + 5, stem, strlen(stem) + 1);
  }
  return 0;
}

/* a key in both grid and set, or K chosen both ways: the task's meaning would
 * depend on the order of the --set arguments */
static int check_keys(const Sweep *s) {
  int has_k = 0, has_r = 0;
  for (int a = 0; a < s->naxes; a++) {
    has_k |= !strcmp(s->axes[a].key, "k");
    has_r |= !strcmp(s->axes[a].key, "r");
    for (int i = 0; i < s->nset; i++) {
      size_t n = strlen(s->axes[a].key);
      if (!strncmp(s->set[i], s->axes[a].key, n) && s->set[i][n] == '=')
        return err_set("%s:%d: key '%s' is in both grid and set: keep one", s->path, s->axes[a].line, s->axes[a].key);
    }
  }
  for (int i = 0; i < s->nset; i++) {
    has_k |= !strncmp(s->set[i], "k=", 2);
    has_r |= !strncmp(s->set[i], "r=", 2);
  }
  if (has_k && has_r)
    return err_set("%s: the sweep sets both 'k' and 'r': choose K one way (k for K itself, r for K = ceil(r*C*N))",
                   s->path);
  return 0;
}

/* ------------------------------------------------------------ the tasks */

/* digit of axis a in task id: the last axis varies fastest */
static int task_digit(const Sweep *s, int id, int a) {
  for (int b = s->naxes - 1; b > a; b--) id /= s->axes[b].n;
  return id % s->axes[a].n;
}

/* file-name-safe copy: letters, digits and . , + - stay, anything else becomes - */
static void safe_name(const char *in, char *out, size_t cap) {
  size_t n = 0;
  for (; *in && n + 1 < cap; in++) {
    char c = *in;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(".,+-", c);
    out[n++] = ok ? c : '-';
  }
  out[n] = 0;
  if (!n) snprintf(out, cap, "none");   /* an empty list */
}

int sweep_task_dir(const Sweep *s, int id, char *dir, size_t cap) {
  size_t len = 0;
  dir[0] = 0;
  for (int a = 0; a < s->naxes; a++) {
    char v[SWEEP_TEXT_MAX];
    safe_name(s->axes[a].text[task_digit(s, id, a)], v, sizeof v);
    len += (size_t)snprintf(dir + len, cap - len, "%s%s=%s", a ? "_" : "", s->axes[a].key, v);
    if (len >= cap) return err_set("%s: the directory name of task %d is longer than %zu characters", s->path, id, cap - 1);
  }
  return 0;
}

static uint64_t config_bytes_hash(const Config *c) {
  const unsigned char *p = (const unsigned char *)c;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < sizeof *c; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

typedef struct { uint64_t h; int id; const char *name; } Key64;
static int by_hash(const void *a, const void *b) {
  const Key64 *x = a, *y = b;
  return x->h < y->h ? -1 : x->h > y->h ? 1 : x->id - y->id;
}
static int by_name(const void *a, const void *b) {
  int c = strcmp(((const Key64 *)a)->name, ((const Key64 *)b)->name);
  return c ? c : ((const Key64 *)a)->id - ((const Key64 *)b)->id;
}

/* every point's full Config, and no two points alike */
static int build_tasks(Sweep *s) {
  Config base;
  cfg_defaults(&base);
  if (cfg_load(&base, s->config) != 0) return err_set("%s:%d: config: %s", s->path, s->config_line, err_msg());
  int64_t n = 1;
  for (int a = 0; a < s->naxes; a++)
    if ((n *= s->axes[a].n) > SWEEP_MAX_TASKS) return err_set("%s: the grid has more than %d points", s->path, SWEEP_MAX_TASKS);
  s->ntasks = (int)n;
  s->cfgs = xmalloc((size_t)n * sizeof(Config));
  for (int id = 0; id < s->ntasks; id++) {
    Config *c = &s->cfgs[id];
    *c = base;
    char kv[64 + SWEEP_TEXT_MAX + 2];
    for (int a = 0; a < s->naxes; a++) {
      const SweepAxis *ax = &s->axes[a];
      snprintf(kv, sizeof kv, "%s=%s", ax->key, ax->text[task_digit(s, id, a)]);
      if (cfg_set(c, kv) != 0) return err_set("%s:%d: grid: %s", s->path, ax->line, err_msg());
    }
    for (int i = 0; i < s->nset; i++)
      if (cfg_set(c, s->set[i]) != 0) return err_set("%s: set: %s", s->path, err_msg());
    if (cfg_validate(c) != 0) {
      char dir[SWEEP_DIR_MAX];
      sweep_task_dir(s, id, dir, sizeof dir);
      return err_set("%s: task %d (%s): %s", s->path, id, dir, err_msg());
    }
  }
  /* duplicates: the same Config bytes, or the same directory name */
  Key64 *k = xmalloc((size_t)n * sizeof *k);
  char (*names)[SWEEP_DIR_MAX] = xmalloc((size_t)n * SWEEP_DIR_MAX);
  int rc = 0;
  for (int id = 0; id < s->ntasks && rc == 0; id++) {
    rc = sweep_task_dir(s, id, names[id], SWEEP_DIR_MAX);
    k[id] = (Key64){config_bytes_hash(&s->cfgs[id]), id, names[id]};
  }
  if (rc == 0) {
    qsort(k, (size_t)n, sizeof *k, by_hash);
    for (int64_t i = 1; i < n && rc == 0; i++)
      if (k[i].h == k[i - 1].h && !memcmp(&s->cfgs[k[i].id], &s->cfgs[k[i - 1].id], sizeof(Config)))
        rc = err_set("%s: grid points %s and %s give the same configuration (a duplicate grid point)", s->path,
                     k[i - 1].name, k[i].name);
  }
  if (rc == 0) {
    qsort(k, (size_t)n, sizeof *k, by_name);
    for (int64_t i = 1; i < n && rc == 0; i++)
      if (!strcmp(k[i].name, k[i - 1].name))
        rc = err_set("%s: tasks %d and %d get the same directory name '%s' (values that differ only in characters "
                     "not allowed in file names)", s->path, k[i - 1].id, k[i].id, k[i].name);
  }
  free(k);
  free(names);
  return rc;
}

/* ------------------------------------------------------------ public */

void sweep_free(Sweep *s) {
  for (int a = 0; a < s->naxes; a++) free(s->axes[a].text);
  free(s->cfgs);
  memset(s, 0, sizeof *s);
}

int sweep_load(Sweep *s, const char *path) {
  memset(s, 0, sizeof *s);
  if (strlen(path) >= sizeof s->path) return err_set("sweep file name too long");
  snprintf(s->path, sizeof s->path, "%s", path);
  FILE *f = fopen(path, "r");   /* libconfig reports a missing file without the reason */
  if (!f) return err_set("cannot open sweep file '%s': %s", path, strerror(errno));
  fclose(f);
  if (cfg_check_includes(path, NULL) != 0) return -1;   /* @include: relative to the working directory */
  config_t lc;
  config_init(&lc);
  int rc;
  if (!config_read_file(&lc, path))
    rc = cfg_syntax_error(config_error_file(&lc) ? config_error_file(&lc) : path, config_error_line(&lc),
                          config_error_text(&lc));
  else
    rc = read_file(s, &lc);
  config_destroy(&lc);
  if (rc == 0) rc = check_keys(s);
  if (rc == 0) rc = build_tasks(s);
  if (rc != 0) {
    char msg[1100];
    snprintf(msg, sizeof msg, "%s", err_msg());
    sweep_free(s);
    return err_set("%s", msg);
  }
  return 0;
}

int sweep_task(const Sweep *s, int id, SweepTask *t) {
  if (id < 0 || id >= s->ntasks)
    return err_set("task %d does not exist: %s has %d task%s (0-%d)", id, s->path, s->ntasks, s->ntasks == 1 ? "" : "s",
                   s->ntasks - 1);
  memset(t, 0, sizeof *t);
  t->id = id;
  if (sweep_task_dir(s, id, t->dir, sizeof t->dir) != 0) return -1;
  snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", s->out, t->dir);
  const size_t cap = sizeof t->argv[0];
  snprintf(t->argv[t->argc++], cap, "--config");
  snprintf(t->argv[t->argc++], cap, "%s", s->config);
  snprintf(t->argv[t->argc++], cap, "--out");
  snprintf(t->argv[t->argc++], cap, "%s", t->run_dir);
  for (int a = 0; a < s->naxes; a++) {
    snprintf(t->argv[t->argc++], cap, "--set");
    snprintf(t->argv[t->argc++], cap, "%s=%s", s->axes[a].key, s->axes[a].text[task_digit(s, id, a)]);
  }
  for (int i = 0; i < s->nset; i++) {
    snprintf(t->argv[t->argc++], cap, "--set");
    snprintf(t->argv[t->argc++], cap, "%s", s->set[i]);
  }
  return 0;
}

/* slurm-<job>_<id>.out: the log of array task `id` */
static int is_task_log(const char *name, int id) {
  int t, n = 0;
  return sscanf(name, "slurm-%*d_%d.out%n", &t, &n) == 1 && n > 0 && !name[n] && t == id;
}

static double mtime_of(const struct stat *st) { return (double)st->st_mtim.tv_sec + 1e-9 * (double)st->st_mtim.tv_nsec; }

/* the newest non-empty one of dir/slurm-*_<id>.out and dir/local.out (if `local`) into best */
static void newest_in(const char *dir, int id, int local, char *best, size_t cap, double *mtime) {
  DIR *dh = opendir(dir);
  struct dirent *e;
  while (dh && (e = readdir(dh))) {
    if (!is_task_log(e->d_name, id) && !(local && !strcmp(e->d_name, "local.out"))) continue;
    char p[CFG_PATH_MAX + SWEEP_DIR_MAX + 300];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) == 0 && st.st_size > 0 && (!best[0] || mtime_of(&st) > *mtime)) {
      snprintf(best, cap, "%s", p);
      *mtime = mtime_of(&st);
    }
  }
  if (dh) closedir(dh);
}

/* The verdict of a task's log: 1 if its last attempt failed, with the last
 * error line of that attempt in why. Job scripts end an attempt with a "== "
 * line (slurm/sweep.sbatch, run_local_sweep.sh); a job script that could not
 * start the task says so in a "sweep.sbatch: " line. */
static int log_failed(const char *path, char *why, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > 65536) fseek(f, -65536, SEEK_END);
  else rewind(f);
  char line[1024], err[1024] = "";
  int failed = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    /* "proxygml train: ..." and the like; the banner "proxygml 0.1.0: ..." is not one */
    if ((!strncmp(line, "proxygml ", 9) && line[9] >= 'a' && line[9] <= 'z') || !strncmp(line, "sweep.sbatch: ", 14)) {
      snprintf(err, sizeof err, "%s", line);
      if (failed) snprintf(why, cap, "%s", err);   /* output that reached the log after the verdict */
    }
    if (!strncmp(line, "sweep.sbatch: ", 14)) {
      failed = 1;
      snprintf(why, cap, "%s", err);
    } else if (!strncmp(line, "== ", 3)) {
      failed = strstr(line, "bad input (exit") || strstr(line, "failed (exit");
      if (failed) snprintf(why, cap, "%s", err[0] ? err : line + 3);
      err[0] = 0;
    }
  }
  fclose(f);
  return failed;
}

void sweep_task_status(const Sweep *s, int id, char *status, size_t cap, char *why, size_t why_cap) {
  char path[CFG_PATH_MAX + SWEEP_DIR_MAX + 16], dir[SWEEP_DIR_MAX], rundir[CFG_PATH_MAX + SWEEP_DIR_MAX + 8];
  char logs[CFG_PATH_MAX + 8], log[CFG_PATH_MAX + SWEEP_DIR_MAX + 300] = "", reason[1024] = "";
  if (why && why_cap) why[0] = 0;
  if (sweep_task_dir(s, id, dir, sizeof dir) != 0) { snprintf(status, cap, "unreadable"); return; }
  snprintf(rundir, sizeof rundir, "%s/%s", s->out, dir);
  snprintf(path, sizeof path, "%s/run.h5", rundir);
  snprintf(logs, sizeof logs, "%s/logs", s->out);
  double log_time = 0;
  newest_in(rundir, id, 1, log, sizeof log, &log_time);
  newest_in(logs, id, 0, log, sizeof log, &log_time);
  struct stat st;
  if (stat(path, &st) != 0) {
    /* no run file: a task that failed before writing one says why in its log */
    if (log[0] && log_failed(log, reason, sizeof reason)) snprintf(status, cap, "failed");
    else snprintf(status, cap, "missing");
    if (why && reason[0]) snprintf(why, why_cap, "%s", reason);
    return;
  }
  hid_t h;
  if (h5io_open(path, &h) != 0) {
    snprintf(status, cap, "unreadable");
    if (why) snprintf(why, why_cap, "%s", err_msg());
    return;
  }
  char st_text[32] = "", hash[32] = "", want[32], message[512] = "";
  int64_t epochs_done = 0;
  if (h5io_attr_str(h, "status", st_text, sizeof st_text) != 0) snprintf(st_text, sizeof st_text, "unreadable");
  h5io_attr_str(h, "message", message, sizeof message);
  h5io_attr_i64(h, "epochs_done", &epochs_done);
  hid_t g = H5Gopen2(h, "config", H5P_DEFAULT);
  if (g >= 0) {
    h5io_attr_str(g, "config_hash", hash, sizeof hash);
    H5Gclose(g);
  }
  H5Fclose(h);
  snprintf(want, sizeof want, "%016llx", (unsigned long long)cfg_hash(&s->cfgs[id]));
  if (strcmp(hash, want)) snprintf(st_text, sizeof st_text, "foreign");   /* --resume auto would refuse it */
  else if (!strcmp(st_text, "complete") && epochs_done < s->cfgs[id].epochs)
    snprintf(st_text, sizeof st_text, "extendable");   /* --resume auto continues it */
  else if (!strcmp(st_text, "failed")) snprintf(reason, sizeof reason, "%s", message);
  else if ((!strcmp(st_text, "running") || !strcmp(st_text, "preempted")) && log[0] && log_time > mtime_of(&st) &&
           log_failed(log, reason, sizeof reason))   /* a later attempt stopped before touching the run file */
    snprintf(st_text, sizeof st_text, "failed");
  snprintf(status, cap, "%s", st_text);
  if (why && reason[0]) snprintf(why, why_cap, "%s", reason);
}

int sweep_write_manifest(const Sweep *s) {
  if (fsutil_mkdir_p(s->out) != 0) return -1;
  char path[CFG_PATH_MAX + 32], tmp[CFG_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/manifest.tsv", s->out);
  fsutil_temp_name(tmp, sizeof tmp, path);
  FILE *f = fopen(tmp, "w");
  if (!f) return err_set("cannot write '%s': %s", tmp, strerror(errno));
  SweepTask *t = xmalloc(sizeof *t);
  fprintf(f, "task\trun_dir\tset\n");
  for (int id = 0; id < s->ntasks; id++) {
    if (sweep_task(s, id, t) != 0) break;
    fprintf(f, "%d\t%s\t", id, t->run_dir);
    for (int i = 4; i + 1 < t->argc; i += 2) fprintf(f, "%s--set %s", i > 4 ? " " : "", t->argv[i + 1]);
    fprintf(f, "\n");
  }
  free(t);
  int bad = ferror(f) | (fflush(f) != 0);
  int e = errno;
  bad |= fclose(f) != 0;
  if (bad) {
    unlink(tmp);
    /* unreachable in tests: writing a few lines to a file just created fails only on a full disk or an I/O
     * error */
    return err_set("cannot write '%s': %s", tmp, strerror(e));
  }
  return fsutil_commit(tmp, path);
}

/* ------------------------------------------------------------ plan checks */

/* What train checks before it reads a row, for every task: the dataset
 * (each file read once) and the sizes that follow from it. The rank count is
 * the job's, unknown here. */
int sweep_check_data(const Sweep *s, char *warning, size_t cap) {
  if (cap) warning[0] = 0;
  enum { CACHE = 8 };
  struct { const char *path; DatasetInfo tr, te; int rc; char msg[1024]; } cache[CACHE];
  int ncache = 0, nwarn = 0, first_warn = -1;
  char warn[256] = "", dir[SWEEP_DIR_MAX];
  for (int id = 0; id < s->ntasks; id++) {
    const Config *c = &s->cfgs[id];
    int hit = -1;
    for (int i = 0; i < ncache && hit < 0; i++)
      if (!strcmp(cache[i].path, c->data)) hit = i;
    if (hit < 0) {
      hit = ncache < CACHE ? ncache++ : CACHE - 1;
      cache[hit].path = c->data;
      cache[hit].rc = dataset_info(c->data, "train", &cache[hit].tr) != 0 || dataset_info(c->data, "test", &cache[hit].te) != 0;
      snprintf(cache[hit].msg, sizeof cache[hit].msg, "%s", cache[hit].rc ? err_msg() : "");
    }
    TrainerSizes z;
    int rc = cache[hit].rc ? err_set("%s", cache[hit].msg) : trainer_check_sizes(c, &cache[hit].tr, &cache[hit].te, 0, &z);
    if (rc != 0) {
      sweep_task_dir(s, id, dir, sizeof dir);
      return err_set("%s: task %d (%s): %s", s->path, id, dir, err_msg());
    }
    char w[sizeof warn];
    if (trainer_sizes_warning(&z, w, sizeof w) && nwarn++ == 0) {
      first_warn = id;
      memcpy(warn, w, sizeof warn);
    }
  }
  if (nwarn) {
    sweep_task_dir(s, first_warn, dir, sizeof dir);
    size_t len = (size_t)snprintf(warning, cap, "task %d (%s)", first_warn, dir);
    if (nwarn > 1 && len < cap)
      len += (size_t)snprintf(warning + len, cap - len, " and %d more task%s", nwarn - 1, nwarn > 2 ? "s" : "");
    if (len < cap) snprintf(warning + len, cap - len, ": %s", warn);
  }
  return 0;
}
