/* dist.c: MPI ranks, threads per rank, allreduce, agreement (include/dist.h). */
#include "dist.h"

#include "common.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void dist_init(Dist *d, int *argc, char ***argv) {
  memset(d, 0, sizeof *d);
  int up = 0;
  MPI_Initialized(&up);
  if (!up) DIST_CHECK(MPI_Init(argc, argv));
  d->comm = MPI_COMM_WORLD;
  MPI_Comm_rank(d->comm, &d->rank);
  MPI_Comm_size(d->comm, &d->size);
  MPI_Comm node;
  DIST_CHECK(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &d->local_rank);
  MPI_Comm_size(node, &d->local_size);
  MPI_Comm_free(&node);
}

void dist_finalize(Dist *d) {
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (up && !down) MPI_Finalize();
  (void)d;
}

int dist_threads(Dist *d, int requested) {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  int nt;
  if (requested > 0) nt = requested;
  else if (getenv("OMP_NUM_THREADS")) nt = omp_get_max_threads();
  else if (cpus < cores) nt = cpus;   /* mpirun bound this rank: stay on its cores */
  else nt = (int)(cores / d->local_size > 0 ? cores / d->local_size : 1);
  if (nt < 1) nt = 1;
  omp_set_num_threads(nt);
  openblas_set_num_threads(nt);
  d->threads = nt;
  d->bound_cpus = cpus;
  return nt;
}

int dist_agree(const Dist *d, int ok) {
  int mine = ok ? 1 : 0, all = 0;
  DIST_CHECK(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, d->comm));
  return all;
}

int dist_first_failing(const Dist *d, int bad) {
  int mine = bad ? d->rank : INT_MAX, first = INT_MAX;
  DIST_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm));
  return first == INT_MAX ? -1 : first;
}

void dist_allreduce_sum(const Dist *d, float *buf, size_t n) {
  if (d->size == 1) return;
  for (size_t off = 0; off < n; off += (size_t)INT_MAX) {   /* counts are int */
    int cnt = (int)(n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX);
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, d->comm));
  }
}

void dist_allreduce_sum_f64(const Dist *d, double *buf, size_t n) {
  if (d->size == 1) return;
  CHECK(n <= (size_t)INT_MAX, "dist_allreduce_sum_f64: %zu elements", n);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, d->comm));
}

void dist_bcast(const Dist *d, void *buf, size_t bytes) {
  if (d->size == 1) return;
  CHECK(bytes <= (size_t)INT_MAX, "dist_bcast: %zu bytes", bytes);
  DIST_CHECK(MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, d->comm));
}

void dist_log(const Dist *d, const char *fmt, ...) {
  if (d->rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}
