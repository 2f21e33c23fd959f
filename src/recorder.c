/* recorder.c: the run's tables by named column (include/recorder.h). */
#include "recorder.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* the metrics columns before recall_at_<k>: the row of a RecorderEval */
static const char *const EVAL_COLS[] = {"epoch", "step", "loss", "loss_cls", "loss_reg", "lr", "proxy_lr",
                                        "train_seconds", "eval_seconds"};
enum { NEVAL_COLS = (int)(sizeof EVAL_COLS / sizeof EVAL_COLS[0]) };

void recorder_init(Recorder *r, const int *ks, int nk, int64_t trace_cap, const char *const *phases, int nphase) {
  memset(r, 0, sizeof *r);
  CHECK(nk >= 1 && nk <= METRICS_MAXK && nphase + 2 <= RUNTABLE_MAXCOLS, "recorder_init: %d ks, %d phases", nk, nphase);
  r->nk = nk;
  memcpy(r->ks, ks, (size_t)nk * sizeof *ks);
  const char *cols[RUNTABLE_MAXCOLS];
  char knames[METRICS_MAXK][32];
  int n = 0;
  for (int c = 0; c < NEVAL_COLS; c++) cols[n++] = EVAL_COLS[c];
  for (int i = 0; i < nk; i++) {
    snprintf(knames[i], sizeof knames[i], "recall_at_%d", ks[i]);
    cols[n++] = knames[i];
  }
  cols[n++] = "map_at_r";
  cols[n++] = "r_precision";
  cols[n++] = "nmi";
  runtable_init(&r->metrics, n, cols);
  const char *tcols[RUNTABLE_MAXCOLS] = {"epoch", "samples_per_second"};
  for (int p = 0; p < nphase; p++) tcols[p + 2] = phases[p];
  runtable_init(&r->timing, nphase + 2, tcols);
  r->trace_cap = trace_cap;
  r->loss_trace = xmalloc((size_t)(trace_cap + 1) * 3 * sizeof(double));
}

void recorder_free(Recorder *r) {
  runtable_free(&r->metrics);
  runtable_free(&r->timing);
  free(r->loss_trace);
  memset(r, 0, sizeof *r);
}

void recorder_trace(Recorder *r, int64_t step, const float *loss) {
  CHECK(step >= 0 && step <= r->trace_cap, "recorder_trace: step %lld beyond %lld", (long long)step,
        (long long)r->trace_cap);
  for (int k = 0; k < 3; k++) r->loss_trace[3 * step + k] = loss[k];
}

void recorder_trace_mean(const Recorder *r, int64_t s0, int64_t s1, double mean[3]) {
  for (int k = 0; k < 3; k++) {
    double sum = 0;
    for (int64_t s = s0; s < s1; s++) sum += r->loss_trace[3 * s + k];
    mean[k] = s1 > s0 ? sum / (double)(s1 - s0) : NAN;
  }
}

void recorder_add_eval(Recorder *r, const RecorderEval *e, const Metrics *m) {
  const double head[NEVAL_COLS] = {e->epoch, (double)e->step, e->loss ? e->loss[0] : NAN, e->loss ? e->loss[1] : NAN,
                                   e->loss ? e->loss[2] : NAN, e->lr, e->proxy_lr, e->train_seconds, e->eval_seconds};
  double row[RUNTABLE_MAXCOLS];
  int c = 0;
  for (int i = 0; i < NEVAL_COLS; i++) row[c++] = head[i];
  for (int i = 0; i < r->nk; i++) row[c++] = m->recall[i];
  row[c++] = m->map_r;
  row[c++] = m->r_precision;
  row[c++] = m->nmi;
  runtable_add(&r->metrics, row);
}

void recorder_add_timing(Recorder *r, int epoch, double samples_per_second, const double *phase_seconds) {
  double row[RUNTABLE_MAXCOLS] = {epoch, samples_per_second};
  for (int p = 2; p < r->timing.ncols; p++) row[p] = phase_seconds[p - 2];
  runtable_add(&r->timing, row);
}

double recorder_get(const Recorder *r, int row, const char *column) {
  int c = runtable_col(&r->metrics, column);
  if (row < 0) row += r->metrics.nrows;
  CHECK(c >= 0 && row >= 0 && row < r->metrics.nrows, "recorder_get: no %s in row %d", column, row);
  return r->metrics.rows[(size_t)row * r->metrics.ncols + c];
}

void recorder_print_eval(const Recorder *r, FILE *out, const char *prefix) {
  char k1[32];
  snprintf(k1, sizeof k1, "recall_at_%d", r->ks[0]);
  fprintf(out, "%sR@%d %.4f  MAP@R %.4f  NMI %.4f  (eval %.1fs)\n", prefix, r->ks[0], recorder_get(r, -1, k1),
          recorder_get(r, -1, "map_at_r"), recorder_get(r, -1, "nmi"), recorder_get(r, -1, "eval_seconds"));
  fflush(out);
}

static void print_row(const Recorder *r, FILE *out, int row) {
  int epoch = (int)recorder_get(r, row, "epoch");
  fprintf(out, "  %-9s%5d", epoch == 0 ? "untrained" : "", epoch);
  for (int c = NEVAL_COLS; c < r->metrics.ncols; c++) fprintf(out, " %9.4f", r->metrics.rows[(size_t)row * r->metrics.ncols + c]);
  fprintf(out, "\n");
}

void recorder_print_summary(const Recorder *r, FILE *out) {
  if (r->metrics.nrows == 0) return;
  fprintf(out, "\n  %-9s%5s", "", "epoch");
  for (int c = NEVAL_COLS; c < r->metrics.ncols; c++) {
    const char *name = r->metrics.names[c];
    char h[32];
    if (!strncmp(name, "recall_at_", 10)) snprintf(h, sizeof h, "R@%s", name + 10);
    else snprintf(h, sizeof h, "%s", !strcmp(name, "map_at_r") ? "MAP@R" : !strcmp(name, "r_precision") ? "RP"
                                     : !strcmp(name, "nmi") ? "NMI" : name);
    fprintf(out, " %9s", h);
  }
  fprintf(out, "\n");
  print_row(r, out, 0);
  if (r->metrics.nrows > 1) print_row(r, out, r->metrics.nrows - 1);
}

static int progress_bar_wanted(FILE *out) {
  const char *want = getenv("PROXYGML_PROGRESS");
  if (want && !strcmp(want, "bar")) return 1;
  if (want && !strcmp(want, "lines")) return 0;
  int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK") || getenv("SLURM_STEP_ID");
  return !launched && isatty(fileno(out));
}

void recorder_progress(FILE *out, int epoch, int epochs, int64_t done, int64_t total, double loss,
                       double samples_per_second, double eta_seconds, double t_run, int final) {
  static double last_plain;
  int tty = progress_bar_wanted(out);
  if (!final && !tty && t_run - last_plain < 60) return;
  if (!tty) last_plain = t_run;
  char bar[31];
  int fill = total ? (int)(30 * done / total) : 30;
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  fprintf(out, "%sepoch %d/%d [%s] %lld/%lld loss %.4f  %.0f samples/s  ETA %d:%02d  (%.0fs)%s", tty ? "\r" : "",
          epoch, epochs, bar, (long long)done, (long long)total, loss, samples_per_second, (int)(eta_seconds / 60),
          (int)fmod(eta_seconds, 60), t_run, final || !tty ? "\n" : "");
  fflush(out);
}
