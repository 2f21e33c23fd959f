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

enum { TRAIN_EXIT_OK = 0, TRAIN_EXIT_BAD_INPUT = 2, TRAIN_EXIT_FAILED = 3, TRAIN_EXIT_REQUEUE = 75 };

int train_cmd_train(int argc, char **argv);

#endif
