/* train.h: `proxygml train`: data-parallel training of an embedding network
 * with the ProxyGML loss, evaluation, and the run file.
 *
 *   proxygml train --config experiments/fmnist_mlp.cfg [--set key=value ...]
 *                  [--out DIR] [--force]
 *   mpirun -np 2 proxygml train ...            (the same science on 2 ranks)
 *
 * Each rank holds a shard of the training rows and a replica of the network
 * and the proxies. One seeded permutation per epoch defines global batches of
 * `batch` samples; rank r trains on slice r of every global batch (rows it
 * does not hold are sent by their owner), so any rank count sees the same
 * samples at every step. The step is:
 *
 *   train_gather_batch   the rank's slice of the global batch
 *   model_forward        raw embeddings
 *   proxygml_forward     loss, with the global batch size as divisor
 *   proxygml_backward    d loss / d embeddings, d loss / d proxies
 *   model_backward       d loss / d network parameters
 *   dist_allreduce_sum   ONE call over the flat gradient block (+ the loss)
 *   adam_step            identical on every rank
 *
 * Exit codes: 0 complete, 2 bad input (config, data, output directory),
 * 3 the training failed (non-finite loss, I/O error), 75 stopped by a signal
 * to be requeued (see docs/run-file.md).
 */
#ifndef PROXYGML_TRAIN_H
#define PROXYGML_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "dataset.h"

enum { TRAIN_EXIT_OK = 0, TRAIN_EXIT_BAD_INPUT = 2, TRAIN_EXIT_FAILED = 3, TRAIN_EXIT_REQUEUE = 75 };

int train_cmd_train(int argc, char **argv);

/* the sizes of a run, from its configuration and its dataset's splits */
typedef struct {
  int C, N, M, K, D;
  int G;                       /* global batch */
  int64_t steps_per_epoch;
} TrainSizes;

/* What `proxygml train` checks before it reads a row, and `proxygml sweep
 * plan` for every task: the splits hold the same kind of rows, C covers the
 * training labels, 1 <= K <= C*N, the batch fits the training split (and
 * divides over `ranks` ranks; 0 = not checked), the test split can be searched
 * (2 rows or more, one per rank, more than the largest recall k), the
 * architecture takes these rows. 0 with *s filled, or -1 with one line. */
int train_check_sizes(const Config *c, const DatasetInfo *tr, const DatasetInfo *te, int ranks, TrainSizes *s);
/* sizes that train but learn nothing (K <= N): 1 and the warning in buf, else 0 */
int train_sizes_warning(const TrainSizes *s, char *buf, size_t cap);

#endif
