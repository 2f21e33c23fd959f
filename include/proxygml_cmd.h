/* proxygml_cmd.h: the loss's subcommands.
 *
 *   proxygml check-loss [--ref] FILE.h5 [FILE.h5 ...]
 *     Reads inputs of the golden layout (x_raw, labels, proxies; attributes C,
 *     N, K or r, lambda, scale), computes the loss and its gradients, compares
 *     every expected dataset the file holds. Exit 0 all within tolerance,
 *     1 a mismatch, 2 bad input (one line naming the problem).
 *
 *   proxygml bench-loss --preset {cub,sop,bigbatch} [--threads T]
 *     Median forward+backward time; prints one line
 *     "preset=... threads=... median_ms=... gflops=... sgemm_gflops=...".
 */
#ifndef PROXYGML_PROXYGML_CMD_H
#define PROXYGML_PROXYGML_CMD_H

int proxygml_cmd_check_loss(int argc, char **argv);
int proxygml_cmd_bench_loss(int argc, char **argv);

#endif
