/* sweep.h: a grid of training runs (K x N sweeps) from one sweep file, as
 * numbered tasks for a Slurm job array or a local loop (`proxygml sweep`,
 * tools/sweep.c). It plans, lists and reports; it does not train or submit
 * anything (the scripts in slurm/ do: docs/slurm.md).
 *
 * A sweep file is libconfig, like a config file:
 *
 *   config = "fmnist_mlp.cfg";          # the base config, relative to the sweep file
 *   out = "runs/fmnist_kn";             # one run directory per task below it
 *                                       # (relative to the working directory, like
 *                                       # train --out; default runs/<sweep file name>)
 *   grid = { k = [4, 8]; N = [2, 4]; seed = [0]; };   # every combination
 *   set = { epochs = 2; max_steps_per_epoch = 50; };  # the same for every task
 *
 * A grid key takes an array of values ([4, 8]), a single value, or a list
 * of arrays for list keys (decay_epochs = ([20, 40], [10]);). Tasks are
 * numbered from 0 in a fixed order: grid keys in file order, the last one
 * varying fastest. Task t runs
 *
 *   proxygml train --config CONFIG --out OUT/<dir> --set <grid values> --set <set values>
 *
 * where <dir> names its grid values: k=8_N=4_seed=0. Values go to the
 * trainer as `--set key=value` text (numbers as written, strings without
 * quotes, arrays as 20,40); a float stays a float (4.0 for an integer key is
 * an error, as in a config file).
 *
 * Loading checks everything a task could trip over, and fails with one line
 * naming the file, line and key: unknown top-level keys, a missing config
 * file, an empty grid or grid key, a value listed twice, a key in both grid
 * and set, k together with r, and every grid point: its full Config is built
 * (cfg_load + cfg_set of each value + cfg_validate) and two points may not
 * give the same configuration or the same directory name. `sweep plan` then
 * makes the checks train makes before it reads a row (trainer_check_sizes:
 * the dataset readable, C, K, batch and recall_ks against its splits, the
 * architecture against its rows) for every task, before anything is
 * submitted, and warns about tasks with K <= N (they learn nothing):
 * sweep_check_data.
 *
 *   Sweep s;
 *   if (sweep_load(&s, "experiments/fmnist_kn.sweep") != 0) { puts(err_msg()); ... }
 *   char warning[1024];
 *   if (sweep_check_data(&s, warning, sizeof warning) != 0) { puts(err_msg()); ... }
 *   SweepTask t;
 *   sweep_task(&s, 3, &t);               // t.run_dir, t.argv: the training arguments
 *   char st[16], why[1024];
 *   sweep_task_status(&s, 3, st, sizeof st, why, sizeof why);   // "complete", "missing", ...
 *   sweep_free(&s);
 *
 * Memory: sweep_load allocates the values and one Config per task (for the
 * duplicate check and the config hash of `status`); sweep_free releases them
 * and is safe on a zeroed Sweep.
 */
#ifndef PROXYGML_SWEEP_H
#define PROXYGML_SWEEP_H

#include "cfg.h"

#define SWEEP_MAX_KEYS 32      /* grid keys, and set keys */
#define SWEEP_MAX_TASKS 100000 /* product of the grid */
#define SWEEP_TEXT_MAX 512     /* bytes of one value in --set syntax, NUL included */
#define SWEEP_DIR_MAX 256      /* bytes of a task's directory name, NUL included */
#define SWEEP_ARGS_MAX (6 + 4 * SWEEP_MAX_KEYS)

typedef struct {
  char key[64];
  int line;                    /* in the sweep file */
  int n;                       /* values */
  char (*text)[SWEEP_TEXT_MAX];   /* n: each value in --set syntax */
} SweepAxis;

typedef struct {
  char path[CFG_PATH_MAX];     /* the sweep file, as given */
  char config[CFG_PATH_MAX];   /* the base config, relative to the working directory */
  int config_line;             /* of `config` in the sweep file */
  char out[CFG_PATH_MAX];      /* the sweep's output directory */
  int naxes;
  SweepAxis axes[SWEEP_MAX_KEYS];
  int nset;
  char set[SWEEP_MAX_KEYS][64 + SWEEP_TEXT_MAX];   /* "key=value" */
  int ntasks;
  Config *cfgs;                /* ntasks: the resolved configuration of each task */
} Sweep;

typedef struct {
  int id;
  char dir[SWEEP_DIR_MAX];                 /* k=8_N=4_seed=0 */
  char run_dir[CFG_PATH_MAX + SWEEP_DIR_MAX];   /* out/dir */
  int argc;
  char argv[SWEEP_ARGS_MAX][CFG_PATH_MAX + SWEEP_DIR_MAX];   /* --config C --out D --set k=v ... */
} SweepTask;

int sweep_load(Sweep *s, const char *path);
void sweep_free(Sweep *s);
/* task `id` (0 <= id < ntasks): its directory and training arguments */
int sweep_task(const Sweep *s, int id, SweepTask *t);
/* the directory name of task `id` alone (k=8_N=4_seed=0), below s->out */
int sweep_task_dir(const Sweep *s, int id, char *dir, size_t cap);
/* What train checks before it reads a row, for every task (each dataset
 * read once): 0, or -1 with err_msg() naming the sweep file, the task and
 * the reason. warning (cap bytes) gets "" or one line about the tasks that
 * would learn nothing (K <= N): "task 0 (k=2_N=4) and 3 more tasks: ...". */
int sweep_check_data(const Sweep *s, char *warning, size_t cap);
/* status of the run of task `id`, from its run.h5: complete, extendable
 * (complete, with fewer epochs than the task asks now: train --resume auto
 * continues it), running, preempted, failed, missing (no run.h5),
 * unreadable, or foreign (a run of another configuration: train --resume
 * auto would refuse it). A task whose newest job log (RUN_DIR/slurm-*_<id>.out,
 * RUN_DIR/local.out, OUT/logs/slurm-*_<id>.out) ends in a failure after the
 * run file was last written (or without one) is failed too. `why` (may be
 * NULL) gets the reason of a failed or unreadable task: the run file's
 * message or the log's last error line; "" otherwise. */
void sweep_task_status(const Sweep *s, int id, char *status, size_t cap, char *why, size_t why_cap);
/* OUT/manifest.tsv (task, run_dir, set), written to a temporary file and renamed */
int sweep_write_manifest(const Sweep *s);

#endif
