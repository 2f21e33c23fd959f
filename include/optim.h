#ifndef PROXYGML_OPTIM_H
#define PROXYGML_OPTIM_H
#endif
