/* The CPU backend's vectorised bias + activation passes (engine/cpu/cpu_act.c) against
 * the formulas in double precision, and the same bits however a row is split. */
#include "cpu/cpu_act.h"
#include "cpu/cpu_ops.h"

#include <math.h>
#include <string.h>

/* 0.5x(1 + tanh u) = x / (1 + exp(−2u)); the second form keeps its precision where
 * tanh u rounds to −1 in double too. *cond: how much a relative error of float
 * arithmetic inside is amplified (the size of exp's argument, plus one). */
static double
gelu_ref (double x, double *cond)
{
  const double u = sqrt (2.0 / G_PI) * (x + 0.044715 * x * x * x);
  *cond = 1.0 + fabs (2.0 * u);
  if (fabs (u) < 5.0)
    return 0.5 * x * (1.0 + tanh (u));
  return x / (1.0 + exp (-2.0 * u));
}

static double
silu_ref (double x, double *cond)
{
  *cond = 1.0 + fabs (x);
  return x / (1.0 + exp (-x));
}

/* Every value against the double formula at the same float input: within a few float
 * ulps times the amplification of rounding inside exp's argument (large far out on the
 * negative side, where the result is tiny anyway). */
static void
check_act (VditActivation act, double (*ref) (double, double *))
{
  const int n = 20001;
  float *x = g_new (float, n), *bias = g_new (float, n);
  for (int i = 0; i < n; i++) {
    x[i] = (float) (-100.0 + 200.0 * i / (n - 1));
    bias[i] = (i % 7) * 0.125f - 0.375f;
  }
  float *out = g_memdup2 (x, n * sizeof (float));
  cpu_bias_act_rows (out, n, bias, 1, n, act);
  double worst = 0.0;
  for (int i = 0; i < n; i++) {
    double cond;
    const float in = x[i] + bias[i];
    const double want = ref (in, &cond);
    const double err = fabs (out[i] - want);
    g_assert_true (isfinite (out[i]));
    if (err > 1e-30)
      worst = MAX (worst, err / (fabs (want) * cond));
  }
  g_test_message ("largest error %.3g of the result times the amplification", worst);
  g_assert_cmpfloat (worst, <, 4e-7);
  g_free (x);
  g_free (bias);
  g_free (out);
}

static void
test_gelu (void)
{
  check_act (VDIT_ACT_GELU_TANH, gelu_ref);
}

static void
test_silu (void)
{
  check_act (VDIT_ACT_SILU, silu_ref);
}

/* Splitting the columns of a matrix at odd places (as threads split a GEMM's columns)
 * gives the same bits as one pass; cpu_activate matches a one-row pass and works in
 * place. */
static void
test_split_invariance (void)
{
  const int m = 3, n = 75, ld = 80;
  GRand *rng = g_rand_new_with_seed (7);
  float *a = g_new (float, m * ld), *bias = g_new (float, n);
  for (int i = 0; i < m * ld; i++)
    a[i] = (float) g_rand_double_range (rng, -6.0, 6.0);
  for (int j = 0; j < n; j++)
    bias[j] = (float) g_rand_double_range (rng, -1.0, 1.0);
  const VditActivation acts[] = { VDIT_ACT_GELU_TANH, VDIT_ACT_SILU, VDIT_ACT_NONE };
  for (guint t = 0; t < G_N_ELEMENTS (acts); t++) {
    float *whole = g_memdup2 (a, m * ld * sizeof (float));
    float *split = g_memdup2 (a, m * ld * sizeof (float));
    cpu_bias_act_rows (whole, ld, bias, m, n, acts[t]);
    const int cuts[] = { 0, 3, 17, 18, 40, 75 };
    for (guint c = 0; c + 1 < G_N_ELEMENTS (cuts); c++)
      cpu_bias_act_rows (split + cuts[c], ld, bias + cuts[c], m, cuts[c + 1] - cuts[c], acts[t]);
    g_assert_cmpmem (whole, m * ld * sizeof (float), split, m * ld * sizeof (float));

    float *row = g_memdup2 (a, n * sizeof (float));
    float *act = g_new (float, n);
    cpu_bias_act_rows (row, n, NULL, 1, n, acts[t]);
    cpu_activate (NULL, act, a, n, acts[t]);
    g_assert_cmpmem (row, n * sizeof (float), act, n * sizeof (float));
    memcpy (act, a, n * sizeof (float));
    cpu_activate (NULL, act, act, n, acts[t]);
    g_assert_cmpmem (row, n * sizeof (float), act, n * sizeof (float));
    g_free (row);
    g_free (act);
    g_free (whole);
    g_free (split);
  }
  g_free (a);
  g_free (bias);
  g_rand_free (rng);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cpu-act/gelu-tanh", test_gelu);
  g_test_add_func ("/cpu-act/silu", test_silu);
  g_test_add_func ("/cpu-act/split-invariance", test_split_invariance);
  return g_test_run ();
}
