/* Bias and activation over rows, written once for VW float lanes and included once per
 * instruction set by cpu_act.c (which defines VW and KNAME). Not a public header.
 *
 * GELU-tanh is evaluated as x / (1 + exp(−2u)), u = √(2/π)(x + 0.044715x³), the same
 * function as 0.5x(1 + tanh u) without tanh's cancellation, and SiLU as x / (1 + exp(−x)),
 * both with cpu_vec.h's exp: a few ulp from the exact values and one vector pass. */

#include "cpu_vec.h"

INLINE vf
KNAME (vact) (vf x, VditActivation act)
{
  switch (act) {
    case VDIT_ACT_GELU_TANH: {
      const vf u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return x / (1.0f + KNAME (vexp) (-2.0f * u));
    }
    case VDIT_ACT_SILU:
      return x / (1.0f + KNAME (vexp) (-x));
    case VDIT_ACT_NONE:
    default:
      return x;
  }
}

/* out(i, j) = act(out(i, j) + bias(j)) for m rows of n; bias may be NULL. The last
 * partial vector of a row goes through the same lanes via a small copy. */
INLINE void
KNAME (bias_act_rows_impl) (float *out, int ldo, const float *bias, int m, int n,
                            VditActivation act)
{
  for (int i = 0; i < m; i++) {
    float *row = out + (size_t) i * ldo;
    int j = 0;
    for (; j + VW <= n; j += VW) {
      vf x = KNAME (vload) (row + j);
      if (bias)
        x += KNAME (vload) (bias + j);
      KNAME (vstore) (row + j, KNAME (vact) (x, act));
    }
    if (j < n) {
      float tmp[VW] = { 0 };
      for (int c = 0; c < n - j; c++)
        tmp[c] = row[j + c] + (bias ? bias[j + c] : 0.0f);
      KNAME (vstore) (tmp, KNAME (vact) (KNAME (vload) (tmp), act));
      for (int c = 0; c < n - j; c++)
        row[j + c] = tmp[c];
    }
  }
}

/* One instantiation per activation, so the switch folds away in the inner loop. */
static void
KNAME (bias_act_rows) (float *out, int ldo, const float *bias, int m, int n,
                       VditActivation act)
{
  switch (act) {
    case VDIT_ACT_GELU_TANH:
      KNAME (bias_act_rows_impl) (out, ldo, bias, m, n, VDIT_ACT_GELU_TANH);
      break;
    case VDIT_ACT_SILU:
      KNAME (bias_act_rows_impl) (out, ldo, bias, m, n, VDIT_ACT_SILU);
      break;
    case VDIT_ACT_NONE:
    default:
      KNAME (bias_act_rows_impl) (out, ldo, bias, m, n, VDIT_ACT_NONE);
      break;
  }
}

#include "cpu_vec_end.h"
