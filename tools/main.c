/* main.c: the `proxygml` program: process-wide setup (the OpenMP spin
 * limit), --version, and a table of subcommands, one file each in tools/
 * (tools.h). */
#include "config.h"
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} Command;

static const Command COMMANDS[] = {
  {"train", tool_train, "train an embedding network with ProxyGML (see proxygml train --help)"},
  {"check-loss", tool_check_loss, "compare the loss with golden HDF5 files (exit 0 ok, 1 mismatch, 2 bad input)"},
  {"bench-loss", tool_bench_loss, "time forward+backward of the loss on a preset problem"},
  {"profile-loss", tool_profile_loss, "time each phase of the loss on a preset problem, beside sgemm on the same products"},
  {"bench-backbone", tool_bench_backbone, "time each layer of the mlp or cnn, forward and backward, beside sgemm on the same shapes"},
  {"bench-eval", tool_bench_eval, "time the blocked kNN, the retrieval metrics and k-means on a synthetic set (also under mpirun)"},
  {"bench-reduce", tool_bench_reduce, "time the gradient reduction under mpirun (allreduce; reduce-scatter + allgather)"},
  {"sweep", tool_sweep, "grids of runs for Slurm job arrays: sweep plan|status|args FILE (see proxygml sweep --help)"},
  {"check-metrics", tool_check_metrics, "compare kNN, Recall@k, MAP@R, R-precision and NMI with an HDF5 file (exit 0 ok, 1 mismatch, 2 bad input)"},
  {"data", tool_data, "make and inspect dataset files: data fashion-mnist|folder|cub|cars|sop|features|glyphs ..., data info FILE.h5"},
};
static const int NCOMMANDS = (int)(sizeof COMMANDS / sizeof COMMANDS[0]);

static void usage(FILE *out) {
  fprintf(out, "usage: proxygml COMMAND [ARGS...]   (proxygml COMMAND --help for details)\n\ncommands:\n");
  for (int i = 0; i < NCOMMANDS; i++) fprintf(out, "  %-14s %s\n", COMMANDS[i].name, COMMANDS[i].help);
  fprintf(out, "\n  --version      print the version\n");
}

/* OpenMP workers that spin-wait for the next parallel region (libgomp's
 * default) steal the cores that OpenBLAS and the other rank need: on 2 cores a
 * training step ran 8x slower. libgomp reads its spin count only when it is
 * loaded, so set a short one and run this program again, once. A user who
 * sets GOMP_SPINCOUNT or OMP_WAIT_POLICY keeps their choice. Not under
 * valgrind (its preload library in LD_PRELOAD): there /proc/self/exe is
 * valgrind's own tool, which refuses to run, and a re-executed program would
 * escape the checking anyway. */
static void limit_openmp_spinning(char **argv) {
  if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY")) return;
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "vgpreload")) return;
  setenv("GOMP_SPINCOUNT", "10000", 1);
  execv("/proc/self/exe", argv);   /* returns only on failure: then run as we are */
}

int main(int argc, char **argv) {
  limit_openmp_spinning(argv);
  if (argc < 2) { usage(stderr); return 2; }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    printf("proxygml %s\n", PROXYGML_VERSION);
    return 0;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "proxygml: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
