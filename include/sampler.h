/* sampler.h: which samples each rank trains on at each step.
 *
 * One permutation of the n training rows per epoch (seeded, the same on
 * every rank, or read from an order file) cuts the epoch into global
 * batches of G rows; rank r trains on positions [r B, (r+1) B) of each,
 * B = G / P. Each rank holds only its shard of the rows, so the owners send
 * the rows a rank needs in one MPI_Alltoallv per step: any rank count sees
 * the same samples at the same step.
 *
 *   Sampler s;
 *   sampler_init(&s, &dist, &train_shard, train_labels, G);
 *   sampler_load_orders(&s, "order.h5", epochs);      // optional: fixed orders
 *   sampler_epoch(&s, epoch, seed);
 *   sampler_batch(&s, step, x, y);                    // x: B x row_size, y: B
 *   sampler_free(&s);
 *
 * The shard of rank r of n rows is [n r / P, n (r+1) / P): sampler_shard().
 */
#ifndef PROXYGML_SAMPLER_H
#define PROXYGML_SAMPLER_H

#include "dataset.h"
#include "dist.h"

#include <stdint.h>

typedef struct {
  const Dist *d;
  const DatasetSplit *shard;   /* this rank's training rows (borrowed) */
  const int32_t *labels;       /* n: every training label (borrowed) */
  int64_t n;                   /* training rows in all */
  int G, B;                    /* global and per-rank batch */
  size_t row_bytes;            /* bytes of one stored row */
  int *perm;                   /* n: the epoch's order */
  int *orders;                 /* epochs x n from an order file, or NULL: seeded shuffles */
  int *counts, *displs, *rcounts, *rdispls;   /* P each: Alltoallv bookkeeping, in bytes */
  int *cursor;                 /* P: rows received from each owner */
  uint8_t *sendbuf, *recvbuf, *rows;          /* G, B, B rows */
  int *order;                  /* B: recvbuf row of batch position q */
  int *iota;                   /* B: 0..B-1 */
} Sampler;

/* the rows [*begin, *begin + *count) of n that rank `rank` of `size` holds */
void sampler_shard(int64_t n, int rank, int size, int64_t *begin, int64_t *count);

void sampler_init(Sampler *s, const Dist *d, const DatasetSplit *shard, const int32_t *labels, int G);
void sampler_free(Sampler *s);
/* dataset `order` of path: at least `epochs` rows of n, each a permutation
 * of the training rows (kept: epochs x n ints) */
int sampler_load_orders(Sampler *s, const char *path, int epochs);
/* the permutation of 1-based `epoch`: the order file's row, or seeded */
void sampler_epoch(Sampler *s, int epoch, uint64_t seed);
/* this rank's B rows of global batch `step` of the epoch, as network input
 * (x: B x row_size) and labels (y: B) */
void sampler_batch(Sampler *s, int64_t step, float *x, int32_t *y);

#endif
