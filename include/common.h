/* common.h: what every module needs: fatal checks, checked allocation, a
 * per-process error message for recoverable failures, mkdir -p, and a wall clock.
 *
 * Error discipline (docs/contributing.md 3, "no rank may hang"):
 *   - CHECK(cond, fmt, ...): local and unrecoverable (allocation, a failed
 *     library call). Prints "[rank r] file:line: message" and aborts every
 *     rank through MPI_Abort when MPI is up, exit(1) otherwise.
 *   - Functions that read files or parse input return int status: 0 = ok,
 *     -1 = failed, with a one-line reason in err_msg(). The caller decides
 *     (and under MPI agrees with the other ranks) what happens next.
 */
#ifndef PROXYGML_COMMON_H
#define PROXYGML_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CHECK(cond, ...) \
  do { if (!(cond)) common_die(__FILE__, __LINE__, __VA_ARGS__); } while (0)

_Noreturn void common_die(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void *xmalloc(size_t bytes);                 /* never returns NULL */
void *xcalloc(size_t count, size_t size);    /* zeroed, never NULL */
float *xmalloc_f32(size_t count);            /* 64-byte aligned, uninitialised */
double *xmalloc_f64(size_t count);           /* 64-byte aligned, uninitialised */

/* recoverable errors: set the message (printf-style) and return -1; err_msg()
 * may be one of the arguments, to put context in front of a reason */
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *err_msg(void);

double now_sec(void);                        /* monotonic wall clock, seconds */

/* A hot loop of our own, compiled for the portable baseline (x86-64-v2) and
 * again for x86-64-v3 and -v4; the loader picks the best the CPU runs. The
 * loops are written so that the three give the same results except where an
 * explicit `omp simd` reduction lets the vector width set the summation order.
 * Without multi-versioning (-Dnative=true, other CPUs) it is nothing. */
#if defined(PROXYGML_MULTIVERSION)
#define PROXYGML_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PROXYGML_HOT
#endif

#endif
