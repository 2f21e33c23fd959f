/* proxygml.h: the ProxyGML loss (placeholder while it is being written). */
#ifndef PROXYGML_PROXYGML_H
#define PROXYGML_PROXYGML_H
int proxygml_cmd_check_loss(int argc, char **argv);
int proxygml_cmd_bench_loss(int argc, char **argv);
#endif
