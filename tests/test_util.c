#include "test_util.h"

#include <math.h>

char *
test_source_path (const char *relative)
{
  const char *root = g_getenv ("VDIT_SOURCE_ROOT");
  return g_build_filename (root ? root : ".", relative, NULL);
}

void
test_load_tiny (vdit_model **model, vdit_ctx **ctx)
{
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  *ctx = vdit_ctx_new (*model, &cp, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vdit_ctx_get_device_name (*ctx), ==, "cpu");
}

double
test_nmse (const float *ref, const float *got, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) ref[i] - got[i];
    num += d * d;
    den += (double) ref[i] * ref[i];
  }
  return den > 0.0 ? num / den : num;
}

double
test_max_abs_diff (const float *a, const float *b, size_t n)
{
  double m = 0.0;
  for (size_t i = 0; i < n; i++)
    m = fmax (m, fabs ((double) a[i] - b[i]));
  return m;
}

float *
test_golden_f32 (const vdit_safetensors *st, const char *name, size_t *n)
{
  const vdit_tensor_view *t = vdit_safetensors_find (st, name);
  if (t == NULL)
    g_error ("golden tensor %s is missing", name);
  float *dst = g_new (float, MAX (t->n_elements, 1));
  vdit_convert_to_f32 (dst, t->data, t->dtype, t->n_elements);
  if (n)
    *n = t->n_elements;
  return dst;
}

void
test_assert_close (const char *what, const float *ref, const float *got, size_t n, double atol,
                   double rtol)
{
  size_t worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite (got[i]))
      g_error ("%s: element %zu is %f", what, i, got[i]);
    double excess = fabs ((double) ref[i] - got[i]) - (atol + rtol * fabs ((double) ref[i]));
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (worst_excess > 0.0)
    g_error ("%s: element %zu is %.8g, expected %.8g (nmse %.3g)", what, worst, got[worst],
             ref[worst], test_nmse (ref, got, n));
}

void
test_random_layout (test_layout *t, GRand *rng, int block_q, int block_k, int n_q, int n_k,
                    int n_heads, double keep)
{
  vdit_block_layout *l = &t->l;
  *l = (vdit_block_layout) { .block_q = block_q, .block_k = block_k, .n_q = n_q, .n_k = n_k,
                             .n_qblocks = (n_q + block_q - 1) / block_q,
                             .n_kblocks = (n_k + block_k - 1) / block_k, .n_heads = n_heads };
  t->row_ptr = g_new (int32_t, (size_t) l->n_heads * (l->n_qblocks + 1));
  t->cols = g_new (int32_t, (size_t) l->n_heads * l->n_qblocks * l->n_kblocks + 1);
  int n = 0;
  for (int h = 0; h < l->n_heads; h++) {
    int32_t *rp = t->row_ptr + (size_t) h * (l->n_qblocks + 1);
    rp[0] = n;
    for (int i = 0; i < l->n_qblocks; i++) {
      for (int j = 0; j < l->n_kblocks; j++)
        if (i != 1 && g_rand_double (rng) < keep)
          t->cols[n++] = j;
      rp[i + 1] = n;
    }
  }
  l->row_ptr = t->row_ptr;
  l->cols = t->cols;
}
