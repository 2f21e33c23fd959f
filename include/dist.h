/* dist.h: the MPI side of a run: ranks, the node-local thread budget, the
 * one gradient allreduce, collective verdicts and rank-0 logging.
 *
 *   Dist d;
 *   dist_init(&d, &argc, &argv);                 // MPI_Init (works without mpirun too)
 *   dist_threads(&d, requested);                 // OpenMP + OpenBLAS threads for this rank
 *   if (!dist_agree(&d, local_ok)) { ...every rank takes the same exit... }
 *   dist_allreduce_sum(&d, grads, n);            // in place, one call per step
 *   dist_finalize(&d);
 *
 * Error discipline (docs/contributing.md 3): a local, unrecoverable failure goes
 * through CHECK (common.h), which MPI_Aborts every rank; a failure that every
 * rank sees the same way returns a status that every rank acts on; a failure
 * some ranks may see alone (a missing file, a NaN) is first agreed on with
 * dist_agree, so no rank waits for a partner that has left.
 */
#ifndef PROXYGML_DIST_H
#define PROXYGML_DIST_H

#include <mpi.h>
#include <stddef.h>

#include "common.h"

/* Every MPI call of the project goes through this: a failed call is a local,
 * unrecoverable failure (CHECK: one line naming the call, then MPI_Abort). */
#define DIST_CHECK(call) \
  do { int rc_ = (call); CHECK(rc_ == MPI_SUCCESS, "%s failed (MPI error %d)", #call, rc_); } while (0)

typedef struct {
  int rank, size;
  MPI_Comm comm;        /* MPI_COMM_WORLD */
  int local_rank, local_size;   /* within the node (shared-memory communicator) */
  int threads;          /* threads per rank chosen by dist_threads */
  int bound_cpus;       /* CPUs in this rank's affinity mask */
} Dist;

void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(Dist *d);
/* Threads for this rank: `requested` if > 0, else OMP_NUM_THREADS if set,
 * else the CPUs this rank is bound to when bound, else cores / ranks on the
 * node (so ranks x threads <= cores). Sets OpenMP and OpenBLAS; returns it. */
int dist_threads(Dist *d, int requested);
/* 1 if `ok` on every rank (a logical AND over ranks) */
int dist_agree(const Dist *d, int ok);
/* lowest rank whose `bad` is nonzero, or -1: who to name in the message */
int dist_first_failing(const Dist *d, int bad);
void dist_allreduce_sum(const Dist *d, float *buf, size_t n);
void dist_allreduce_sum_f64(const Dist *d, double *buf, size_t n);
void dist_bcast(const Dist *d, void *buf, size_t bytes);
/* printf on rank 0 only, to stdout, flushed */
void dist_log(const Dist *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
