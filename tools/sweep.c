/* sweep.c: `proxygml sweep plan|status|args FILE [TASK_ID]`: the command
 * line of the sweep module (include/sweep.h), which plans and reports; the
 * scripts in slurm/ submit and run the tasks (docs/slurm.md). Exit 0 ok,
 * 2 bad input (one line says what). */
#include "tools.h"

#include "common.h"
#include "sweep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: proxygml sweep plan FILE           check the sweep, write OUT/manifest.tsv, print the task count\n"
          "       proxygml sweep status FILE         the status of every task's run\n"
          "       proxygml sweep args FILE TASK_ID   the training arguments of one task, one per line\n\n"
          "A sweep file (libconfig) runs one training per point of a grid:\n"
          "  config = \"fmnist_mlp.cfg\";               # base config, relative to the sweep file\n"
          "  out = \"runs/fmnist_kn\";                  # run directories go below it\n"
          "  grid = { k = [4, 8]; N = [2, 4]; seed = [0]; };\n"
          "  set = { epochs = 2; max_steps_per_epoch = 50; };   # the same for every task\n"
          "Tasks are numbered from 0: grid keys in file order, the last varying fastest. Task t\n"
          "trains into OUT/<key=value_...>, e.g. runs/fmnist_kn/k=8_N=4_seed=0.\n"
          "Run a sweep with slurm/submit_sweep.sh FILE (a Slurm job array) or\n"
          "slurm/run_local_sweep.sh FILE (one task after the other, here); docs/slurm.md.\n"
          "plan checks every task as train would before it reads a row (the dataset, C, K, batch,\n"
          "recall_ks, arch) and writes OUT/manifest.tsv; nothing is submitted.\n"
          "Status: complete, extendable (complete, but the sweep now asks for more epochs: a\n"
          "resubmission continues it), running, preempted, failed (with the reason from the run\n"
          "file or the task's log), missing (no run.h5), unreadable, foreign (run.h5 of another\n"
          "configuration: train --resume auto refuses it).\n"
          "Exit codes: 0 ok, 2 bad input (one line says what).\n");
}

static int fail(const char *what) {
  fprintf(stderr, "proxygml sweep %s: %s\n", what, err_msg());
  return 2;
}

static int cmd_plan(const Sweep *s) {
  char warning[1024];
  if (sweep_check_data(s, warning, sizeof warning) != 0) return fail("plan");
  /* tasks that would learn nothing (K <= N): one line, before the manifest */
  if (warning[0]) fprintf(stderr, "proxygml sweep plan: warning: %s\n", warning);
  if (sweep_write_manifest(s) != 0) return fail("plan");
  printf("%s: %d task%s (", s->path, s->ntasks, s->ntasks == 1 ? "" : "s");
  for (int a = 0; a < s->naxes; a++) printf("%s%s %d", a ? " x " : "", s->axes[a].key, s->axes[a].n);
  printf("), manifest %s/manifest.tsv\n", s->out);
  return 0;
}

static int cmd_status(const Sweep *s) {
  static const char *const ORDER[] = {"complete", "extendable", "running", "preempted", "failed", "missing",
                                      "unreadable", "foreign"};
  enum { NST = sizeof ORDER / sizeof ORDER[0] };
  int count[NST] = {0};
  char dir[SWEEP_DIR_MAX], why[1024];
  printf("%-5s %-10s %s\n", "task", "status", "run");
  for (int id = 0; id < s->ntasks; id++) {
    char st[32];
    sweep_task_status(s, id, st, sizeof st, why, sizeof why);
    sweep_task_dir(s, id, dir, sizeof dir);
    printf("%-5d %-10s %s/%s", id, st, s->out, dir);
    if (why[0]) printf("  (%s)", why);
    printf("\n");
    for (int i = 0; i < NST; i++)
      if (!strcmp(st, ORDER[i])) count[i]++;
  }
  printf("%d task%s:", s->ntasks, s->ntasks == 1 ? "" : "s");
  const char *sep = " ";
  for (int i = 0; i < NST; i++)
    if (count[i]) { printf("%s%d %s", sep, count[i], ORDER[i]); sep = ", "; }
  printf("\n");
  return 0;
}

static int cmd_args(const Sweep *s, const char *id_text) {
  char *end;
  errno = 0;
  long id = strtol(id_text, &end, 10);
  if (!*id_text || *end || errno || id < 0 || id > SWEEP_MAX_TASKS)
    return err_set("TASK_ID must be a task number, got '%s'", id_text), fail("args");
  SweepTask *t = xmalloc(sizeof *t);
  int rc = sweep_task(s, (int)id, t);
  if (rc == 0)
    for (int i = 0; i < t->argc; i++) printf("%s\n", t->argv[i]);
  free(t);
  return rc == 0 ? 0 : fail("args");
}

int tool_sweep(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
  const char *sub = argc > 1 ? argv[1] : "";
  int want = !strcmp(sub, "args") ? 4 : (!strcmp(sub, "plan") || !strcmp(sub, "status")) ? 3 : 0;
  if (!want) {
    fprintf(stderr, "proxygml sweep: expected plan, status or args, got '%s'\n", sub);
    usage(stderr);
    return 2;
  }
  if (argc != want) {
    fprintf(stderr, "proxygml sweep %s: expected %s (see proxygml sweep --help)\n", sub,
            want == 4 ? "FILE TASK_ID" : "FILE");
    return 2;
  }
  Sweep *s = xcalloc(1, sizeof *s);
  int rc;
  if (sweep_load(s, argv[2]) != 0) rc = fail(sub);
  else if (!strcmp(sub, "plan")) rc = cmd_plan(s);
  else if (!strcmp(sub, "status")) rc = cmd_status(s);
  else rc = cmd_args(s, argv[3]);
  sweep_free(s);
  free(s);
  return rc;
}
