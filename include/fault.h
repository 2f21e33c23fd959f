/* fault.h: test-only fault injection. PROXYGML_INJECT_FAULT="RANK:STEP:KIND"
 * makes one rank fail on purpose, so the tests can check that every rank
 * stops, fast, with one message (tests/mpi/test_faults.sh). KIND:
 *   nan    a non-finite loss on that rank at STEP
 *   io     that rank cannot read its data (STEP ignored)
 *   and at STEP, just before the gradient allreduce:
 *   crash  abort()
 *   segv   SIGSEGV
 *   heap   a double free: glibc aborts holding its allocator lock
 *   stop   SIGSTOP: the others wait for it until the watchdog
 *          (collective_timeout) ends the job
 * Unset, or not of that form: nothing happens.
 */
#ifndef PROXYGML_FAULT_H
#define PROXYGML_FAULT_H

#include <stdint.h>

typedef enum { FAULT_NONE, FAULT_NAN, FAULT_IO, FAULT_CRASH, FAULT_SEGV, FAULT_HEAP, FAULT_STOP } FaultKind;

typedef struct {
  FaultKind kind;
  int rank;
  int64_t step;
} Fault;

void fault_init(Fault *f);   /* from the environment */
/* 1 if the fault `kind` strikes `rank` at `step` (any step for FAULT_IO) */
int fault_at(const Fault *f, FaultKind kind, int rank, int64_t step);
/* the crash kinds: when one strikes `rank` at `step`, one line, then the crash */
void fault_crash(const Fault *f, int rank, int64_t step);

#endif
