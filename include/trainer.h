/* trainer.h: data-parallel training of an embedding network with the
 * ProxyGML loss or a baseline proxy loss (include/loss.h), with evaluation,
 * the run file, checkpoints and exact resume, and preemption by SIGUSR1/SIGTERM. `proxygml train` (tools/train.c)
 * is its command line.
 *
 *   trainer_catch_signals();                  // before anything slow
 *   dist_init(&d, &argc, &argv);
 *   TrainerArgs a = {...parsed on every rank...};
 *   int exit_code = trainer_main(&d, &a);     // setup, the loop, the run file
 *
 * Each rank holds a shard of the training rows and a replica of the network
 * and the proxies in one flat block [network | proxies]. One permutation per
 * epoch defines global batches of `batch` samples; rank r trains on slice r
 * of every global batch (include/sampler.h), so any rank count sees the same
 * samples at every step. The step:
 *
 *   sampler_batch        the rank's slice of the global batch
 *   model_forward        raw embeddings
 *   loss_forward         loss (ProxyGML or a baseline, include/loss.h), global-batch divisor
 *   loss_backward        d loss / d embeddings, d loss / d proxies
 *   model_backward       d loss / d network parameters
 *   dist_allreduce_sum   ONE call over the flat gradient block (+ the loss)
 *   adam_step            identical on every rank
 *
 * Exit codes: 0 complete, 2 bad input (config, data, output directory),
 * 3 the training failed (non-finite loss, I/O error, a rank that stopped
 * responding), 75 stopped by a signal to be requeued (docs/run-file.md).
 */
#ifndef PROXYGML_TRAINER_H
#define PROXYGML_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "dataset.h"
#include "dist.h"

enum { TRAINER_EXIT_OK = 0, TRAINER_EXIT_BAD_INPUT = 2, TRAINER_EXIT_FAILED = 3, TRAINER_EXIT_REQUEUE = 75 };

/* what the command line decides */
typedef struct {
  Config cfg;                  /* parsed and validated; rank 0's is broadcast */
  char out_dir[CFG_PATH_MAX];  /* DIR: DIR/run.h5, DIR/checkpoints */
  char cmdline[4096];          /* recorded in the run file */
  int force;                   /* replace an existing run */
  int resume;                  /* continue from DIR's newest checkpoint */
} TrainerArgs;

/* SIGUSR1 and SIGTERM finish the current step, checkpoint and exit
 * TRAINER_EXIT_REQUEUE; installed first, so that a preemption during a slow
 * setup does not kill the ranks */
void trainer_catch_signals(void);
/* the whole run on every rank; returns the exit code */
int trainer_main(Dist *d, const TrainerArgs *a);

/* the sizes of a run, from its configuration and its dataset's splits */
typedef struct {
  int loss;                    /* CfgLoss */
  int C, N, M, K, D;           /* N: proxies per class of the loss; K: ProxyGML's, N for the baselines */
  int G;                       /* global batch */
  int64_t steps_per_epoch;
} TrainerSizes;

/* What `proxygml train` checks before it reads a row, and `proxygml sweep
 * plan` for every task: the splits hold the same kind of rows, C covers the
 * training labels, 1 <= K <= C*N, the batch fits the training split (and
 * divides over `ranks` ranks; 0 = not checked), the test split can be searched
 * (2 rows or more, one per rank, more than the largest recall k), the
 * architecture takes these rows. 0 with *s filled, or -1 with one line. */
int trainer_check_sizes(const Config *c, const DatasetInfo *tr, const DatasetInfo *te, int ranks, TrainerSizes *s);
/* sizes that train but learn nothing (K <= N): 1 and the warning in buf, else 0 */
int trainer_sizes_warning(const TrainerSizes *s, char *buf, size_t cap);

#endif
