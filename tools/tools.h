/* tools.h: the subcommands of the `proxygml` program, one file each in
 * tools/. Every entry point has the same shape: it gets the arguments after
 * the program name (argv[0] is the subcommand's name), parses them, calls
 * the library, and returns the process exit code (0 ok, 1 a check failed,
 * 2 bad input, 3 a run failed, 75 stopped to be requeued). */
#ifndef PROXYGML_TOOLS_H
#define PROXYGML_TOOLS_H

int tool_train(int argc, char **argv);          /* train.c */
int tool_check_loss(int argc, char **argv);     /* check_loss.c */
int tool_bench_loss(int argc, char **argv);     /* bench_loss.c */
int tool_bench_reduce(int argc, char **argv);   /* bench_reduce.c */
int tool_profile_loss(int argc, char **argv);   /* profile_loss.c */
int tool_bench_backbone(int argc, char **argv); /* bench_backbone.c */
int tool_bench_eval(int argc, char **argv);     /* bench_eval.c */
int tool_check_metrics(int argc, char **argv);  /* check_metrics.c */
int tool_sweep(int argc, char **argv);          /* sweep.c */
int tool_data(int argc, char **argv);           /* data.c */

#endif
