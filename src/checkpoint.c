/* checkpoint.c: checkpoints for exact resume (see include/checkpoint.h). */
#include "checkpoint.h"

#include "fsutil.h"

#include "common.h"
#include "dist.h"
#include "h5io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_FORMAT 1

static int put(hid_t f, int rank0, const char *name, hid_t type, int ndim, const int64_t *dims, const void *buf);

static int write_table(hid_t f, int rank0, const char *name, const RunTable *t) {
  char cols[RUNTABLE_MAXCOLS * 33] = "";
  for (int c = 0; c < t->ncols; c++) {
    strcat(cols, c ? "," : "");
    strcat(cols, t->names[c]);
  }
  int64_t dims[2] = {t->nrows, t->ncols};
  double empty = 0;
  /* no early return: in a parallel file the open and the attribute are collective */
  int rc = put(f, rank0, name, H5T_NATIVE_DOUBLE, 2, dims, t->nrows ? t->rows : &empty);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (d < 0) return -1;
  rc |= h5io_set_attr_str(d, "columns", cols);
  H5Dclose(d);
  return rc;
}

static int read_table(hid_t f, const char *name, RunTable *t) {
  int nd; int64_t dims[H5IO_MAXDIM];
  if (h5io_shape(f, name, &nd, dims)) return -1;
  if (nd != 2 || dims[1] != t->ncols) return err_set("checkpoint table '%s' has %lld columns, expected %d", name,
                                                      nd == 2 ? (long long)dims[1] : -1LL, t->ncols);
  double *rows = xmalloc((size_t)(dims[0] * dims[1] + 1) * sizeof(double));
  int rc = h5io_read(f, name, H5T_NATIVE_DOUBLE, rows, (size_t)(dims[0] * dims[1]));
  for (int64_t r = 0; !rc && r < dims[0]; r++) runtable_add(t, rows + r * dims[1]);
  free(rows);
  return rc;
}

/* a dataset written by one process, or in a parallel file by rank 0 for all */
static int put(hid_t f, int rank0, const char *name, hid_t type, int ndim, const int64_t *dims, const void *buf) {
  if (rank0 < 0) return h5io_write(f, name, type, ndim, dims, buf);
  return h5io_write_rows(f, name, type, ndim, dims, 0, rank0 ? dims[0] : 0, buf);
}

/* the block's params, m or v: whole, or the network from rank 0 and each rank's slab */
static int put_block(hid_t f, int rank0, const Checkpoint *c, const char *name, const float *net, const float *tail) {
  int64_t n = (int64_t)c->n_params;
  if (!c->tail_len) return put(f, rank0, name, H5T_NATIVE_FLOAT, 1, &n, net);
  int64_t row0[2] = {0, (int64_t)c->tail_off}, nrows[2] = {rank0 ? (int64_t)c->n_backbone : 0, (int64_t)c->tail_len};
  const void *bufs[2] = {net, tail};
  return h5io_write_pieces(f, name, H5T_NATIVE_FLOAT, 1, &n, 2, row0, nrows, bufs);
}

/* rank0: -1 a serial file; else a parallel one, 1 on rank 0 */
static int write_file(hid_t f, int rank0, const Checkpoint *c) {
  const Adam *o = c->opt;
  int64_t ns[2] = {c->step, 3}, ng = o->ngroups;
  int rc = 0;
  rc |= h5io_set_attr_i64(f, "format_version", CKPT_FORMAT);
  rc |= h5io_set_attr_i64(f, "step", c->step);
  rc |= h5io_set_attr_i64(f, "epoch", c->epoch);
  rc |= h5io_set_attr_i64(f, "step_in_epoch", c->step_in_epoch);
  char hash[24];
  snprintf(hash, sizeof hash, "%016llx", (unsigned long long)c->config_hash);
  rc |= h5io_set_attr_str(f, "config_hash", hash);
  rc |= h5io_set_attr_i64(f, "ranks", c->ranks);
  rc |= h5io_set_attr_f64(f, "train_seconds", c->train_seconds);
  rc |= h5io_set_attr_f64(f, "wall_seconds", c->wall_seconds);
  rc |= put_block(f, rank0, c, "params", c->params, c->tail_params);
  rc |= put_block(f, rank0, c, "adam/m", c->m, c->tail_m);
  rc |= put_block(f, rank0, c, "adam/v", c->v, c->tail_v);
  long t[OPTIM_MAX_GROUPS];
  double lr[OPTIM_MAX_GROUPS];
  int frozen[OPTIM_MAX_GROUPS];
  for (int g = 0; g < o->ngroups; g++) { t[g] = o->groups[g].t; lr[g] = o->groups[g].lr; frozen[g] = o->groups[g].frozen; }
  rc |= put(f, rank0, "adam/t", H5T_NATIVE_LONG, 1, &ng, t);
  rc |= put(f, rank0, "adam/lr", H5T_NATIVE_DOUBLE, 1, &ng, lr);
  rc |= put(f, rank0, "adam/frozen", H5T_NATIVE_INT, 1, &ng, frozen);
  double none = 0;
  rc |= put(f, rank0, "loss_trace", H5T_NATIVE_DOUBLE, 2, ns, c->step ? c->loss_trace : &none);
  rc |= write_table(f, rank0, "metrics", c->metrics);
  rc |= write_table(f, rank0, "timing", c->timing);
  /* last: the mark that everything before it was written */
  if (!rc) rc = h5io_set_attr_i64(f, "complete", 1);
  return rc;
}

static int is_ckpt_name(const char *name, long long *step) {
  return sscanf(name, "step-%lld.h5", step) == 1 && strstr(name, ".h5") && !strstr(name, ".tmp");
}

/* the checkpoint steps in dir, newest first */
static int list_steps(const char *dir, long long *steps, int cap) {
  DIR *dh = opendir(dir);
  if (!dh) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dh)) && n < cap) {
    long long s;
    size_t len = strlen(e->d_name);
    if (len > 3 && !strcmp(e->d_name + len - 3, ".h5") && is_ckpt_name(e->d_name, &s)) steps[n++] = s;
  }
  closedir(dh);
  for (int i = 1; i < n; i++)   /* insertion sort, descending */
    for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) { long long t = steps[j]; steps[j] = steps[j - 1]; steps[j - 1] = t; }
  return n;
}

/* the two newest are kept */
static void prune(const char *dir) {
  long long steps[256];
  int n = list_steps(dir, steps, 256);
  for (int i = 2; i < n; i++) {
    char old[4200];
    snprintf(old, sizeof old, "%s/step-%09lld.h5", dir, steps[i]);
    unlink(old);
  }
}

int checkpoint_save(const char *run_dir, const Checkpoint *c) {
  char dir[4096], path[4200], tmp[4300];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  if (fsutil_mkdir_p(dir) != 0) return -1;
  snprintf(path, sizeof path, "%s/step-%09lld.h5", dir, (long long)c->step);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  hid_t f;
  if (h5io_create(tmp, &f)) return -1;
  int rc = write_file(f, -1, c);
  if (H5Fclose(f) < 0) rc = -1;
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (rc) { unlink(tmp); return err_set("%s: cannot write the checkpoint (disk full?)", tmp); }
  /* unreachable in tests: the rename next to the file just written fails only on a broken file system */
  if (fsutil_commit(tmp, path) != 0) return err_set("cannot move the checkpoint into place: %s", err_msg());
  prune(dir);
  return 0;
}

int checkpoint_save_sharded(const char *run_dir, const Checkpoint *c, MPI_Comm comm) {
  char dir[4096], path[4200], tmp[4300];
  int rank;
  DIST_CHECK(MPI_Comm_rank(comm, &rank));
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  int ok = rank != 0 || fsutil_mkdir_p(dir) == 0, all;
  DIST_CHECK(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm));
  /* unreachable in tests: the trainer has created the run directory before the first step */
  if (!all) return rank == 0 ? -1 : err_set("rank 0 cannot create %s", dir);
  snprintf(path, sizeof path, "%s/step-%09lld.h5", dir, (long long)c->step);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  hid_t f;
  int made = h5io_create_parallel(tmp, comm, &f) == 0;
  DIST_CHECK(MPI_Allreduce(&made, &all, 1, MPI_INT, MPI_MIN, comm));
  /* unreachable in tests: a collective create that fails on some ranks only.
   * The others must not go on into collective writes the failed ones never
   * join; their handle stays open, as closing it is collective too. */
  if (!all) return made ? err_set("%s: another rank could not create it", tmp) : -1;
  int rc = write_file(f, rank == 0, c);
  if (H5Fclose(f) < 0) rc = -1;   /* collective: every rank's slab is on disk after it */
  DIST_CHECK(MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm));
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (all) { if (rank == 0) unlink(tmp); return err_set("%s: cannot write the checkpoint (disk full?)", tmp); }
  if (rank != 0) return 0;
  /* unreachable in tests: the rename next to the file just written fails only on a broken file system */
  if (fsutil_commit(tmp, path) != 0) return err_set("cannot move the checkpoint into place: %s", err_msg());
  prune(dir);
  return 0;
}

/* the attributes: everything a caller checks before it reads the payload */
static int read_header(hid_t f, Checkpoint *c) {
  int64_t complete = 0, v;
  char hash[32];
  if (h5io_attr_i64(f, "complete", &complete) || complete != 1) return err_set("not marked complete");
  if (h5io_attr_i64(f, "format_version", &v) || v != CKPT_FORMAT) return err_set("unknown format version");
  if (h5io_attr_i64(f, "step", &v)) return -1;
  if (v < 0) return err_set("negative step %lld", (long long)v);
  c->step = v;
  if (h5io_attr_i64(f, "epoch", &v)) return -1;
  c->epoch = (int)v;
  if (h5io_attr_i64(f, "step_in_epoch", &v)) return -1;
  c->step_in_epoch = v;
  if (h5io_attr_i64(f, "ranks", &v)) return -1;
  c->ranks = (int)v;
  if (h5io_attr_f64(f, "train_seconds", &c->train_seconds)) return -1;
  if (h5io_attr_f64(f, "wall_seconds", &c->wall_seconds)) return -1;
  if (h5io_attr_str(f, "config_hash", hash, sizeof hash)) return -1;
  c->config_hash = strtoull(hash, NULL, 16);
  return 0;
}

int checkpoint_find_latest(const char *run_dir, int64_t before, int warn, Checkpoint *c, char *path, size_t cap) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  long long steps[256];
  int n = list_steps(dir, steps, 256);
  for (int i = 0; i < n; i++) {
    if (steps[i] >= before) continue;
    snprintf(path, cap, "%s/step-%09lld.h5", dir, steps[i]);
    hid_t f;
    int rc = h5io_open(path, &f);
    if (rc == 0) {
      rc = read_header(f, c);
      H5Fclose(f);
    }
    /* the caller's next `before` is this step: a renamed file whose header is
     * newer than its name would be found again and again */
    if (rc == 0 && c->step != steps[i])
      rc = err_set("its header says step %lld, its name step %lld", (long long)c->step, steps[i]);
    if (rc == 0) return 1;
    if (warn) fprintf(stderr, "warning: checkpoint %s is truncated or corrupt (%s); trying an older one\n", path, err_msg());
  }
  path[0] = 0;
  return 0;
}

/* params, m or v: whole, or the network and this rank's slab */
static int read_block(hid_t f, const char *name, const Checkpoint *c, float *net, float *tail) {
  if (!c->tail_len) return h5io_read(f, name, H5T_NATIVE_FLOAT, net, c->n_params);
  int nd;
  int64_t dims[H5IO_MAXDIM];
  if (h5io_shape(f, name, &nd, dims)) return -1;
  /* unreachable in tests: the header's configuration hash, checked before, fixes the block's length; only a
   * payload corrupted after a complete write differs (the fuzz harness covers the whole-block reader) */
  if (nd != 1 || dims[0] != (int64_t)c->n_params)
    return err_set("dataset '%s' holds %lld values, the block has %zu", name, nd == 1 ? (long long)dims[0] : -1LL,
                   c->n_params);
  if (h5io_read_rows(f, name, H5T_NATIVE_FLOAT, 0, (int64_t)c->n_backbone, net)) return -1;
  return h5io_read_rows(f, name, H5T_NATIVE_FLOAT, (int64_t)c->tail_off, (int64_t)c->tail_len, tail);
}

int checkpoint_load(const char *path, Checkpoint *c) {
  runtable_free_rows(c->metrics);
  runtable_free_rows(c->timing);
  hid_t f;
  if (h5io_open(path, &f)) return -1;
  Checkpoint h = *c;
  int rc = read_header(f, &h);
  /* the header the caller checked, and a trace that fits its buffer */
  /* unreachable in tests: another process rewrites the checkpoint between two reads of it */
  if (!rc && (h.step != c->step || h.config_hash != c->config_hash))
    rc = err_set("changed since its header was read (step %lld, then %lld)", (long long)c->step, (long long)h.step);
  if (!rc && c->step > c->trace_cap)
    rc = err_set("holds %lld steps, the loss trace has room for %lld", (long long)c->step, (long long)c->trace_cap);
  Adam *o = c->opt;
  if (!rc) rc = read_block(f, "params", c, c->params, c->tail_params);
  if (!rc) rc = read_block(f, "adam/m", c, c->m, c->tail_m);
  if (!rc) rc = read_block(f, "adam/v", c, c->v, c->tail_v);
  long t[OPTIM_MAX_GROUPS];
  double lr[OPTIM_MAX_GROUPS];
  int frozen[OPTIM_MAX_GROUPS];
  if (!rc) rc = h5io_read(f, "adam/t", H5T_NATIVE_LONG, t, (size_t)o->ngroups);
  if (!rc) rc = h5io_read(f, "adam/lr", H5T_NATIVE_DOUBLE, lr, (size_t)o->ngroups);
  if (!rc) rc = h5io_read(f, "adam/frozen", H5T_NATIVE_INT, frozen, (size_t)o->ngroups);
  for (int g = 0; !rc && g < o->ngroups; g++) { o->groups[g].t = t[g]; o->groups[g].lr = lr[g]; o->groups[g].frozen = frozen[g]; }
  if (!rc) rc = h5io_read(f, "loss_trace", H5T_NATIVE_DOUBLE, c->loss_trace, (size_t)c->step * 3);
  if (!rc) rc = read_table(f, "metrics", c->metrics);
  if (!rc) rc = read_table(f, "timing", c->timing);
  H5Fclose(f);
  if (rc) {
    runtable_free_rows(c->metrics);
    runtable_free_rows(c->timing);
  }
  return rc;
}

int checkpoint_remove_partial(const char *run_dir) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  DIR *dh = opendir(dir);
  if (!dh) return 0;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(dh))) {
    long long s;
    size_t len = strlen(e->d_name);
    if (len < 8 || strcmp(e->d_name + len - 7, ".h5.tmp") || sscanf(e->d_name, "step-%lld.h5", &s) != 1) continue;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    removed += unlink(p) == 0;
  }
  closedir(dh);
  return removed;
}
