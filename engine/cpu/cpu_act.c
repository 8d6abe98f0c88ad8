/* Bias + activation passes of the CPU backend, vectorised by hand (the compiler does
 * not vectorise libm's tanhf/expf): AVX2 + FMA on x86-64 chosen at run time, 4-lane
 * vectors elsewhere. */
#include "cpu_act.h"

#include <stdint.h>
#include <string.h>

#define CPU_ISA_KERNELS "cpu_act_kernels.h"
#include "cpu_isa_variants.h"

void
cpu_bias_act_rows (float *out, int ldo, const float *bias, int m, int n, VditActivation act)
{
  if (bias == NULL && act == VDIT_ACT_NONE)
    return;
#ifdef HAVE_AVX2_KERNELS
  if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")) {
    bias_act_rows_avx2 (out, ldo, bias, m, n, act);
    return;
  }
#endif
  bias_act_rows_base (out, ldo, bias, m, n, act);
}
