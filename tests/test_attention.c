/* CPU block-sparse attention against a naive masked softmax in double precision. */
#include "cpu/cpu_attention.h"
#include "test_util.h"
#include "vdit.h"

#include <math.h>
#include <omp.h>
#include <string.h>

typedef struct {
  int nq, nk, heads, head_dim;
  int block_q, block_k; /* 0 = dense */
  int layout_heads;     /* 1 or heads */
  double keep;          /* probability a block is kept */
  gboolean bias;
  gboolean bias_holes;  /* some bias entries -inf (whole rows masked) */
} shape;


static float *
random_buf (GRand *rng, size_t n, double amp)
{
  float *b = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    b[i] = (float) g_rand_double_range (rng, -amp, amp);
  return b;
}

static gboolean
kept (const test_layout *hl, int h, int i, int j)
{
  if (hl == NULL)
    return TRUE;
  const vdit_block_layout *l = &hl->l;
  const int32_t *rp = l->row_ptr + (size_t) (l->n_heads == 1 ? 0 : h) * (l->n_qblocks + 1);
  const int qb = i / l->block_q, kb = j / l->block_k;
  for (int c = rp[qb]; c < rp[qb + 1]; c++)
    if (l->cols[c] == kb)
      return TRUE;
  return FALSE;
}

/* out(nq, heads·hd), lse(heads, nq) in double. */
static void
reference (double *out, double *lse, const float *q, const float *k, const float *v,
           const float *bias, const test_layout *hl, const shape *s, float scale)
{
  const int ld = s->heads * s->head_dim, hd = s->head_dim;
  double *p = g_new (double, s->nk);
  for (int h = 0; h < s->heads; h++) {
    for (int i = 0; i < s->nq; i++) {
      double mx = -INFINITY;
      for (int j = 0; j < s->nk; j++) {
        p[j] = -INFINITY;
        if (!kept (hl, h, i, j))
          continue;
        double d = 0.0;
        for (int c = 0; c < hd; c++)
          d += (double) q[(size_t) i * ld + h * hd + c] * k[(size_t) j * ld + h * hd + c];
        d *= scale;
        if (bias)
          d += bias[((size_t) h * s->nq + i) * s->nk + j];
        p[j] = d;
        mx = MAX (mx, d);
      }
      double *oi = out + (size_t) i * ld + h * hd;
      memset (oi, 0, sizeof (double) * hd);
      if (mx == -INFINITY) {
        lse[(size_t) h * s->nq + i] = -INFINITY;
        continue;
      }
      double sum = 0.0;
      for (int j = 0; j < s->nk; j++) {
        const double e = exp (p[j] - mx);
        sum += e;
        for (int c = 0; c < hd; c++)
          oi[c] += e * v[(size_t) j * ld + h * hd + c];
      }
      for (int c = 0; c < hd; c++)
        oi[c] /= sum;
      lse[(size_t) h * s->nq + i] = mx + log (sum);
    }
  }
  g_free (p);
}

static void
check_shape (const shape *s)
{
  GRand *rng = g_rand_new_with_seed (1234 + s->nq * 7 + s->nk * 13 + s->head_dim);
  const int ld = s->heads * s->head_dim;
  const float scale = 1.0f / sqrtf ((float) s->head_dim);
  float *q = random_buf (rng, (size_t) s->nq * ld, 2.0);
  float *k = random_buf (rng, (size_t) s->nk * ld, 2.0);
  float *v = random_buf (rng, (size_t) s->nk * ld, 1.0);
  float *bias = NULL;
  if (s->bias) {
    bias = random_buf (rng, (size_t) s->heads * s->nq * s->nk, 1.0);
    if (s->bias_holes) /* row 3 of head 0 fully masked, scattered holes elsewhere */
      for (size_t j = 0; j < (size_t) s->nk; j++) {
        bias[3 * (size_t) s->nk + j] = -INFINITY;
        bias[5 * (size_t) s->nk + j] = j % 3 ? -INFINITY : bias[5 * (size_t) s->nk + j];
      }
  }
  test_layout hl_store, *hl = NULL;
  void *layout = NULL;
  if (s->block_q > 0) {
    test_random_layout (&hl_store, rng, s->block_q, s->block_k, s->nq, s->nk,
                        s->layout_heads, s->keep);
    hl = &hl_store;
    GError *error = NULL;
    layout = cpu_layout_new (NULL, &hl->l, &error);
    g_assert_no_error (error);
  }

  double *ref = g_new (double, (size_t) s->nq * ld);
  double *ref_lse = g_new (double, (size_t) s->heads * s->nq);
  reference (ref, ref_lse, q, k, v, bias, hl, s, scale);

  float *out = g_new (float, (size_t) s->nq * ld);
  float *lse = g_new (float, (size_t) s->heads * s->nq);
  cpu_attention (NULL, out, ld, q, ld, k, ld, v, ld, s->nq, s->nk, s->heads, s->head_dim,
                 scale, bias, layout, lse);

  double max_ref = 0.0, max_err = 0.0;
  for (size_t i = 0; i < (size_t) s->nq * ld; i++) {
    max_ref = MAX (max_ref, fabs (ref[i]));
    max_err = MAX (max_err, fabs (ref[i] - out[i]));
    g_assert_true (isfinite (out[i]));
  }
  g_assert_cmpfloat (max_err, <=, 1e-5 * max_ref);
  for (size_t i = 0; i < (size_t) s->heads * s->nq; i++) {
    if (ref_lse[i] == -INFINITY) {
      g_assert_cmpfloat (lse[i], ==, -INFINITY);
      continue;
    }
    g_assert_cmpfloat (fabs (lse[i] - ref_lse[i]), <=, 1e-5 * MAX (1.0, fabs (ref_lse[i])));
  }

  /* bit-identical run to run and for any thread count; lse NULL changes nothing */
  float *again = g_new (float, (size_t) s->nq * ld);
  const int threads = omp_get_max_threads ();
  omp_set_num_threads (threads > 1 ? 1 : 3);
  cpu_attention (NULL, again, ld, q, ld, k, ld, v, ld, s->nq, s->nk, s->heads, s->head_dim,
                 scale, bias, layout, NULL);
  omp_set_num_threads (threads);
  g_assert_cmpmem (out, sizeof (float) * s->nq * ld, again, sizeof (float) * s->nq * ld);

  cpu_layout_free (NULL, layout);
  if (hl) {
    g_free (hl->row_ptr);
    g_free (hl->cols);
  }
  g_free (again);
  g_free (out);
  g_free (lse);
  g_free (ref);
  g_free (ref_lse);
  g_free (bias);
  g_free (q);
  g_free (k);
  g_free (v);
  g_rand_free (rng);
}

static void
test_dense (void)
{
  const shape shapes[] = {
    { .nq = 100, .nk = 100, .heads = 2, .head_dim = 12 },
    { .nq = 70, .nk = 130, .heads = 3, .head_dim = 64, .bias = TRUE },
    { .nq = 129, .nk = 65, .heads = 1, .head_dim = 96 },
    { .nq = 1, .nk = 1, .heads = 2, .head_dim = 12 },
    { .nq = 40, .nk = 90, .heads = 2, .head_dim = 12, .bias = TRUE, .bias_holes = TRUE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    check_shape (&shapes[i]);
}

static void
test_sparse (void)
{
  const shape shapes[] = {
    /* ragged last blocks on both sides, per-head layouts, bias */
    { .nq = 150, .nk = 170, .heads = 2, .head_dim = 96, .block_q = 48, .block_k = 40,
      .layout_heads = 2, .keep = 0.5, .bias = TRUE },
    /* one layout for all heads, blocks larger than the kernel tile */
    { .nq = 200, .nk = 200, .heads = 3, .head_dim = 64, .block_q = 100, .block_k = 70,
      .layout_heads = 1, .keep = 0.6 },
    /* frame-sized blocks not a multiple of 64, nq != nk */
    { .nq = 300, .nk = 225, .heads = 2, .head_dim = 12, .block_q = 75, .block_k = 75,
      .layout_heads = 2, .keep = 0.4 },
    /* everything kept */
    { .nq = 130, .nk = 130, .heads = 2, .head_dim = 12, .block_q = 64, .block_k = 64,
      .layout_heads = 1, .keep = 1.0, .bias = TRUE, .bias_holes = TRUE },
    /* tiny blocks */
    { .nq = 37, .nk = 41, .heads = 2, .head_dim = 12, .block_q = 5, .block_k = 3,
      .layout_heads = 2, .keep = 0.3 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    check_shape (&shapes[i]);
}

/* A layout with every block kept gives exactly the dense result. */
static void
test_all_kept_is_dense (void)
{
  const int nq = 190, nk = 150, heads = 2, hd = 64, ld = heads * hd, b = 64;
  GRand *rng = g_rand_new_with_seed (7);
  float *q = random_buf (rng, (size_t) nq * ld, 2.0);
  float *k = random_buf (rng, (size_t) nk * ld, 2.0);
  float *v = random_buf (rng, (size_t) nk * ld, 1.0);
  const int nqb = (nq + b - 1) / b, nkb = (nk + b - 1) / b;
  int32_t *rp = g_new (int32_t, nqb + 1), *cols = g_new (int32_t, nqb * nkb);
  rp[0] = 0;
  for (int i = 0; i < nqb; i++) {
    for (int j = 0; j < nkb; j++)
      cols[i * nkb + j] = j;
    rp[i + 1] = (i + 1) * nkb;
  }
  vdit_block_layout l = { b, b, nq, nk, nqb, nkb, 1, rp, cols };
  GError *error = NULL;
  void *layout = cpu_layout_new (NULL, &l, &error);
  g_assert_no_error (error);
  float *a = g_new (float, (size_t) nq * ld), *d = g_new (float, (size_t) nq * ld);
  float *la = g_new (float, (size_t) heads * nq), *ld_ = g_new (float, (size_t) heads * nq);
  cpu_attention (NULL, a, ld, q, ld, k, ld, v, ld, nq, nk, heads, hd, 0.125f, NULL, layout, la);
  cpu_attention (NULL, d, ld, q, ld, k, ld, v, ld, nq, nk, heads, hd, 0.125f, NULL, NULL, ld_);
  g_assert_cmpmem (a, sizeof (float) * nq * ld, d, sizeof (float) * nq * ld);
  g_assert_cmpmem (la, sizeof (float) * heads * nq, ld_, sizeof (float) * heads * nq);
  cpu_layout_free (NULL, layout);
  g_free (a);
  g_free (d);
  g_free (la);
  g_free (ld_);
  g_free (rp);
  g_free (cols);
  g_free (q);
  g_free (k);
  g_free (v);
  g_rand_free (rng);
}

static void
test_block_scores (void)
{
  const int nq = 130, nk = 110, heads = 2, hd = 12, ld = heads * hd, bq = 48, bk = 40;
  const float scale = 0.3f;
  GRand *rng = g_rand_new_with_seed (99);
  float *q = random_buf (rng, (size_t) nq * ld, 2.0);
  float *k = random_buf (rng, (size_t) nk * ld, 2.0);
  float *v = random_buf (rng, (size_t) nk * ld, 1.0);
  float *out = g_new (float, (size_t) nq * ld), *lse = g_new (float, (size_t) heads * nq);
  cpu_attention (NULL, out, ld, q, ld, k, ld, v, ld, nq, nk, heads, hd, scale, NULL, NULL, lse);
  lse[7] = -INFINITY; /* a row without mass contributes nothing */

  const int nqb = (nq + bq - 1) / bq, nkb = (nk + bk - 1) / bk;
  float *scores = g_new (float, (size_t) heads * nqb * nkb);
  cpu_block_scores (NULL, scores, q, ld, k, ld, lse, nq, nk, heads, hd, scale, bq, bk);

  double *ref = g_new0 (double, (size_t) heads * nqb * nkb);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < nq; i++) {
      if (lse[(size_t) h * nq + i] == -INFINITY)
        continue;
      for (int j = 0; j < nk; j++) {
        double d = 0.0;
        for (int c = 0; c < hd; c++)
          d += (double) q[(size_t) i * ld + h * hd + c] * k[(size_t) j * ld + h * hd + c];
        ref[((size_t) h * nqb + i / bq) * nkb + j / bk] +=
          exp (d * scale - lse[(size_t) h * nq + i]);
      }
    }
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < nqb; i++) {
      double row = 0.0;
      for (int j = 0; j < nkb; j++) {
        const size_t at = ((size_t) h * nqb + i) * nkb + j;
        g_assert_cmpfloat (fabs (scores[at] - ref[at]), <=, 1e-5 * MAX (1.0, ref[at]));
        row += ref[at];
      }
      /* each full row's mass sums to 1, so a block row sums to its live row count */
      const int rows = MIN (bq, nq - i * bq) - (h == 0 && i == 0 ? 1 : 0);
      g_assert_cmpfloat (fabs (row - rows), <=, 1e-4 * rows);
    }
  g_free (ref);
  g_free (scores);
  g_free (out);
  g_free (lse);
  g_free (q);
  g_free (k);
  g_free (v);
  g_rand_free (rng);
}

static void
test_layout_errors (void)
{
  int32_t rp[] = { 0, 2, 1 }, cols[] = { 0, 1 };
  vdit_block_layout l = { 64, 64, 100, 100, 2, 2, 1, rp, cols };
  GError *error = NULL;
  g_assert_null (cpu_layout_new (NULL, &l, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  int32_t rp2[] = { 0, 1, 2 }, cols2[] = { 0, 2 };
  l.row_ptr = rp2;
  l.cols = cols2;
  g_assert_null (cpu_layout_new (NULL, &l, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  l.cols = cols;
  l.n_qblocks = 3;
  g_assert_null (cpu_layout_new (NULL, &l, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

/* A 28,800-token sequence runs without O(nq·nk) memory (one head, rows of a few
 * query blocks against every key, through a layout so the test stays fast). */
static void
test_long_sequence (void)
{
  const int n = 28800, hd = 12, b = 3600, nb = n / b;
  GRand *rng = g_rand_new_with_seed (5);
  float *q = random_buf (rng, (size_t) n * hd, 1.0);
  float *k = random_buf (rng, (size_t) n * hd, 1.0);
  float *v = random_buf (rng, (size_t) n * hd, 1.0);
  int32_t *rp = g_new0 (int32_t, nb + 1), *cols = g_new (int32_t, nb);
  for (int j = 0; j < nb; j++) /* query block 0 sees everything, the rest nothing */
    cols[j] = j;
  for (int i = 1; i <= nb; i++)
    rp[i] = nb;
  vdit_block_layout l = { b, b, n, n, nb, nb, 1, rp, cols };
  GError *error = NULL;
  void *layout = cpu_layout_new (NULL, &l, &error);
  g_assert_no_error (error);
  float *out = g_new (float, (size_t) n * hd), *lse = g_new (float, n);
  cpu_attention (NULL, out, hd, q, hd, k, hd, v, hd, n, n, 1, hd, 0.3f, NULL, layout, lse);
  /* row 0 against a double reference */
  double mx = -INFINITY, sum = 0.0, o[12] = { 0 };
  for (int j = 0; j < n; j++) {
    double d = 0.0;
    for (int c = 0; c < hd; c++)
      d += (double) q[c] * k[(size_t) j * hd + c];
    mx = MAX (mx, d * 0.3);
  }
  for (int j = 0; j < n; j++) {
    double d = 0.0;
    for (int c = 0; c < hd; c++)
      d += (double) q[c] * k[(size_t) j * hd + c];
    const double e = exp (d * 0.3 - mx);
    sum += e;
    for (int c = 0; c < hd; c++)
      o[c] += e * v[(size_t) j * hd + c];
  }
  for (int c = 0; c < hd; c++)
    g_assert_cmpfloat (fabs (out[c] - o[c] / sum), <=, 1e-5);
  g_assert_cmpfloat (fabs (lse[0] - (mx + log (sum))), <=, 1e-5 * fabs (mx + log (sum)) + 1e-5);
  g_assert_cmpfloat (lse[b], ==, -INFINITY);
  g_assert_cmpfloat (out[(size_t) b * hd], ==, 0.0f);
  cpu_layout_free (NULL, layout);
  g_free (out);
  g_free (lse);
  g_free (rp);
  g_free (cols);
  g_free (q);
  g_free (k);
  g_free (v);
  g_rand_free (rng);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/attention/dense", test_dense);
  g_test_add_func ("/attention/sparse", test_sparse);
  g_test_add_func ("/attention/all-kept-is-dense", test_all_kept_is_dense);
  g_test_add_func ("/attention/block-scores", test_block_scores);
  g_test_add_func ("/attention/layout-errors", test_layout_errors);
  g_test_add_func ("/attention/long-sequence", test_long_sequence);
  return g_test_run ();
}
