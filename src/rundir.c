/* rundir.c: the run directory before a run starts (include/rundir.h). */
#include "rundir.h"

#include "cfg.h"
#include "checkpoint.h"
#include "common.h"
#include "fsutil.h"
#include "h5io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int rundir_prepare(const char *out_dir, const char *run_path, uint64_t config_hash, int epochs, int force, int resume,
                   int *complete_epochs) {
  if (fsutil_mkdir_p(out_dir) != 0) return -1;
  char probe[CFG_PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/.write-test.%d", out_dir, (int)getpid());
  FILE *f = fopen(probe, "w");
  if (!f) return err_set("output directory '%s' is not writable: %s", out_dir, strerror(errno));
  fclose(f);
  unlink(probe);
  *complete_epochs = -1;
  if (access(run_path, F_OK) == 0 && resume) {
    /* the directory must hold a run of this very configuration */
    char hash[32] = "", want[32], status[32] = "";
    int64_t epochs_done = 0;
    hid_t h;
    if (h5io_open(run_path, &h) != 0)
      return err_set("cannot resume: %s; move it away to resume from the checkpoints", err_msg());
    hid_t g = H5Gopen2(h, "config", H5P_DEFAULT);
    if (g >= 0) { h5io_attr_str(g, "config_hash", hash, sizeof hash); H5Gclose(g); }
    h5io_attr_str(h, "status", status, sizeof status);
    h5io_attr_i64(h, "epochs_done", &epochs_done);
    H5Fclose(h);
    if (!hash[0]) return err_set("%s has no config/config_hash: not a run file of proxygml; refusing to resume into it",
                                 run_path);
    snprintf(want, sizeof want, "%016llx", (unsigned long long)config_hash);
    if (strcmp(hash, want))
      return err_set("%s belongs to another experiment (config hash %s, this one %s): refusing to resume into it",
                     run_path, hash, want);
    if (epochs_done > epochs)
      return err_set("%s has %lld epochs done (status %s), more than the %d asked for: refusing to resume; train "
                     "a shorter run into another --out", run_path, (long long)epochs_done, status, epochs);
    if (!strcmp(status, "complete")) *complete_epochs = (int)epochs_done;
  } else if (access(run_path, F_OK) == 0 && !force) {
    char status[64] = "unreadable";
    hid_t h;
    if (h5io_open(run_path, &h) == 0) {
      if (h5io_attr_str(h, "status", status, sizeof status) != 0) snprintf(status, sizeof status, "unknown");
      H5Fclose(h);
    }
    return err_set("%s already exists (status %s): pass --force to replace it, or choose another --out", run_path,
                   status);
  }
  if (force && !resume) {   /* a fresh start: old checkpoints must not be resumed later */
    char dir[CFG_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/checkpoints", out_dir);
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh && (e = readdir(dh))) {
      if (e->d_name[0] == '.') continue;
      char p[CFG_PATH_MAX + 300];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    if (dh) closedir(dh);
  }
  int partial = checkpoint_remove_partial(out_dir);
  if (partial > 0) printf("removed %d partial checkpoint file%s (step-*.h5.tmp) that a crash left in %s/checkpoints\n",
                          partial, partial > 1 ? "s" : "", out_dir);
  return 0;
}
