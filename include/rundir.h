/* rundir.h: a run's directory, DIR/run.h5 and DIR/checkpoints/, made ready
 * before a run starts. Called by one rank (rank 0); the caller agrees on the
 * verdict with the others.
 *
 * rundir_prepare creates DIR (and its parents) and checks that it is
 * writable. With resume, an existing run.h5 must be readable and of this
 * configuration (config hash), and not hold more than `epochs` epochs; a
 * complete one sets *complete_epochs (else -1). Without resume, an existing
 * run.h5 is refused unless force, and force clears old checkpoints so that
 * they cannot be resumed later. Partial checkpoint files a crash left are
 * removed (one line says so). 0, or -1 with one line in err_msg().
 */
#ifndef PROXYGML_RUNDIR_H
#define PROXYGML_RUNDIR_H

#include <stdint.h>

int rundir_prepare(const char *out_dir, const char *run_path, uint64_t config_hash, int epochs, int force, int resume,
                   int *complete_epochs);

#endif
