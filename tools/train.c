/* train.c: `proxygml train`: the command line of the trainer (include/trainer.h). */
#include "tools.h"

#include "cfg.h"
#include "common.h"
#include "dist.h"
#include "trainer.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: proxygml train --config FILE [--set key=value ...] [--out DIR] [--force] [--resume auto]\n"
          "       mpirun -np P proxygml train ...   (data parallel; batch is the global batch)\n\n"
          "Trains an embedding network with the ProxyGML loss, evaluates it (epoch 0 = untrained)\n"
          "and writes DIR/run.h5 (default DIR: runs/<name or config file name>).\n"
          "  --config FILE   libconfig file (experiments/*.cfg)\n"
          "  --set key=value override one key (repeatable; lists as 20,40)\n"
          "  --out DIR       output directory (created if missing)\n"
          "  --force         replace an existing DIR/run.h5 (and its checkpoints)\n"
          "  --resume auto   continue from the newest complete checkpoint in DIR (a fresh start\n"
          "                  if there is none; nothing to do if DIR/run.h5 is complete, unless\n"
          "                  epochs was raised: then it continues); refuses a directory of another\n"
          "                  configuration, and a run or checkpoint beyond this run's epochs\n"
          "Signals: SIGUSR1 or SIGTERM finish the current step, write a checkpoint, mark the run\n"
          "preempted and exit 75 (requeue, then --resume auto).\n"
          "Exit codes: 0 complete, 2 bad input, 3 training failed, 75 stopped to be requeued.\n\n"
          "Configuration keys (default, meaning):\n");
  cfg_print_help(out);
}

static int parse_args(TrainerArgs *a, int argc, char **argv) {
  const char *cfg_path = NULL, *out = NULL;
  cfg_defaults(&a->cfg);
  size_t len = 0;
  for (int i = 0; i < argc && len + 2 < sizeof a->cmdline; i++)
    len += (size_t)snprintf(a->cmdline + len, sizeof a->cmdline - len, "%s%s", i ? " " : "proxygml ", argv[i]);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc) cfg_path = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "--force")) a->force = 1;
    else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
      const char *how = argv[++i];
      if (!strcmp(how, "auto")) a->resume = 1;
      else if (!strcmp(how, "never")) a->resume = 0;
      else return err_set("--resume takes auto or never, got '%s'", how);
    }
    else if (!strcmp(argv[i], "--set") && i + 1 < argc) i++;   /* applied after the file */
    else return err_set("unknown or incomplete argument '%s' (see proxygml train --help)", argv[i]);
  }
  if (!cfg_path) return err_set("--config FILE is required (see proxygml train --help)");
  if (cfg_load(&a->cfg, cfg_path) != 0) return -1;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--set") && cfg_set(&a->cfg, argv[++i]) != 0) return -1;
  if (cfg_validate(&a->cfg) != 0) return -1;
  if (out) snprintf(a->out_dir, sizeof a->out_dir, "%s", out);
  else {
    const char *base = strrchr(cfg_path, '/') ? strrchr(cfg_path, '/') + 1 : cfg_path;
    char stem[256];
    snprintf(stem, sizeof stem, "%s", a->cfg.name[0] ? a->cfg.name : base);
    char *dot = strrchr(stem, '.');
    if (dot && !a->cfg.name[0]) *dot = 0;
    snprintf(a->out_dir, sizeof a->out_dir, "runs/%s", stem);
  }
  return 0;
}

int tool_train(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  trainer_catch_signals();
  Dist d;
  dist_init(&d, &argc, &argv);
  static TrainerArgs a;   /* large; zeroed */
  memset(&a, 0, sizeof a);
  /* every rank parses the same file: errors are the same everywhere */
  int rc = TRAINER_EXIT_BAD_INPUT;
  if (dist_verdict(&d, parse_args(&a, argc, argv) == 0, "proxygml train")) rc = trainer_main(&d, &a);
  dist_finalize(&d);
  return rc;
}
