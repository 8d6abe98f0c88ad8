/* Vectorised bias + activation for the CPU backend (cpu_act.c). */
#ifndef VDIT_CPU_ACT_H
#define VDIT_CPU_ACT_H

#include "backend.h"

/* out(i, j) = act(out(i, j) + bias(j)) for i < m, j < n; out rows of stride ldo; bias
 * (n) or NULL. Single-threaded: callers split rows or columns across threads. The same
 * inputs give the same bits on a given machine whatever the split. */
void cpu_bias_act_rows (float *out, int ldo, const float *bias, int m, int n,
                        VditActivation act);

#endif
