#include "test_util.h"
#include "dit.h"
#include "model.h"

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

/* One DiT forward of patches (n values in and out) with a caption of rows (n_text,
 * d_model) of host. */
static float *
one_key_forward (vdit_backend *be, vdit_dit *dit, vdit_dit_ws *ws, const vdit_config *cfg,
                 const float *patches, size_t n, const float *host, int n_text)
{
  GError *error = NULL;
  const size_t n_in = (size_t) n_text * cfg->text.d_model;
  void *text = be->iface->alloc (be->context, n_in, VDIT_ELEM_ACT, &error);
  g_assert_no_error (error);
  g_assert_true (be->iface->upload (be->context, text, host, n_in, VDIT_ELEM_ACT, &error));
  vdit_dit_text *t = vdit_dit_text_new (dit, text, n_text, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vdit_dit_text_tokens (t), ==, n_text);
  float *out = g_new (float, n);
  g_assert_true (vdit_dit_forward (dit, ws, patches, 400.0f, t, NULL, 0, 1, out, NULL, &error));
  g_assert_no_error (error);
  vdit_dit_text_free (dit, t);
  be->iface->release (be->context, text);
  return out;
}

void
test_dit_one_key (vdit_backend *be, const vdit_model *model, double tol)
{
  GError *error = NULL;
  const vdit_config *cfg = model->config;
  vdit_dit *dit = vdit_dit_new (be, cfg, model->weights, &error);
  g_assert_no_error (error);
  int grid[3];
  vdit_model_token_grid (model, model->info.frames, grid);
  vdit_dit_ws *ws = vdit_dit_ws_new (dit, grid[0], grid[1], grid[2], &error);
  g_assert_no_error (error);
  const int dm = cfg->text.d_model;
  const size_t n = (size_t) vdit_dit_ws_tokens (ws) * cfg->dit.patch[0] * cfg->dit.patch[1] *
                   cfg->dit.patch[2] * cfg->dit.in_channels;
  GRand *rng = g_rand_new_with_seed (17);
  float *patches = g_new (float, n), *rows = g_new (float, 3 * (size_t) dm);
  for (size_t i = 0; i < n; i++)
    patches[i] = (float) g_rand_double_range (rng, -1.0, 1.0);
  for (int i = 0; i < dm; i++) { /* rows: a, a (the same token twice), b */
    rows[i] = rows[dm + i] = (float) g_rand_double_range (rng, -1.0, 1.0);
    rows[2 * dm + i] = (float) g_rand_double_range (rng, -1.0, 1.0);
  }
  float *one = one_key_forward (be, dit, ws, cfg, patches, n, rows, 1);
  float *two = one_key_forward (be, dit, ws, cfg, patches, n, rows, 2);
  float *other = one_key_forward (be, dit, ws, cfg, patches, n, rows + 2 * dm, 1);
  const double nmse = test_nmse (two, one, n), apart = test_nmse (two, other, n);
  g_test_message ("one key against the same key twice: nmse %.3g (another key: %.3g)", nmse,
                  apart);
  g_assert_cmpfloat (nmse, <=, tol);
  g_assert_cmpfloat (apart, >, 100.0 * tol); /* the caption's row is in the output */
  g_free (one), g_free (two), g_free (other);
  g_free (patches), g_free (rows);
  g_rand_free (rng);
  vdit_dit_ws_free (dit, ws);
  vdit_dit_free (dit);
}
