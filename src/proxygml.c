#include "proxygml.h"
int proxygml_cmd_check_loss(int argc, char **argv) { (void)argc; (void)argv; return 2; }
int proxygml_cmd_bench_loss(int argc, char **argv) { (void)argc; (void)argv; return 2; }
