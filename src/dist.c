/* dist.c: MPI ranks, threads per rank, allreduce, agreement, the handlers of
 * fatal signals and the watchdog on MPI calls (include/dist.h). */
#include "dist.h"

#include "common.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ fatal signals */

/* Open MPI's own handler (MCA parameter opal_signal) prints a backtrace with
 * functions that are not async-signal-safe: after "double free or corruption"
 * glibc aborts while holding the allocator's lock, the backtrace may allocate
 * (its first use loads libgcc_s), and then the rank hangs in the handler, and
 * the job with it, until the time limit.
 * Ours only write(2) one line and re-raise with the default action, so the
 * rank dies at once and mpirun ends the job (docs/contributing.md 3.6). They
 * are installed before MPI_Init, where Open MPI leaves them alone (it skips
 * signals that already have a handler), and again after it in case it did
 * not. A handler that was there first (a sanitizer's, a debugger's) is kept. */
static const struct {
  int sig;
  const char *text;
} FATAL[] = {
    {SIGSEGV, "SIGSEGV (invalid memory access)"},
    {SIGBUS, "SIGBUS (bus error)"},
    {SIGFPE, "SIGFPE (arithmetic exception)"},
    {SIGILL, "SIGILL (illegal instruction)"},
    {SIGABRT, "SIGABRT (abort: a failed assertion or a corrupted heap)"},
};
#define NFATAL ((int)(sizeof FATAL / sizeof FATAL[0]))
static int g_fatal_claimed[NFATAL];
static char g_fatal_prefix[48] = "proxygml: ";   /* "proxygml: [rank r] " once the rank is known */
static char g_altstack[1 << 16];                 /* a stack overflow still gets its line */

static size_t dist_append(char *buf, size_t n, size_t cap, const char *s) {
  while (*s && n < cap) buf[n++] = *s++;
  return n;
}

/* async-signal-safe: no stdio, no allocation, no locks */
static void dist_on_fatal(int sig) {
  const char *text = "fatal signal";
  for (int i = 0; i < NFATAL; i++)
    if (FATAL[i].sig == sig) text = FATAL[i].text;
  char line[160];
  size_t n = dist_append(line, 0, sizeof line - 1, g_fatal_prefix);
  n = dist_append(line, n, sizeof line - 1, "fatal signal ");
  n = dist_append(line, n, sizeof line - 1, text);
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
  raise(sig);   /* SA_RESETHAND made it the default action: delivered when this returns */
}

/* first call: claims the signals that have no handler yet; later calls
 * install ours again on the claimed ones */
static void dist_claim_fatal(int first) {
  stack_t ss = {.ss_sp = g_altstack, .ss_size = sizeof g_altstack};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = dist_on_fatal;
  sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < NFATAL; i++) {
    if (first) {
      struct sigaction old;
      g_fatal_claimed[i] = sigaction(FATAL[i].sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL;
    }
    if (g_fatal_claimed[i]) sigaction(FATAL[i].sig, &sa, NULL);
  }
}

/* ------------------------------------------------------------ the watchdog */

/* A rank that stopped responding (SIGSTOP, a lost node, a deadlock) leaves
 * the others in a collective for ever. A thread of each rank checks four
 * times a second how long the MPI call in progress has been waiting; past the
 * timeout it writes one line and _exit()s. A rank that ends without
 * MPI_Finalize makes mpirun kill the others within seconds. MPI_Abort is no
 * option: the main thread is inside MPI, which was not initialised for
 * threads. Time during which this process itself was stopped does not count
 * (a suspended Slurm job, or the stopped rank that mpirun continues to end it):
 * a gap between two looks much longer than a tick counts as one tick. */
enum { WATCH_TICK_NS = 250000000 };
static atomic_int g_watch_timeout;            /* seconds; 0 = off */
static _Atomic int64_t g_watch_awake;         /* ns this process has run, counted by the watchdog */
static _Atomic int64_t g_watch_since = -1;    /* g_watch_awake when the call in progress began; -1 = none */
static _Atomic(const char *) g_watch_call, g_watch_func;
static atomic_int g_watch_rank;
static int g_watch_started;

static int64_t dist_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void dist_watch_begin(const char *call, const char *func) {
  if (!atomic_load_explicit(&g_watch_timeout, memory_order_relaxed)) return;
  atomic_store(&g_watch_call, call);
  atomic_store(&g_watch_func, func);
  atomic_store(&g_watch_since, atomic_load(&g_watch_awake));
}

void dist_watch_end(void) { atomic_store(&g_watch_since, -1); }

static void *dist_watchdog(void *arg) {
  (void)arg;
  const struct timespec tick = {0, WATCH_TICK_NS};
  int64_t last = dist_now_ns();
  for (;;) {
    nanosleep(&tick, NULL);
    int64_t now = dist_now_ns(), gap = now - last;
    last = now;
    int64_t awake = atomic_load(&g_watch_awake) + (gap < 4 * (int64_t)WATCH_TICK_NS ? gap : WATCH_TICK_NS);
    atomic_store(&g_watch_awake, awake);
    int64_t since = atomic_load(&g_watch_since);
    int timeout = atomic_load(&g_watch_timeout);
    if (since < 0 || !timeout || awake - since < (int64_t)timeout * 1000000000) continue;
    const char *call = atomic_load(&g_watch_call), *func = atomic_load(&g_watch_func);
    char line[320];
    int n = snprintf(line, sizeof line,
                     "proxygml: [rank %d] watchdog: %.*s in %s has not returned after %d s (collective_timeout): "
                     "another rank stopped responding; ending the job\n",
                     atomic_load(&g_watch_rank), (int)strcspn(call, "("), call, func, timeout);
    ssize_t w = write(STDERR_FILENO, line, n > 0 && n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    (void)w;
    _exit(DIST_EXIT_HUNG);
  }
  return NULL;
}

int dist_set_timeout(Dist *d, int seconds) {
  int prev = d->timeout;
  d->timeout = seconds > 0 && d->size > 1 ? seconds : 0;   /* one rank has no partner to wait for */
  atomic_store(&g_watch_rank, d->rank);
  atomic_store(&g_watch_since, -1);
  atomic_store(&g_watch_timeout, d->timeout);
  if (d->timeout && !g_watch_started) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;   /* signals stay with the other threads: SIGUSR1/SIGTERM preemption */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t th;
    int rc = pthread_create(&th, &at, dist_watchdog, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    /* unreachable in tests: pthread_create fails only when the system is out of threads or memory */
    CHECK(rc == 0, "cannot start the watchdog thread: %s", strerror(rc));
    g_watch_started = 1;
  }
  return prev;
}

/* ------------------------------------------------------------ ranks */

void dist_init(Dist *d, int *argc, char ***argv) {
  memset(d, 0, sizeof *d);
  int up = 0;
  MPI_Initialized(&up);
  if (!up) {
    dist_claim_fatal(1);
    DIST_CHECK(MPI_Init(argc, argv));
  }
  d->comm = MPI_COMM_WORLD;
  MPI_Comm_rank(d->comm, &d->rank);
  MPI_Comm_size(d->comm, &d->size);
  if (!up) {
    snprintf(g_fatal_prefix, sizeof g_fatal_prefix, "proxygml: [rank %d] ", d->rank);
    dist_claim_fatal(0);
  }
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
  if (up && !down) DIST_CHECK(MPI_Finalize());   /* watched too: it waits for every rank */
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

int dist_verdict(const Dist *d, int ok, const char *who) {
  int first = dist_first_failing(d, !ok);
  if (first < 0) return 1;
  if (d->rank == first) {
    if (d->size > 1) fprintf(stderr, "%s: [rank %d] %s\n", who, first, err_msg());
    else fprintf(stderr, "%s: %s\n", who, err_msg());
    fflush(stderr);
  }
  return 0;
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
  /* unreachable in tests: no buffer of the project reaches 2^31 elements */
  CHECK(n <= (size_t)INT_MAX, "dist_allreduce_sum_f64: %zu elements", n);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, d->comm));
}

void dist_bcast(const Dist *d, void *buf, size_t bytes) {
  if (d->size == 1) return;
  /* unreachable in tests: no buffer of the project reaches 2^31 bytes */
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
