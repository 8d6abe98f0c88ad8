/* Bias + activation passes of the CPU backend, vectorised by hand (the compiler does
 * not vectorise libm's tanhf/expf): AVX2 + FMA on x86-64 chosen at run time, 4-lane
 * vectors elsewhere. */
#include "cpu_act.h"

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* kernel helpers are always inlined */
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_AVX2_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast") /* -std=c11 turns contraction off */
#define VW 8
#define KNAME(name) name##_avx2
#include "cpu_act_kernels.h"
#undef VW
#undef KNAME
#pragma GCC pop_options
#endif
#define VW 4
#define KNAME(name) name##_base
#include "cpu_act_kernels.h"
#undef VW
#undef KNAME

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
