/* runfile.c: writes DIR/run.h5 atomically (see include/runfile.h and
 * docs/run-file.md for the schema). */
#include "runfile.h"

#include "fsutil.h"

#include "common.h"
#include "config.h"
#include "h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void runtable_init(RunTable *t, int ncols, const char *const *names) {
  CHECK(ncols >= 1 && ncols <= RUNTABLE_MAXCOLS, "runtable_init: %d columns", ncols);
  memset(t, 0, sizeof *t);
  t->ncols = ncols;
  for (int c = 0; c < ncols; c++) snprintf(t->names[c], sizeof t->names[c], "%s", names[c]);
}

void runtable_add(RunTable *t, const double *row) {
  if (t->nrows == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 16;
    t->rows = realloc(t->rows, (size_t)t->cap * t->ncols * sizeof(double));
    /* unreachable in tests: allocation failure */
    CHECK(t->rows, "out of memory growing a table");
  }
  memcpy(t->rows + (size_t)t->nrows * t->ncols, row, (size_t)t->ncols * sizeof(double));
  t->nrows++;
}

int runtable_col(const RunTable *t, const char *name) {
  for (int c = 0; c < t->ncols; c++)
    if (!strcmp(t->names[c], name)) return c;
  return -1;
}

void runtable_free_rows(RunTable *t) {
  free(t->rows);
  t->rows = NULL;
  t->nrows = t->cap = 0;
}

void runtable_free(RunTable *t) {
  free(t->rows);
  memset(t, 0, sizeof *t);
}

void runfile_timestamp(char *buf) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* a table as a group with one 1-D dataset per column (what h5py and pandas
 * read most easily), column order in the attribute "columns" */
static int write_table(hid_t f, const char *group, const RunTable *t, const Dist *d) {
  hid_t g = H5Gcreate2(f, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (g < 0) return err_set("cannot create group '%s'", group);
  int rc = 0;
  double *col = xmalloc((size_t)(t->nrows ? t->nrows : 1) * sizeof(double));
  char cols[RUNTABLE_MAXCOLS * 33] = "";
  for (int c = 0; c < t->ncols && !rc; c++) {
    for (int r = 0; r < t->nrows; r++) col[r] = t->rows[(size_t)r * t->ncols + c];
    int64_t n = t->nrows;
    rc = h5io_write_rows(g, t->names[c], H5T_NATIVE_DOUBLE, 1, &n, 0, d->rank == 0 ? n : 0, col);
    strcat(cols, c ? "," : "");
    strcat(cols, t->names[c]);
  }
  if (!rc) rc = h5io_set_attr_str(g, "columns", cols);
  free(col);
  H5Gclose(g);
  return rc;
}

static int write_all(hid_t f, const RunSnapshot *s, const Dist *d) {
  hid_t root = f;
  int rc = 0;
  int64_t M = (int64_t)s->C * s->N;
  /* attributes: who, what, when */
  rc |= h5io_set_attr_str(root, "format", "proxygml-run");
  rc |= h5io_set_attr_i64(root, "format_version", 1);
  rc |= h5io_set_attr_str(root, "version", PROXYGML_VERSION);
  rc |= h5io_set_attr_str(root, "status", s->status);
  rc |= h5io_set_attr_str(root, "message", s->message ? s->message : "");
  rc |= h5io_set_attr_str(root, "command_line", s->command_line);
  rc |= h5io_set_attr_str(root, "start_time", s->start_time);
  rc |= h5io_set_attr_str(root, "end_time", s->end_time ? s->end_time : "");
  rc |= h5io_set_attr_str(root, "data_path", s->data_path ? s->data_path : "");
  rc |= h5io_set_attr_str(root, "cwd", s->cwd ? s->cwd : "");
  rc |= h5io_set_attr_f64(root, "wall_seconds", s->wall_seconds);
  if (s->class_names && s->n_classes > 0) rc |= h5io_set_attr_strs(root, "class_names", s->class_names, s->n_classes);
  rc |= h5io_set_attr_i64(root, "ranks", s->ranks);
  rc |= h5io_set_attr_i64(root, "threads", s->threads);
  rc |= h5io_set_attr_str(root, "loss", cfg_loss_name(s->cfg->loss));   /* its hyper-parameters: config/ */
  rc |= h5io_set_attr_i64(root, "C", s->C);
  rc |= h5io_set_attr_i64(root, "N", s->N);
  rc |= h5io_set_attr_i64(root, "K", s->K);
  rc |= h5io_set_attr_i64(root, "D", s->D);
  rc |= h5io_set_attr_i64(root, "n_train", s->n_train);
  rc |= h5io_set_attr_i64(root, "n_test", s->n_test);
  rc |= h5io_set_attr_i64(root, "n_params", s->n_params);
  rc |= h5io_set_attr_i64(root, "steps_done", s->steps_done);
  rc |= h5io_set_attr_i64(root, "epochs_done", s->epochs_done);
  rc |= h5io_set_attr_f64(root, "peak_rss_mib", s->peak_rss_mib);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (rc) return err_set("cannot write the run attributes");
  hid_t g = H5Gcreate2(f, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (g < 0) return err_set("cannot create group 'config'");
  rc = cfg_write_attrs(s->cfg, g);
  H5Gclose(g);
  if (rc) return -1;
  if (write_table(f, "metrics", s->metrics, d) || write_table(f, "timing", s->timing, d)) return -1;

  /* test embeddings and labels: each rank its rows, collectively */
  int64_t ed[2] = {s->n_test, s->D};
  if (s->emb) {
    if (h5io_write_rows(f, "embeddings/test", H5T_NATIVE_FLOAT, 2, ed, s->emb_row0, s->emb_rows, s->emb) ||
        h5io_write_rows(f, "embeddings/labels", H5T_NATIVE_INT, 1, ed, s->emb_row0, s->emb_rows, s->emb_labels))
      return -1;
    if (s->sub_idx) {
      int64_t sd[2] = {s->n_test, s->K};
      if (h5io_write_rows(f, "subgraph/proxies", H5T_NATIVE_INT, 2, sd, s->emb_row0, s->emb_rows, s->sub_idx) ||
          h5io_write_rows(f, "subgraph/similarity", H5T_NATIVE_FLOAT, 2, sd, s->emb_row0, s->emb_rows, s->sub_sim))
        return -1;
    }
  }
  /* the per-step loss and the final parameters (replicated: rank 0 writes) */
  int64_t ns = s->steps_done, np = s->n_params;
  double *col = xmalloc((size_t)(ns ? ns : 1) * sizeof(double));
  static const char *const trace[3] = {"trace/loss", "trace/loss_cls", "trace/loss_reg"};
  for (int k = 0; k < 3 && !rc; k++) {
    for (int64_t i = 0; i < ns; i++) col[i] = s->loss_trace[3 * i + k];
    rc = h5io_write_rows(f, trace[k], H5T_NATIVE_DOUBLE, 1, &ns, 0, d->rank == 0 ? ns : 0, col);
  }
  free(col);
  if (rc) return -1;
  /* the proxies: replicated, rank 0 writes them all; sharded, each rank its rows */
  const int sharded = s->proxy_rows > 0;
  const int64_t D = s->D, p0 = sharded ? s->proxy_row0 : 0, pn = sharded ? s->proxy_rows : d->rank == 0 ? M : 0;
  if (!sharded) rc = h5io_write_rows(f, "model/parameters", H5T_NATIVE_FLOAT, 1, &np, 0, d->rank == 0 ? np : 0, s->params);
  else {
    int64_t row0[2] = {0, s->n_backbone + p0 * D}, nrows[2] = {d->rank == 0 ? s->n_backbone : 0, pn * D};
    const void *bufs[2] = {s->params, s->params + s->n_backbone};
    rc = h5io_write_pieces(f, "model/parameters", H5T_NATIVE_FLOAT, 1, &np, 2, row0, nrows, bufs);
  }
  if (rc) return -1;
  /* proxies (M x D raw, one per row), their classes, their test usage */
  int64_t pd[2] = {M, D};
  int *cls = xmalloc((size_t)(pn ? pn : 1) * sizeof(int));
  for (int64_t j = 0; j < pn; j++) cls[j] = (int)((p0 + j) / s->N);
  rc = h5io_write_rows(f, "proxies/values", H5T_NATIVE_FLOAT, 2, pd, p0, pn, s->proxies);
  if (!rc) rc = h5io_write_rows(f, "proxies/classes", H5T_NATIVE_INT, 1, pd, p0, pn, cls);
  if (!rc && s->sel_count) rc = h5io_write_rows(f, "proxies/selection_count", H5T_NATIVE_INT64, 1, pd, p0, pn, s->sel_count);
  free(cls);
  return rc;
}

int runfile_write(const RunSnapshot *s, const Dist *d) {
  char tmp[CFG_PATH_MAX + 64];
  snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
  hid_t f;
  int ok = h5io_create_parallel(tmp, d->comm, &f) == 0;
  if (!dist_agree(d, ok)) {
    if (ok) H5Fclose(f);
    /* unreachable in tests: needs a file system that fails on some ranks only; on one node all ranks see it alike */
    return ok ? err_set("%s: another rank could not create the run file", tmp) : -1;
  }
  int rc = write_all(f, s, d);
  /* metadata writes are collective, so a failure is seen by every rank alike */
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (H5Fclose(f) < 0 && !rc) rc = err_set("%s: closing the run file failed (disk full?)", tmp);
  /* unreachable in tests: needs a file system that fails on some ranks only; on one node all ranks see it alike */
  if (!dist_agree(d, rc == 0)) return rc ? -1 : err_set("%s: another rank failed writing the run file", tmp);
  if (d->rank == 0) rc = fsutil_commit(tmp, s->path);   /* the file is complete: one rank renames it */
  if (!dist_agree(d, rc == 0)) return -1;
  return 0;
}
