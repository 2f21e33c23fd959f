/* dist.h: the MPI side of a run: ranks, the node-local thread budget, the
 * checked MPI discipline, collective verdicts and rank-0 logging (the
 * gradient reduction of a step is the reducer's, include/reducer.h).
 *
 *   Dist d;
 *   dist_init(&d, &argc, &argv);                 // MPI_Init (works without mpirun too)
 *   dist_threads(&d, requested);                 // OpenMP + OpenBLAS threads for this rank
 *   dist_set_timeout(&d, 600);                   // a call blocked 600 s ends the job
 *   if (!dist_agree(&d, local_ok)) { ...every rank takes the same exit... }
 *   dist_allreduce_sum(&d, buf, n);              // in place
 *   dist_finalize(&d);
 *
 * Error discipline (docs/contributing.md 3): a local, unrecoverable failure goes
 * through CHECK (common.h), which MPI_Aborts every rank; a failure that every
 * rank sees the same way returns a status that every rank acts on; a failure
 * some ranks may see alone (a missing file, a NaN) is first agreed on with
 * dist_agree, so no rank waits for a partner that has left. A crash or a
 * rank that stops responding still ends the job: dist_init's signal handlers
 * and the watchdog (docs/contributing.md 3.6).
 */
#ifndef PROXYGML_DIST_H
#define PROXYGML_DIST_H

#include <mpi.h>
#include <stddef.h>

#include "common.h"

/* Every MPI call of the project goes through this: a failed call is a local,
 * unrecoverable failure (CHECK: one line naming the call, then MPI_Abort),
 * and a call that blocks longer than the watchdog's timeout ends the job
 * (dist_set_timeout).
 * unreachable in tests: MPI_ERRORS_ARE_FATAL, the default, aborts inside a failing call before it returns */
#define DIST_CHECK(call)                                                                         \
  do {                                                                                           \
    dist_watch_begin(#call, __func__);                                                           \
    int rc_ = (call);                                                                            \
    dist_watch_end();                                                                            \
    CHECK(rc_ == MPI_SUCCESS, "%s failed (MPI error %d)", #call, rc_);                           \
  } while (0)

typedef struct {
  int rank, size;
  MPI_Comm comm;        /* MPI_COMM_WORLD */
  int local_rank, local_size;   /* within the node (shared-memory communicator) */
  int threads;          /* threads per rank chosen by dist_threads */
  int bound_cpus;       /* CPUs in this rank's affinity mask */
  int timeout;          /* seconds one MPI call may block (dist_set_timeout); 0 = no watchdog */
} Dist;

/* MPI_Init, and the handlers of fatal signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * SIGABRT) in place of Open MPI's: one line "proxygml: [rank r] fatal signal
 * SIGSEGV (...)" written with write(2), then the default action, so the rank
 * dies at once and mpirun ends the job (docs/contributing.md 3.6). */
void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(Dist *d);
/* The watchdog: from now on an MPI call made through DIST_CHECK that has not
 * returned after `seconds` writes "proxygml: [rank r] watchdog: MPI_Allreduce
 * in dist_agree has not returned after N s ..." and ends this process with
 * exit code DIST_EXIT_HUNG, without MPI_Finalize, which makes mpirun kill the
 * other ranks. Time during which this process was stopped (SIGSTOP, a
 * suspended job) does not count. 0 turns it off; so does a single rank. Not
 * collective, but every rank sets the same value. Returns the previous timeout, so that a wait known to be long can be
 * exempted: `int t = dist_set_timeout(d, 0); ...; dist_set_timeout(d, t);`. */
int dist_set_timeout(Dist *d, int seconds);
enum { DIST_EXIT_HUNG = 3 };   /* the trainer's "the training failed" */
/* used by DIST_CHECK: the call text and function are string literals */
void dist_watch_begin(const char *call, const char *func);
void dist_watch_end(void);
/* Threads for this rank: `requested` if > 0, else OMP_NUM_THREADS if set,
 * else the CPUs this rank is bound to when bound, else cores / ranks on the
 * node (so ranks x threads <= cores). Sets OpenMP and OpenBLAS; returns it. */
int dist_threads(Dist *d, int requested);
/* 1 if `ok` on every rank (a logical AND over ranks) */
int dist_agree(const Dist *d, int ok);
/* lowest rank whose `bad` is nonzero, or -1: who to name in the message */
int dist_first_failing(const Dist *d, int bad);
/* the collective verdict on a local `ok`: 1 if every rank is ok; else 0 on
 * every rank, and the lowest failing rank prints "who: [rank r] err_msg()"
 * (no rank prefix on one rank): one line, once */
int dist_verdict(const Dist *d, int ok, const char *who);
void dist_allreduce_sum(const Dist *d, float *buf, size_t n);
void dist_allreduce_sum_f64(const Dist *d, double *buf, size_t n);
void dist_bcast(const Dist *d, void *buf, size_t bytes);
/* printf on rank 0 only, to stdout, flushed */
void dist_log(const Dist *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
