/* recorder.h: what a training run records as it goes, by named column:
 * the metrics table (one row per evaluation), the timing table (one row per
 * trained epoch) and the loss trace (every step). The run file and the
 * checkpoints store these tables as they are (include/runfile.h).
 *
 *   Recorder r;
 *   recorder_init(&r, ks, nk, total_steps, phase_names, nphase);
 *   recorder_trace(&r, step, loss3);                       // every step
 *   recorder_add_eval(&r, &(RecorderEval){.epoch = e, ...}, &metrics);
 *   double map = recorder_get(&r, -1, "map_at_r");         // -1: the newest row
 *   recorder_print_summary(&r, stdout);
 *   recorder_free(&r);
 *
 * Metrics columns: epoch, step, loss, loss_cls, loss_reg, lr, proxy_lr,
 * train_seconds, eval_seconds, recall_at_<k> for each k, map_at_r,
 * r_precision, nmi. Timing columns: epoch, samples_per_second, then the
 * seconds of each phase.
 */
#ifndef PROXYGML_RECORDER_H
#define PROXYGML_RECORDER_H

#include "metrics.h"
#include "runfile.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
  RunTable metrics, timing;
  double *loss_trace;          /* trace_cap x 3: loss, loss_cls, loss_reg of every step */
  int64_t trace_cap;
  int nk, ks[METRICS_MAXK];
} Recorder;

/* one evaluation's row, beside the metrics themselves */
typedef struct {
  int epoch;                   /* 0 = untrained */
  int64_t step;
  const double *loss;          /* 3: the mean loss terms of the epoch, or NULL (NaN) */
  double lr, proxy_lr, train_seconds, eval_seconds;
} RecorderEval;

void recorder_init(Recorder *r, const int *ks, int nk, int64_t trace_cap, const char *const *phases, int nphase);
void recorder_free(Recorder *r);
void recorder_trace(Recorder *r, int64_t step, const float *loss /* 3 */);
/* the mean loss terms of the steps [s0, s1) */
void recorder_trace_mean(const Recorder *r, int64_t s0, int64_t s1, double mean[3]);
void recorder_add_eval(Recorder *r, const RecorderEval *e, const Metrics *m);
void recorder_add_timing(Recorder *r, int epoch, double samples_per_second, const double *phase_seconds);
/* the value of `column` in metrics row `row` (negative: from the end) */
double recorder_get(const Recorder *r, int row, const char *column);
/* the newest evaluation in one line: R@k1, MAP@R, NMI and its seconds */
void recorder_print_eval(const Recorder *r, FILE *out, const char *prefix);
/* the progress of an epoch: on a terminal that a person watches, a bar
 * redrawn in place; otherwise (a Slurm log, a pipe) plain lines, one a
 * minute and one at the epoch's end. mpirun hands rank 0 a pseudo-terminal
 * even when its own output goes to a file, so under a launcher it is lines
 * unless PROXYGML_PROGRESS=bar; PROXYGML_PROGRESS=lines forces lines. */
void recorder_progress(FILE *out, int epoch, int epochs, int64_t done, int64_t total, double loss,
                       double samples_per_second, double eta_seconds, double t_run, int final);
/* the untrained and the newest evaluation as a table */
void recorder_print_summary(const Recorder *r, FILE *out);

#endif
