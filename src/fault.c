/* fault.c: test-only fault injection (include/fault.h). */
#include "fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const FAULT_NAMES[] = {"", "nan", "io", "crash", "segv", "heap", "stop"};

void fault_init(Fault *f) {
  memset(f, 0, sizeof *f);
  const char *e = getenv("PROXYGML_INJECT_FAULT");
  if (!e || !*e) return;
  char kind[16] = "";
  long long step = 0;
  int rank = 0;
  if (sscanf(e, "%d:%lld:%15s", &rank, &step, kind) != 3) return;
  for (int k = FAULT_NAN; k <= FAULT_STOP; k++)
    if (!strcmp(kind, FAULT_NAMES[k])) *f = (Fault){.kind = (FaultKind)k, .rank = rank, .step = step};
}

int fault_at(const Fault *f, FaultKind kind, int rank, int64_t step) {
  return f->kind == kind && f->rank == rank && (kind == FAULT_IO || f->step == step);
}

void fault_crash(const Fault *f, int rank, int64_t step) {
  if (f->kind < FAULT_CRASH || !fault_at(f, f->kind, rank, step)) return;
  fprintf(stderr, "proxygml train: [rank %d] injected %s at step %lld\n", rank, FAULT_NAMES[f->kind], (long long)step);
  fflush(stderr);
  if (f->kind == FAULT_SEGV) raise(SIGSEGV);
  if (f->kind == FAULT_STOP) {
    raise(SIGSTOP);
    _exit(3);   /* continued by mpirun while it ends the job: leave quietly, "the training failed" */
  }
  if (f->kind == FAULT_HEAP) {
    char *volatile p = malloc(100000);   /* below the mmap threshold: freed under the arena lock */
    free(p);
    free(p);
  }
  abort();
}
