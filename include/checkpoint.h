/* checkpoint.h: training state on disk, for exact resume.
 *
 * A checkpoint is DIR/checkpoints/step-<step>.h5 holding everything the
 * trajectory depends on: the parameter block, Adam's moments and per-group
 * step counts and learning rates, the position of the sampler (epoch and step
 * within it; each epoch's permutation is a function of the seed and the
 * epoch), the loss trace and the metrics and timing tables so far, the
 * configuration hash and the rank count. It is written by rank 0 (the state
 * is identical on every rank) to a temporary file, flushed with fsync,
 * marked complete by its last attribute, and renamed into place; the two
 * newest are kept. A reader takes the newest complete one and falls back to
 * the previous one when the newest is truncated or corrupt.
 */
#ifndef PROXYGML_CHECKPOINT_H
#define PROXYGML_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"
#include "runfile.h"

typedef struct {
  int64_t step;            /* steps done */
  int epoch;               /* the epoch the next step belongs to (1-based) */
  int64_t step_in_epoch;   /* steps of that epoch already done */
  uint64_t config_hash;
  int ranks;
  double train_seconds;
  double wall_seconds;     /* of the run's earlier sessions and this one so far */
  size_t n_params;
  float *params;           /* n_params */
  Adam *opt;               /* moments (n_params each) and groups */
  double *loss_trace;      /* step x 3 */
  RunTable *metrics, *timing;
} Checkpoint;

/* atomically writes DIR/checkpoints/step-<step>.h5 and keeps the two newest */
int checkpoint_save(const char *run_dir, const Checkpoint *c);
/* Loads the newest complete checkpoint of run_dir into c (buffers of c must
 * be sized: params and opt for n_params, loss_trace for the run's steps; the
 * tables are appended to). Returns 1 if one was loaded, 0 if there is none,
 * -1 on error. Corrupt newer checkpoints are skipped with a warning on
 * stderr; `used` gets the path of the one loaded. */
int checkpoint_load_latest(const char *run_dir, Checkpoint *c, char *used, size_t cap);

#endif
