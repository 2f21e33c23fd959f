/* runfile.h: the run output file DIR/run.h5 (schema in docs/run-file.md).
 *
 * The whole file is rewritten after every epoch and when the run stops, into a
 * temporary file that is then renamed over run.h5, so run.h5 is always a
 * complete, readable HDF5 file: a run killed at any moment leaves the last
 * version, whose `status` is "running" (or "failed"/"preempted"), never a
 * half-written one that claims success.
 *
 *   RunTable t;
 *   runtable_init(&t, ncols, names);     // column names, e.g. "epoch", "loss", ...
 *   runtable_add(&t, row);               // ncols doubles
 *   runfile_write(&snap, &dist);         // collective: every rank calls it
 *
 * Parallel HDF5: every rank passes the same metadata and tables; the test
 * embeddings are written collectively, each rank its own rows.
 */
#ifndef PROXYGML_RUNFILE_H
#define PROXYGML_RUNFILE_H

#include <stdint.h>

#include "cfg.h"
#include "dist.h"

#define RUNTABLE_MAXCOLS 48

typedef struct {
  int ncols, nrows, cap;
  char names[RUNTABLE_MAXCOLS][32];
  double *rows;        /* nrows x ncols */
} RunTable;

void runtable_init(RunTable *t, int ncols, const char *const *names);
void runtable_add(RunTable *t, const double *row);
int runtable_col(const RunTable *t, const char *name);   /* index or -1 */
void runtable_free(RunTable *t);
void runtable_free_rows(RunTable *t);   /* empty it, keeping the columns */

typedef struct {
  const char *path;            /* DIR/run.h5 */
  const Config *cfg;
  const char *status;          /* running | complete | failed | preempted */
  const char *message;         /* why it failed or stopped ("" when none) */
  const char *command_line, *start_time, *end_time;
  int ranks, threads;
  const char *data_path, *cwd;     /* the dataset file, absolute; the working directory */
  double wall_seconds;             /* wall time of the run so far, over all its sessions */
  const char *const *class_names;  /* n_classes names of the dataset's class ids (may be NULL) */
  int n_classes;
  int C, N, K, D;              /* resolved loss sizes */
  int64_t n_train, n_test, n_params, steps_done;
  int epochs_done;
  const RunTable *metrics;     /* one row per evaluation */
  const RunTable *timing;      /* one row per trained epoch */
  /* test embeddings: this rank's rows [emb_row0, emb_row0 + emb_rows) of n_test */
  const float *emb;            /* emb_rows x D, L2-normalised */
  const int *emb_labels;       /* emb_rows */
  int64_t emb_row0, emb_rows;
  /* the loss of every step so far, and all parameters (identical on every rank) */
  const double *loss_trace;    /* steps_done x 3: loss, loss_cls, loss_reg */
  const float *params;         /* n_params: the flat block [backbone | proxies] */
  double peak_rss_mib;         /* largest peak resident memory of any rank */
  /* the proxies, identical on every rank */
  const float *proxies;        /* M x D raw */
  /* sharded proxies (proxy_rows > 0): proxies holds this rank's rows
   * [proxy_row0, proxy_row0 + proxy_rows), params the network [0,
   * n_backbone) followed by them; each rank writes its rows */
  int64_t proxy_row0, proxy_rows, n_backbone;
  /* the test subgraphs of this rank's rows (NULL to skip): K proxies each */
  const int *sub_idx;          /* emb_rows x K */
  const float *sub_sim;        /* emb_rows x K */
  const int64_t *sel_count;    /* M: how often each proxy is in a test subgraph (all ranks summed) */
} RunSnapshot;

/* collective; 0 or -1 with err_msg() (on the ranks that saw the failure) */
int runfile_write(const RunSnapshot *s, const Dist *d);
/* "YYYY-MM-DDTHH:MM:SSZ" now, into buf (>= 32 bytes) */
void runfile_timestamp(char *buf);

#endif
