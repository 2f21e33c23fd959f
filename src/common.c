/* common.c: fatal checks, checked allocation, the error message, mkdir -p, the clock. */
#include "common.h"

#include <errno.h>
#include <mpi.h>
#include <stdarg.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static char g_err[1024];

_Noreturn void common_die(const char *file, int line, const char *fmt, ...) {
  int up = 0, down = 0, rank = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (up && !down) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[rank %d] %s:%d: %s\n", rank, file, line, msg);
  fflush(stderr);
  if (up && !down) MPI_Abort(MPI_COMM_WORLD, 1);   /* takes every rank down */
  exit(1);
}

void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  CHECK(p, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  CHECK(p, "out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

static void *xmalloc_aligned(size_t bytes) {
  void *p = NULL;
  size_t rounded = (bytes + 63) / 64 * 64;
  CHECK(posix_memalign(&p, 64, rounded ? rounded : 64) == 0, "out of memory allocating %zu bytes", bytes);
  return p;
}

float *xmalloc_f32(size_t count) { return xmalloc_aligned(count * sizeof(float)); }
double *xmalloc_f64(size_t count) { return xmalloc_aligned(count * sizeof(double)); }

int err_set(const char *fmt, ...) {
  char buf[sizeof g_err];   /* err_msg() may be an argument: add context to the reason below */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  memcpy(g_err, buf, sizeof g_err);
  return -1;
}

const char *err_msg(void) { return g_err[0] ? g_err : "unknown error"; }

double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
