/* Attention policies: tile masks, adaptive search, the mask-search recorder. */
#include "adaptive_select.h"
#include "attention_plan.h"
#include "backend.h"
#include "ctx.h"
#include "mask_search.h"
#include "model.h"
#include "test_util.h"
#include "vdit.h"

#include <math.h>
#include <string.h>

typedef struct {
  vdit_backend be;
  vdit_config cfg;
} fixture;

static void
fixture_init (fixture *f, int depth, VditAttention mode, int tile_k, int block, float sparsity,
              float warmup, const float *search, int n_search)
{
  GError *error = NULL;
  g_assert_true (vdit_backend_cpu_init (&f->be, 0, &error));
  g_assert_no_error (error);
  memset (&f->cfg, 0, sizeof f->cfg);
  f->cfg.dit.depth = depth;
  vdit_attention_config *a = &f->cfg.attention;
  a->mode = mode;
  a->tile_k = tile_k;
  a->block = block;
  a->sparsity = sparsity;
  a->warmup = warmup;
  a->n_search_steps = n_search;
  a->search_steps = g_memdup2 (search, sizeof (float) * MAX (n_search, 1));
}

static void
fixture_clear (fixture *f)
{
  g_free (f->cfg.attention.search_steps);
  g_free (f->cfg.attention.plan);
  vdit_backend_free (&f->be);
}

static vdit_attn_policy *
new_policy (fixture *f, VditAttention mode, int frames, int tpf, int heads, int hd, int steps,
            float sparsity)
{
  const vdit_attn_policy_params params = {
    .mode = mode, .frames = frames, .tokens_per_frame = tpf, .depth = f->cfg.dit.depth,
    .heads = heads, .head_dim = hd, .steps = steps, .sparsity = sparsity,
  };
  GError *error = NULL;
  vdit_attn_policy *p = vdit_attn_policy_new (&f->be, &f->cfg, &params, &error);
  g_assert_no_error (error);
  return p;
}

static float *
random_buf (GRand *rng, size_t n, double amp)
{
  float *b = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    b[i] = (float) g_rand_double_range (rng, -amp, amp);
  return b;
}

static gboolean
layout_keeps (const vdit_block_layout *l, int h, int qb, int kb)
{
  const int32_t *rp = l->row_ptr + (size_t) (l->n_heads == 1 ? 0 : h) * (l->n_qblocks + 1);
  for (int c = rp[qb]; c < rp[qb + 1]; c++)
    if (l->cols[c] == kb)
      return TRUE;
  return FALSE;
}

/* Dense softmax attention in double with the layout's blocks as a token mask. */
static double *
masked_reference (const float *q, const float *k, const float *v, int n, int heads, int hd,
                  float scale, const vdit_block_layout *l)
{
  const int ld = heads * hd;
  double *out = g_new0 (double, (size_t) n * ld), *p = g_new (double, n);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < n; i++) {
      double mx = -INFINITY, sum = 0.0;
      for (int j = 0; j < n; j++) {
        p[j] = -INFINITY;
        if (l && !layout_keeps (l, h, i / l->block_q, j / l->block_k))
          continue;
        double d = 0.0;
        for (int c = 0; c < hd; c++)
          d += (double) q[(size_t) i * ld + h * hd + c] * k[(size_t) j * ld + h * hd + c];
        p[j] = d * scale;
        mx = MAX (mx, p[j]);
      }
      for (int j = 0; j < n; j++) {
        if (p[j] == -INFINITY)
          continue;
        const double e = exp (p[j] - mx);
        sum += e;
        for (int c = 0; c < hd; c++)
          out[(size_t) i * ld + h * hd + c] += e * v[(size_t) j * ld + h * hd + c];
      }
      for (int c = 0; sum > 0.0 && c < hd; c++)
        out[(size_t) i * ld + h * hd + c] /= sum;
    }
  g_free (p);
  return out;
}

static void
assert_close (const float *a, const double *ref, size_t n, double rel)
{
  double max_ref = 0.0, max_err = 0.0;
  for (size_t i = 0; i < n; i++) {
    max_ref = MAX (max_ref, fabs (ref[i]));
    max_err = MAX (max_err, fabs (a[i] - ref[i]));
  }
  g_assert_cmpfloat (max_err, <=, rel * max_ref);
}

static void
test_tile_counts (void)
{
  const int cases[][2] = { { 8, 1 }, { 8, 2 }, { 8, 4 }, { 24, 3 }, { 16, 4 }, { 4, 1 },
                           { 4, 3 }, { 5, 0 }, { 5, 5 }, { 3, 7 }, { 1, 0 } };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    const int t = cases[c][0], k = cases[c][1];
    vdit_block_layout l;
    vdit_tile_layout (&l, t, 10, k);
    const int64_t kept = l.row_ptr[t];
    int64_t expect = (int64_t) t * t;
    if (k == 0)
      expect = t;
    else if (k < t)
      expect = (int64_t) t * k + (int64_t) k * (t - k) + (t - k);
    g_assert_cmpint (kept, ==, expect);
    g_assert_cmpint (vdit_tile_kept_count (t, k), ==, expect);
    g_assert_cmpint (l.n_qblocks, ==, t);
    g_assert_cmpint (l.block_q, ==, 10);
    for (int i = 0; i < t; i++) {
      g_assert_true (layout_keeps (&l, 0, i, i)); /* diagonal */
      for (int j = 0; j < t; j++)
        g_assert_cmpint (layout_keeps (&l, 0, i, j), ==, i == j || i < k || j < k);
    }
    g_free ((int32_t *) l.row_ptr);
    g_free ((int32_t *) l.cols);
  }
  /* the paper's masks */
  const int paper[][2] = { { 8, 2 }, { 8, 1 }, { 24, 3 } };
  for (guint c = 0; c < G_N_ELEMENTS (paper); c++) {
    const int t = paper[c][0], k = paper[c][1];
    const double density = (double) vdit_tile_kept_count (t, k) / ((double) t * t);
    g_test_message ("tile %d:%d (T=%d): %" G_GINT64_FORMAT " of %d tiles, density %.4f, "
                    "sparsity %.1f %%", k, t - k, t, vdit_tile_kept_count (t, k), t * t, density,
                    100.0 * (1.0 - density));
  }
  g_assert_cmpint (vdit_tile_kept_count (8, 2), ==, 34);
  g_assert_cmpint (vdit_tile_kept_count (8, 1), ==, 22);
  g_assert_cmpint (vdit_tile_kept_count (24, 3), ==, 156);
}

/* The tile policy's output equals dense attention with the tile mask applied, per layer
 * plan, including a k ≥ T layer (dense) and frames not a multiple of the kernel tile. */
static void
test_tile_equals_masked_dense (void)
{
  const int frames = 5, tpf = 37, heads = 2, hd = 12, n = frames * tpf, ld = heads * hd;
  const float scale = 1.0f / sqrtf ((float) hd);
  fixture f;
  const float search[] = { 0.5f };
  fixture_init (&f, 3, VDIT_ATTENTION_TILE, 1, 64, 0.8f, 0.2f, search, 1);
  f.cfg.attention.plan = g_new (int, 3);
  f.cfg.attention.plan[0] = 2;
  f.cfg.attention.plan[1] = 0;
  f.cfg.attention.plan[2] = 9;
  vdit_attn_policy *p = new_policy (&f, VDIT_ATTENTION_TILE, frames, tpf, heads, hd, 4, -1);

  GRand *rng = g_rand_new_with_seed (11);
  float *q = random_buf (rng, (size_t) n * ld, 2.0), *k = random_buf (rng, (size_t) n * ld, 2.0);
  float *v = random_buf (rng, (size_t) n * ld, 1.0), *out = g_new (float, (size_t) n * ld);
  double density = 0.0;
  for (int layer = 0; layer < 3; layer++) {
    GError *error = NULL;
    g_assert_true (vdit_attn_policy_run (p, 0, layer, 0, out, ld, q, ld, k, ld, v, ld, scale,
                                         &error));
    g_assert_no_error (error);
    const int kk = f.cfg.attention.plan[layer];
    vdit_block_layout l;
    vdit_tile_layout (&l, frames, tpf, kk);
    double *ref = masked_reference (q, k, v, n, heads, hd, scale, &l);
    assert_close (out, ref, (size_t) n * ld, 1e-5);
    density += (double) vdit_tile_kept_count (frames, kk) / (frames * frames);
    g_free (ref);
    g_free ((int32_t *) l.row_ptr);
    g_free ((int32_t *) l.cols);
  }
  g_assert_cmpfloat (fabs (vdit_attn_policy_density (p) - density / 3), <, 1e-12);

  vdit_attn_policy_free (p);
  g_free (q);
  g_free (k);
  g_free (v);
  g_free (out);
  g_rand_free (rng);
  fixture_clear (&f);
}

/* Random block layouts with ragged blocks: backend attention == masked dense. */
static void
test_sparse_equals_masked_dense (void)
{
  const int n = 150, heads = 3, hd = 12, ld = heads * hd, block = 32;
  fixture f;
  const float search[] = { 0.5f };
  fixture_init (&f, 1, VDIT_ATTENTION_FULL, 1, block, 0.5f, 0.0f, search, 1);
  GRand *rng = g_rand_new_with_seed (3);
  float *q = random_buf (rng, (size_t) n * ld, 2.0), *k = random_buf (rng, (size_t) n * ld, 2.0);
  float *v = random_buf (rng, (size_t) n * ld, 1.0), *out = g_new (float, (size_t) n * ld);
  const int nb = (n + block - 1) / block;
  float *scores = random_buf (rng, (size_t) heads * nb * nb, 1.0);
  for (size_t i = 0; i < (size_t) heads * nb * nb; i++)
    scores[i] = fabsf (scores[i]);
  vdit_block_layout l;
  vdit_adaptive_select (&l, NULL, scores, heads, n, n, block, block, 0.5f);
  GError *error = NULL;
  void *layout = f.be.iface->layout_new (f.be.context, &l, &error);
  g_assert_no_error (error);
  f.be.iface->attention (f.be.context, out, ld, q, ld, k, ld, v, ld, n, n, heads, hd, 0.3f, NULL,
                         layout, NULL);
  double *ref = masked_reference (q, k, v, n, heads, hd, 0.3f, &l);
  assert_close (out, ref, (size_t) n * ld, 1e-5);
  f.be.iface->layout_free (f.be.context, layout);
  g_free (ref);
  g_free ((int32_t *) l.row_ptr);
  g_free ((int32_t *) l.cols);
  g_free (scores);
  g_free (q);
  g_free (k);
  g_free (v);
  g_free (out);
  g_rand_free (rng);
  fixture_clear (&f);
}

/* Adaptive with sparsity 0 runs every step (warm-up, searches, reuse) exactly as full. */
static void
test_adaptive_zero_is_full (void)
{
  const int frames = 4, tpf = 40, heads = 2, hd = 12, n = frames * tpf, ld = heads * hd;
  const int depth = 2, steps = 6;
  fixture f;
  const float search[] = { 0.34f, 0.67f };
  fixture_init (&f, depth, VDIT_ATTENTION_ADAPTIVE, 1, 32, 0.8f, 0.2f, search, 2);
  vdit_attn_policy *ad = new_policy (&f, VDIT_ATTENTION_ADAPTIVE, frames, tpf, heads, hd, steps,
                                     0.0f);
  vdit_attn_policy *full = new_policy (&f, VDIT_ATTENTION_FULL, frames, tpf, heads, hd, steps,
                                       -1);
  GRand *rng = g_rand_new_with_seed (21);
  float *a = g_new (float, (size_t) n * ld), *b = g_new (float, (size_t) n * ld);
  for (int step = 0; step < steps; step++)
    for (int pass = 0; pass < 2; pass++)
      for (int layer = 0; layer < depth; layer++) {
        float *q = random_buf (rng, (size_t) n * ld, 2.0);
        float *k = random_buf (rng, (size_t) n * ld, 2.0);
        float *v = random_buf (rng, (size_t) n * ld, 1.0);
        GError *error = NULL;
        g_assert_true (vdit_attn_policy_run (ad, step, layer, pass, a, ld, q, ld, k, ld, v, ld,
                                             0.3f, &error));
        g_assert_true (vdit_attn_policy_run (full, step, layer, pass, b, ld, q, ld, k, ld, v, ld,
                                             0.3f, &error));
        g_assert_no_error (error);
        g_assert_cmpmem (a, sizeof (float) * n * ld, b, sizeof (float) * n * ld);
        g_free (q);
        g_free (k);
        g_free (v);
      }
  g_assert_nonnull (vdit_attn_policy_get_layout (ad, 1, 1));
  g_assert_cmpfloat (vdit_attn_policy_density (ad), ==, 1.0);
  vdit_attn_policy_free (ad);
  vdit_attn_policy_free (full);
  g_free (a);
  g_free (b);
  g_rand_free (rng);
  fixture_clear (&f);
}

/* q, k with a planted block structure: query block i of head h attends to the key
 * blocks truth[h][i][0..2] (the sink, the diagonal and one more). */
typedef struct {
  int n, heads, hd, block, nb;
  float *q, *k, *v;
  int *truth; /* (heads, nb, 3) */
} planted;

static void
planted_init (planted *s, GRand *rng, int heads, int nb, int block, int hd, double noise)
{
  s->heads = heads;
  s->nb = nb;
  s->block = block;
  s->hd = hd;
  s->n = nb * block;
  const int ld = heads * hd;
  s->truth = g_new (int, (size_t) heads * nb * 3);
  float *codes = random_buf (rng, (size_t) heads * nb * hd, 1.0);
  for (int c = 0; c < heads * nb; c++) { /* unit codes */
    double norm = 0.0;
    for (int d = 0; d < hd; d++)
      norm += (double) codes[c * hd + d] * codes[c * hd + d];
    for (int d = 0; d < hd; d++)
      codes[c * hd + d] /= (float) sqrt (norm);
  }
  s->q = random_buf (rng, (size_t) s->n * ld, noise);
  s->k = random_buf (rng, (size_t) s->n * ld, noise);
  s->v = random_buf (rng, (size_t) s->n * ld, 1.0);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < nb; i++) {
      int *t = s->truth + ((size_t) h * nb + i) * 3;
      t[0] = 0;
      t[1] = i == 0 ? 1 + g_rand_int_range (rng, 0, nb - 1) : i;
      do
        t[2] = g_rand_int_range (rng, 1, nb);
      while (t[2] == t[1]);
      for (int r = i * block; r < (i + 1) * block; r++)
        for (int d = 0; d < hd; d++) {
          s->k[(size_t) r * ld + h * hd + d] += 2.5f * codes[((size_t) h * nb + i) * hd + d];
          for (int c = 0; c < 3; c++)
            s->q[(size_t) r * ld + h * hd + d] += 2.5f * codes[((size_t) h * nb + t[c]) * hd + d];
        }
    }
  g_free (codes);
}

static void
planted_clear (planted *s)
{
  g_free (s->q);
  g_free (s->k);
  g_free (s->v);
  g_free (s->truth);
}

static double
planted_recall (const planted *s, const vdit_block_layout *l)
{
  int found = 0;
  for (int h = 0; h < s->heads; h++)
    for (int i = 0; i < s->nb; i++)
      for (int c = 0; c < 3; c++)
        found += layout_keeps (l, h, i, s->truth[((size_t) h * s->nb + i) * 3 + c]);
  return (double) found / (3.0 * s->heads * s->nb);
}

static void
test_adaptive_finds_planted_blocks (void)
{
  const int heads = 3, nb = 16, block = 16, hd = 32, frames = 4;
  GRand *rng = g_rand_new_with_seed (42);
  planted s;
  planted_init (&s, rng, heads, nb, block, hd, 0.3);
  const int ld = heads * hd;
  fixture f;
  const float search[] = { 0.0f };
  fixture_init (&f, 1, VDIT_ATTENTION_ADAPTIVE, 1, block, 0.8f, 0.0f, search, 1);
  /* keep 3 of 16 blocks per row */
  vdit_attn_policy *p = new_policy (&f, VDIT_ATTENTION_ADAPTIVE, frames, s.n / frames, heads, hd,
                                    4, 1.0f - 3.0f / 16.0f);
  float *out = g_new (float, (size_t) s.n * ld);
  GError *error = NULL;
  g_assert_true (vdit_attn_policy_run (p, 0, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld, 1.0f,
                                       &error));
  g_assert_no_error (error);
  const vdit_block_layout *l = vdit_attn_policy_get_layout (p, 0, 0);
  g_assert_nonnull (l);
  const double recall = planted_recall (&s, l);
  g_test_message ("planted blocks found: %.3f", recall);
  g_assert_cmpfloat (recall, >=, 0.95);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < nb; i++)
      g_assert_true (layout_keeps (l, h, i, 0)); /* sink */

  /* the next step runs the pattern: masked dense with it */
  g_assert_true (vdit_attn_policy_run (p, 1, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld, 1.0f,
                                       &error));
  double *ref = masked_reference (s.q, s.k, s.v, s.n, heads, hd, 1.0f, l);
  assert_close (out, ref, (size_t) s.n * ld, 1e-5);
  g_assert_cmpfloat (fabs (vdit_attn_policy_density (p) - 3.0 / 16.0), <, 1e-9);
  g_free (ref);
  g_free (out);
  vdit_attn_policy_free (p);
  planted_clear (&s);
  g_rand_free (rng);
  fixture_clear (&f);
}

static void
assert_same_layout (const vdit_block_layout *a, const vdit_block_layout *b)
{
  g_assert_cmpint (a->n_heads, ==, b->n_heads);
  g_assert_cmpint (a->n_qblocks, ==, b->n_qblocks);
  const size_t n_rows = (size_t) a->n_heads * (a->n_qblocks + 1);
  g_assert_cmpmem (a->row_ptr, n_rows * 4, b->row_ptr, n_rows * 4);
  g_assert_cmpmem (a->cols, a->row_ptr[n_rows - 1] * 4, b->cols, b->row_ptr[n_rows - 1] * 4);
}

/* A later search scores with the LSE cached at the first one (one pass); on the same
 * inputs, and on slightly moved ones, it picks what a fresh two-pass search picks. */
static void
test_cached_lse_search (void)
{
  const int heads = 2, nb = 12, block = 16, hd = 24, frames = 3, steps = 4;
  GRand *rng = g_rand_new_with_seed (8);
  planted s;
  planted_init (&s, rng, heads, nb, block, hd, 0.5);
  const int ld = heads * hd;
  fixture f;
  const float search[] = { 0.0f, 0.25f, 0.5f };
  fixture_init (&f, 1, VDIT_ATTENTION_ADAPTIVE, 1, block, 0.75f, 0.0f, search, 3);
  vdit_attn_policy *cached = new_policy (&f, VDIT_ATTENTION_ADAPTIVE, frames, s.n / frames, heads,
                                         hd, steps, -1);
  vdit_attn_policy *fresh = new_policy (&f, VDIT_ATTENTION_ADAPTIVE, frames, s.n / frames, heads,
                                        hd, steps, -1);
  float *out = g_new (float, (size_t) s.n * ld);
  float *q2 = g_memdup2 (s.q, sizeof (float) * s.n * ld);
  float *k2 = g_memdup2 (s.k, sizeof (float) * s.n * ld);
  for (size_t i = 0; i < (size_t) s.n * ld; i++) {
    q2[i] += (float) g_rand_double_range (rng, -0.02, 0.02);
    k2[i] += (float) g_rand_double_range (rng, -0.02, 0.02);
  }
  GError *error = NULL;
  /* step 0: first search (dense + LSE, then scores); step 1: search with the cached LSE */
  g_assert_true (vdit_attn_policy_run (cached, 0, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld,
                                       0.5f, &error));
  g_assert_true (vdit_attn_policy_run (cached, 1, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld,
                                       0.5f, &error));
  g_assert_true (vdit_attn_policy_run (fresh, 0, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld,
                                       0.5f, &error));
  g_assert_no_error (error);
  assert_same_layout (vdit_attn_policy_get_layout (cached, 0, 0),
                      vdit_attn_policy_get_layout (fresh, 0, 0));

  /* step 2 on moved inputs, still with step 0's LSE, vs a fresh search on them */
  g_assert_true (vdit_attn_policy_run (cached, 2, 0, 1, out, ld, q2, ld, k2, ld, s.v, ld, 0.5f,
                                       &error)); /* pass 1: its own first search */
  g_assert_true (vdit_attn_policy_run (cached, 2, 0, 0, out, ld, q2, ld, k2, ld, s.v, ld, 0.5f,
                                       &error));
  vdit_attn_policy *fresh2 = new_policy (&f, VDIT_ATTENTION_ADAPTIVE, frames, s.n / frames,
                                         heads, hd, steps, -1);
  g_assert_true (vdit_attn_policy_run (fresh2, 0, 0, 0, out, ld, q2, ld, k2, ld, s.v, ld, 0.5f,
                                       &error));
  g_assert_no_error (error);
  assert_same_layout (vdit_attn_policy_get_layout (cached, 0, 0),
                      vdit_attn_policy_get_layout (fresh2, 0, 0));
  assert_same_layout (vdit_attn_policy_get_layout (cached, 0, 1),
                      vdit_attn_policy_get_layout (fresh2, 0, 0));

  /* between searches the pattern is reused */
  const vdit_block_layout *before = vdit_attn_policy_get_layout (cached, 0, 0);
  g_assert_true (vdit_attn_policy_run (cached, 3, 0, 0, out, ld, s.v, ld, s.k, ld, s.v, ld, 0.5f,
                                       &error));
  g_assert_true (before == vdit_attn_policy_get_layout (cached, 0, 0));
  assert_same_layout (before, vdit_attn_policy_get_layout (fresh2, 0, 0));

  vdit_attn_policy_free (cached);
  vdit_attn_policy_free (fresh);
  vdit_attn_policy_free (fresh2);
  g_free (q2);
  g_free (k2);
  g_free (out);
  planted_clear (&s);
  g_rand_free (rng);
  fixture_clear (&f);
}

/* Warm-up steps run dense; the first step after it searches. */
static void
test_adaptive_warmup (void)
{
  const int heads = 2, nb = 8, block = 16, hd = 24, frames = 2, steps = 10;
  GRand *rng = g_rand_new_with_seed (9);
  planted s;
  planted_init (&s, rng, heads, nb, block, hd, 0.5);
  const int ld = heads * hd;
  fixture f;
  const float search[] = { 0.6f };
  fixture_init (&f, 1, VDIT_ATTENTION_ADAPTIVE, 1, block, 0.5f, 0.3f, search, 1);
  vdit_attn_policy *p = new_policy (&f, VDIT_ATTENTION_ADAPTIVE, frames, s.n / frames, heads, hd,
                                    steps, -1);
  float *out = g_new (float, (size_t) s.n * ld);
  GError *error = NULL;
  for (int step = 0; step < 3; step++) {
    g_assert_true (vdit_attn_policy_run (p, step, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld, 0.5f,
                                         &error));
    g_assert_null (vdit_attn_policy_get_layout (p, 0, 0));
    g_assert_cmpfloat (vdit_attn_policy_density (p), ==, 1.0);
  }
  g_assert_true (vdit_attn_policy_run (p, 3, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld, 0.5f,
                                       &error));
  g_assert_nonnull (vdit_attn_policy_get_layout (p, 0, 0));
  g_assert_true (vdit_attn_policy_run (p, 4, 0, 0, out, ld, s.q, ld, s.k, ld, s.v, ld, 0.5f,
                                       &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (fabs (vdit_attn_policy_density (p) - 0.5), <, 1e-9);
  g_free (out);
  vdit_attn_policy_free (p);
  planted_clear (&s);
  g_rand_free (rng);
  fixture_clear (&f);
}

/* Head-adaptive counts: a head that already recalls most of its mass gives blocks to a
 * diffuse head; the average count stays at the target; the sink is always kept. */
static void
test_head_adaptive (void)
{
  const int heads = 3, nqb = 6, nkb = 10, block = 8, n = nkb * block;
  float *scores = g_new0 (float, (size_t) heads * nqb * nkb);
  for (int i = 0; i < nqb; i++)
    for (int j = 0; j < nkb; j++) {
      /* head 0: peaked on two blocks; head 1: flat; head 2: geometric */
      scores[(0 * nqb + i) * nkb + j] = (j == i || j == i + 1) ? 4.0f : 0.01f;
      scores[(1 * nqb + i) * nkb + j] = 1.0f;
      scores[(2 * nqb + i) * nkb + j] = powf (0.6f, (float) ((j + i) % nkb));
    }
  vdit_block_layout l;
  int keep[3];
  const double density = vdit_adaptive_select (&l, keep, scores, heads, nqb * block, n, block,
                                               block, 0.6f);
  g_test_message ("keep per head: %d %d %d", keep[0], keep[1], keep[2]);
  g_assert_cmpint (keep[0] + keep[1] + keep[2], ==, 3 * 4);
  g_assert_cmpint (keep[0], <, 4);
  g_assert_cmpint (keep[1], >, 4);
  g_assert_cmpfloat (fabs (density - 0.4), <, 1e-12);
  double recall[3];
  vdit_layout_recall (&l, scores, heads, recall);
  g_assert_cmpfloat (recall[0], >=, VDIT_ADAPTIVE_RECALL);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < nqb; i++) {
      const int32_t *rp = l.row_ptr + h * (nqb + 1);
      g_assert_cmpint (rp[i + 1] - rp[i], ==, keep[h]);
      g_assert_cmpint (l.cols[rp[i]], ==, 0);
      for (int c = rp[i] + 1; c < rp[i + 1]; c++)
        g_assert_cmpint (l.cols[c], >, l.cols[c - 1]);
    }
  g_free ((int32_t *) l.row_ptr);
  g_free ((int32_t *) l.cols);

  /* sparsity 0 keeps everything, whatever the heads recall */
  vdit_adaptive_select (&l, keep, scores, heads, nqb * block, n, block, block, 0.0f);
  for (int h = 0; h < heads; h++)
    g_assert_cmpint (keep[h], ==, nkb);
  g_free ((int32_t *) l.row_ptr);
  g_free ((int32_t *) l.cols);
  g_free (scores);
}

/* The recorder returns full attention and accumulates each tile mask's relative error. */
static void
test_recorder (void)
{
  const int frames = 4, tpf = 20, heads = 2, hd = 12, n = frames * tpf, ld = heads * hd;
  const int depth = 2;
  fixture f;
  const float search[] = { 0.5f };
  fixture_init (&f, depth, VDIT_ATTENTION_TILE, 1, 64, 0.8f, 0.2f, search, 1);
  const vdit_attn_policy_params params = {
    .mode = VDIT_ATTENTION_FULL, .frames = frames, .tokens_per_frame = tpf, .depth = depth,
    .heads = heads, .head_dim = hd, .steps = 2, .sparsity = -1,
  };
  GError *error = NULL;
  vdit_attn_policy *rec = vdit_attn_policy_new_recorder (&f.be, &params, &error);
  g_assert_no_error (error);
  GRand *rng = g_rand_new_with_seed (77);
  double num[2][4] = { { 0 } }, den[2] = { 0 };
  /* the output goes to a wider buffer (ldo > heads·hd), as a DiT may do */
  const int ldo = ld + 5;
  float *out = g_new0 (float, (size_t) n * ldo), *cand = g_new (float, (size_t) n * ld);
  for (int call = 0; call < 2; call++)
    for (int layer = 0; layer < depth; layer++) {
      float *q = random_buf (rng, (size_t) n * ld, 1.0 + layer);
      float *k = random_buf (rng, (size_t) n * ld, 1.0 + layer);
      float *v = random_buf (rng, (size_t) n * ld, 1.0);
      g_assert_true (vdit_attn_policy_run (rec, call, layer, call, out, ldo, q, ld, k, ld, v, ld,
                                           0.4f, &error));
      g_assert_no_error (error);
      double *full = masked_reference (q, k, v, n, heads, hd, 0.4f, NULL);
      for (int i = 0; i < n; i++)
        for (int c = 0; c < ld; c++) {
          g_assert_cmpfloat (fabs (out[(size_t) i * ldo + c] - full[(size_t) i * ld + c]), <, 1e-5);
          den[layer] += full[(size_t) i * ld + c] * full[(size_t) i * ld + c];
        }
      for (int kk = 0; kk < frames; kk++) {
        vdit_block_layout l;
        vdit_tile_layout (&l, frames, tpf, kk);
        double *ref = masked_reference (q, k, v, n, heads, hd, 0.4f, &l);
        for (size_t i = 0; i < (size_t) n * ld; i++)
          num[layer][kk] += (ref[i] - full[i]) * (ref[i] - full[i]);
        g_free (ref);
        g_free ((int32_t *) l.row_ptr);
        g_free ((int32_t *) l.cols);
      }
      g_free (full);
      g_free (q);
      g_free (k);
      g_free (v);
    }
  double errors[2 * 4];
  g_assert_true (vdit_attn_policy_get_errors (rec, errors));
  for (int layer = 0; layer < depth; layer++)
    for (int kk = 0; kk < frames; kk++) {
      const double expect = sqrt (num[layer][kk] / den[layer]);
      g_test_message ("layer %d k %d error %.4f", layer, kk, expect);
      g_assert_cmpfloat (fabs (errors[layer * frames + kk] - expect), <=, 1e-5 * expect + 1e-7);
      if (kk < frames - 1)
        g_assert_cmpfloat (expect, >, 0.0);
      else /* k = T − 1 keeps every tile */
        g_assert_cmpfloat (errors[layer * frames + kk], ==, 0.0);
    }
  g_free (out);
  g_free (cand);
  vdit_attn_policy_free (rec);
  g_rand_free (rng);
  fixture_clear (&f);
}

static void
test_plan_from_errors (void)
{
  const double errors[3 * 4] = { 0.5, 0.09, 0.01, 0.0,  /* k = 1 is under 0.1 */
                                 0.05, 0.02, 0.01, 0.0, /* k = 0 already */
                                 0.9, 0.8, 0.3, 0.0 };  /* only the dense k = T − 1 */
  int plan[3];
  vdit_plan_from_errors (plan, errors, 3, 4, 0.1);
  g_assert_cmpint (plan[0], ==, 1);
  g_assert_cmpint (plan[1], ==, 0);
  g_assert_cmpint (plan[2], ==, 3);
  vdit_plan_from_errors (plan, errors, 3, 4, 0.0);
  g_assert_cmpint (plan[0], ==, 3);
}

/* The search on the shipped tiny model: the recorder leaves the generation exactly as
 * full attention makes it, and the plan follows the recorded errors. */
static void
test_mask_search_tiny (void)
{
  g_autofree char *dir = test_source_path ("models/tiny");
  GError *error = NULL;
  vdit_model *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  vdit_ctx *ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  const vdit_config *cfg = vdit_model_get_config (model);
  const int frames = vdit_model_get_info (model)->frames, steps = 2;
  const int T = vdit_model_latent_frames (model, frames) / cfg->dit.patch[0];

  vdit_gen_params gp;
  vdit_gen_params_init (&gp);
  gp.prompt = "a red ball";
  gp.steps = steps;
  gp.attention = VDIT_ATTENTION_FULL;
  const size_t n_latent = (size_t) T * cfg->dit.patch[0] * cfg->height * cfg->width
                          * cfg->dit.in_channels;
  float *plain = g_new (float, n_latent), *recorded = g_new (float, n_latent);
  g_assert_true (vdit_generate_latent (ctx, &gp, plain, &error));
  const vdit_attn_policy_params pp = {
    .mode = VDIT_ATTENTION_FULL, .frames = T,
    .tokens_per_frame = (cfg->height / cfg->dit.patch[1]) * (cfg->width / cfg->dit.patch[2]),
    .depth = cfg->dit.depth, .heads = cfg->dit.heads, .head_dim = cfg->dit.head_dim,
    .steps = steps, .sparsity = -1,
  };
  vdit_attn_policy *rec = vdit_attn_policy_new_recorder (vdit_ctx_get_backend (ctx), &pp, &error);
  g_assert_no_error (error);
  g_assert_true (vdit_generate_with_policy (ctx, &gp, rec, recorded, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (plain, n_latent * sizeof (float), recorded, n_latent * sizeof (float));
  vdit_attn_policy_free (rec);

  const char *prompts[] = { "a red ball", "a blue square" };
  vdit_mask_search_params sp;
  vdit_mask_search_params_init (&sp);
  sp.steps = steps;
  sp.threshold = 0.3;
  vdit_mask_search_result r;
  g_assert_true (vdit_mask_search (ctx, model, prompts, 2, &sp, NULL, NULL, &r, &error));
  g_assert_no_error (error);
  g_assert_cmpint (r.frames, ==, T);
  g_assert_cmpint (r.depth, ==, cfg->dit.depth);
  int plan[64];
  vdit_plan_from_errors (plan, r.errors, r.depth, r.frames, 0.3);
  for (int l = 0; l < r.depth; l++) {
    g_test_message ("layer %d: k %d, density %.4f, error at k = 0: %.4f", l, r.plan[l],
                    r.density[l], r.errors[(size_t) l * T]);
    g_assert_cmpint (r.plan[l], ==, plan[l]);
    g_assert_cmpfloat (r.errors[(size_t) l * T + T - 1], ==, 0.0);
    g_assert_cmpfloat (r.errors[(size_t) l * T], >, 0.0);
    g_assert_cmpfloat (r.density[l], ==,
                       (double) vdit_tile_kept_count (T, r.plan[l]) / ((double) T * T));
  }
  vdit_mask_search_result_clear (&r);

  sp.threshold = -1.0;
  g_assert_false (vdit_mask_search (ctx, model, prompts, 2, &sp, NULL, NULL, &r, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_free (plain);
  g_free (recorded);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

static void
test_bad_params (void)
{
  fixture f;
  const float search[] = { 0.5f };
  fixture_init (&f, 2, VDIT_ATTENTION_ADAPTIVE, 1, 64, 0.8f, 0.2f, search, 1);
  const vdit_attn_policy_params bad_frames = {
    .mode = VDIT_ATTENTION_TILE, .frames = 0, .tokens_per_frame = 4, .depth = 2, .heads = 1,
    .head_dim = 6, .steps = 2, .sparsity = -1,
  };
  GError *error = NULL;
  g_assert_null (vdit_attn_policy_new (&f.be, &f.cfg, &bad_frames, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  const vdit_attn_policy_params bad_sparsity = {
    .mode = VDIT_ATTENTION_ADAPTIVE, .frames = 2, .tokens_per_frame = 4, .depth = 2,
    .heads = 1, .head_dim = 6, .steps = 2, .sparsity = 1.5f,
  };
  g_assert_null (vdit_attn_policy_new (&f.be, &f.cfg, &bad_sparsity, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  const vdit_attn_policy_params ok = {
    .mode = VDIT_ATTENTION_FULL, .frames = 2, .tokens_per_frame = 4, .depth = 2, .heads = 1,
    .head_dim = 6, .steps = 2, .sparsity = -1,
  };
  vdit_attn_policy *p = vdit_attn_policy_new (&f.be, &f.cfg, &ok, &error);
  g_assert_no_error (error);
  float buf[8 * 6] = { 0 };
  g_assert_false (vdit_attn_policy_run (p, 0, 2, 0, buf, 6, buf, 6, buf, 6, buf, 6, 1.0f,
                                        &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  double errors[4];
  g_assert_false (vdit_attn_policy_get_errors (p, errors));
  vdit_attn_policy_free (p);
  fixture_clear (&f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/attention-plan/tile-counts", test_tile_counts);
  g_test_add_func ("/attention-plan/tile-equals-masked-dense", test_tile_equals_masked_dense);
  g_test_add_func ("/attention-plan/sparse-equals-masked-dense",
                   test_sparse_equals_masked_dense);
  g_test_add_func ("/attention-plan/adaptive-zero-is-full", test_adaptive_zero_is_full);
  g_test_add_func ("/attention-plan/adaptive-finds-planted-blocks",
                   test_adaptive_finds_planted_blocks);
  g_test_add_func ("/attention-plan/cached-lse-search", test_cached_lse_search);
  g_test_add_func ("/attention-plan/adaptive-warmup", test_adaptive_warmup);
  g_test_add_func ("/attention-plan/head-adaptive", test_head_adaptive);
  g_test_add_func ("/attention-plan/recorder", test_recorder);
  g_test_add_func ("/attention-plan/plan-from-errors", test_plan_from_errors);
  g_test_add_func ("/attention-plan/mask-search-tiny", test_mask_search_tiny);
  g_test_add_func ("/attention-plan/bad-params", test_bad_params);
  return g_test_run ();
}
