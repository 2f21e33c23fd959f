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
 * the previous one when the newest is truncated or corrupt; it reads the
 * header first and the payload only when the caller has accepted the header.
 */
#ifndef PROXYGML_CHECKPOINT_H
#define PROXYGML_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"

#include <mpi.h>
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
  Adam *opt;               /* groups: step counts, learning rates, freezes */
  float *m, *v;            /* n_params each: Adam's moments of the whole block (opt's own when unsharded) */
  /* proxies sharded by class (tail_len > 0, include/proxyshard.h): the file
   * holds the whole block all the same, but params, m and v cover only the
   * network [0, n_backbone) (m, v whole on rank 0 when saving) and each rank
   * writes and reads its own slab [tail_off, tail_off + tail_len) from the
   * tail buffers; so a run resumes with any rank count, sharded or not */
  size_t n_backbone, tail_off, tail_len;
  float *tail_params, *tail_m, *tail_v;
  double *loss_trace;      /* step x 3 */
  int64_t trace_cap;       /* steps loss_trace has room for (checkpoint_load) */
  RunTable *metrics, *timing;
} Checkpoint;

/* atomically writes DIR/checkpoints/step-<step>.h5 and keeps the two newest */
int checkpoint_save(const char *run_dir, const Checkpoint *c);
/* the same, collective over comm, for a checkpoint with a sharded tail: one
 * parallel file, each rank its slab, rank 0 everything else; the return
 * value is the same on every rank only for failures of the collective
 * write itself, so callers agree on it */
int checkpoint_save_sharded(const char *run_dir, const Checkpoint *c, MPI_Comm comm);
/* The header (step, epoch, step_in_epoch, config_hash, ranks, seconds) of the
 * newest complete checkpoint of run_dir whose step is below `before`
 * (INT64_MAX: any) goes into c, its path into `path`. No payload is read, so
 * the caller checks the configuration and the step range before anything
 * lands in buffers sized for its run. Returns 1 found, 0 none; unreadable
 * ones are skipped (with a warning on stderr if `warn`). */
int checkpoint_find_latest(const char *run_dir, int64_t before, int warn, Checkpoint *c, char *path, size_t cap);
/* The payload of the checkpoint whose header checkpoint_find_latest put in c:
 * params and opt (sized for n_params; with a tail, as described above), the loss trace (refused beyond
 * trace_cap steps), the tables (replaced). 0, or -1 with the reason. */
int checkpoint_load(const char *path, Checkpoint *c);
/* deletes step-*.h5.tmp files in DIR/checkpoints: writes that a crash cut
 * short (a later save would overwrite only its own step's); returns how many */
int checkpoint_remove_partial(const char *run_dir);

#endif
