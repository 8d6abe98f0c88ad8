/* CUDA flash attention and block scores against the CPU backend: head dims 8 to 128
 * (padded and unaligned ones through the generic path), ragged lengths, strided
 * q/k/v/out views, T5 bias (with fully masked rows), LSE, random block-sparse layouts
 * with per-head patterns and blocks that do not align with the kernel's 64-token
 * tiles, and the Efficient-vDiT tile layouts with one latent frame per block. */
#include "adaptive_select.h"
#include "attention_plan.h"
#include "gpu_util.h"
#include "test_util.h"

#include <math.h>

#define TOL_OUT 1e-4 /* P is rounded to bf16 before P·V */
#define TOL_LSE 1e-7

typedef struct {
  const char *name;
  int nq, nk, heads, head_dim;
  int pad;            /* extra columns in every row of q, k, v and out */
  gboolean bias;      /* (heads, nq, nk) */
  gboolean bias_holes;/* every 4th row from 1 fully masked by −inf */
  float scale;        /* 0 = 1/sqrt(head_dim) */
  int layout;         /* 0 dense, 1 random blocks, 2 tile frames */
  int block_q, block_k, layout_heads;
  double keep;
  int frames, k;      /* tile: T and reference frames; nq = nk = T · tokens per frame */
} attn_case;


static void
run_case (gpu_pair *p, const attn_case *c)
{
  GError *error = NULL;
  const int hd = c->head_dim, w = c->heads * hd + c->pad;
  const float scale = c->scale > 0.0f ? c->scale : 1.0f / sqrtf ((float) hd);
  float *hq = host_uniform (p->rng, (size_t) c->nq * w, -2, 2);
  float *hk = host_uniform (p->rng, (size_t) c->nk * w, -2, 2);
  float *hv = host_uniform (p->rng, (size_t) c->nk * w, -1, 1);
  twin q = twin_new (p, hq, (size_t) c->nq * w, VDIT_ELEM_ACT);
  twin k = twin_new (p, hk, (size_t) c->nk * w, VDIT_ELEM_ACT);
  twin v = twin_new (p, hv, (size_t) c->nk * w, VDIT_ELEM_ACT);
  twin out = twin_new (p, NULL, (size_t) c->nq * w, VDIT_ELEM_ACT);
  twin lse = twin_new (p, NULL, (size_t) c->heads * c->nq, VDIT_ELEM_F32);
  twin bias = { 0 };
  float *hb = NULL;
  if (c->bias) {
    const size_t nb = (size_t) c->heads * c->nq * c->nk;
    hb = host_uniform (p->rng, nb, -3, 3);
    if (c->bias_holes)
      for (int h = 0; h < c->heads; h++)
        for (int r = 1; r < c->nq; r += 4)
          for (int j = 0; j < c->nk; j++)
            hb[((size_t) h * c->nq + r) * c->nk + j] = -INFINITY;
    bias = twin_new (p, hb, nb, VDIT_ELEM_ACT);
  }

  test_layout hl = { 0 };
  void *lay_cpu = NULL, *lay_gpu = NULL;
  if (c->layout == 1) {
    test_random_layout (&hl, p->rng, c->block_q, c->block_k, c->nq, c->nk, c->layout_heads,
                        c->keep);
  } else if (c->layout == 2) {
    vdit_tile_layout (&hl.l, c->frames, c->nq / c->frames, c->k);
    hl.row_ptr = (int32_t *) hl.l.row_ptr;
    hl.cols = (int32_t *) hl.l.cols;
  }
  if (c->layout) {
    lay_cpu = p->cpu.iface->layout_new (p->cpu.context, &hl.l, &error);
    g_assert_no_error (error);
    lay_gpu = p->gpu.iface->layout_new (p->gpu.context, &hl.l, &error);
    g_assert_no_error (error);
  }

  vdit_backend *be[2] = { &p->cpu, &p->gpu };
  for (int i = 0; i < 2; i++) {
    const gboolean g = i == 1;
    be[i]->iface->attention (be[i]->context, g ? out.gpu : out.cpu, w, g ? q.gpu : q.cpu, w,
                             g ? k.gpu : k.cpu, w, g ? v.gpu : v.cpu, w, c->nq, c->nk, c->heads,
                             hd, scale, c->bias ? (g ? bias.gpu : bias.cpu) : NULL,
                             g ? lay_gpu : lay_cpu, g ? lse.gpu : lse.cpu);
  }
  /* the padding columns were never written: zeros on the CPU, NaN poison on the GPU */
  float *ro, *go;
  twin_fetch (p, &out, &ro, &go);
  for (int r = 0; r < c->nq; r++)
    for (int j = c->heads * hd; j < w; j++) {
      g_assert_true (isnan (go[(size_t) r * w + j]));
      go[(size_t) r * w + j] = ro[(size_t) r * w + j] = 0.0f;
    }
  for (size_t i = 0; i < out.n; i++)
    if (!isfinite (go[i]))
      g_error ("%s: output %zu is %g on the GPU (CPU %g)", c->name, i, go[i], ro[i]);
  const double e = nmse (ro, go, out.n);
  g_test_message ("%s: output nmse %.3g", c->name, e);
  if (!(e <= TOL_OUT))
    g_error ("%s: output nmse %.3g over %.3g", c->name, e, TOL_OUT);
  char *what = g_strdup_printf ("%s: lse", c->name);
  twin_check (p, &lse, TOL_LSE, what);
  g_free (what);

  if (c->layout) {
    p->cpu.iface->layout_free (p->cpu.context, lay_cpu);
    p->gpu.iface->layout_free (p->gpu.context, lay_gpu);
    g_free (hl.row_ptr), g_free (hl.cols);
  }
  if (c->bias)
    twin_free (p, &bias);
  twin_free (p, &q), twin_free (p, &k), twin_free (p, &v), twin_free (p, &out);
  twin_free (p, &lse);
  g_free (hq), g_free (hk), g_free (hv), g_free (hb), g_free (ro), g_free (go);
}

static void
test_dense (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 21);
  const attn_case cases[] = {
    { "dense hd64 ragged", 300, 300, 3, 64 },
    { "dense hd96 cross", 200, 333, 2, 96, 8 },
    { "dense hd128", 256, 190, 2, 128 },
    { "dense hd96 long (ring phases)", 1100, 1300, 2, 96 },
    { "dense hd16", 100, 100, 3, 16 },
    { "dense hd12 (tiny dit)", 64 + 5, 64 + 5, 4, 12 },
    { "dense hd12 text cross", 69, 7, 4, 12 },
    { "dense hd32 one key", 40, 1, 2, 32 },
    { "dense hd48 odd pad", 130, 70, 2, 48, 3 },
    { "dense hd80", 90, 150, 2, 80 },
    { "t5 hd8 bias", 20, 20, 4, 8, 0, TRUE, FALSE, 1.0f },
    { "t5 hd64 bias holes", 150, 150, 2, 64, 0, TRUE, TRUE, 1.0f },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    run_case (&p, &cases[i]);
  gpu_pair_clear (&p);
}

static void
test_sparse (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 22);
  attn_case cases[] = {
    { "blocks 64 per head", 500, 500, 3, 96, 0, FALSE, FALSE, 0, 1, 64, 64, 3, 0.4 },
    { "blocks 64 shared", 256, 256, 2, 64, 0, FALSE, FALSE, 0, 1, 64, 64, 1, 0.5 },
    { "blocks 100x70", 500, 430, 2, 64, 0, FALSE, FALSE, 0, 1, 100, 70, 1, 0.5 },
    /* 64-row lists on Hopper, masked element by element (key blocks under 64) */
    { "blocks 32x40 hd96", 330, 410, 3, 96, 0, FALSE, FALSE, 0, 1, 32, 40, 3, 0.35 },
    { "blocks 64 hd96 sparse", 700, 700, 2, 96, 0, FALSE, FALSE, 0, 1, 64, 64, 2, 0.15 },
    { "blocks 16x24 hd12", 150, 150, 4, 12, 0, FALSE, FALSE, 0, 1, 16, 24, 4, 0.3 },
    { "blocks 128 hd128", 600, 600, 2, 128, 0, FALSE, FALSE, 0, 1, 128, 128, 2, 0.3 },
    { "blocks + bias", 200, 200, 2, 64, 0, TRUE, FALSE, 0.125f, 1, 64, 50, 2, 0.5 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    run_case (&p, &cases[i]);
  gpu_pair_clear (&p);
}

static void
test_tile (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 23);
  /* frames of 150 tokens (not a multiple of 64, as 3,600 at 720p is not) */
  const int T = 6, tpf = 150;
  for (int k = 0; k <= T; k += 2) {
    attn_case c = { "tile", T * tpf, T * tpf, 2, 96 };
    c.layout = 2, c.frames = T, c.k = k;
    char *name = g_strdup_printf ("tile %d:%d, %d tokens per frame", k, T - k, tpf);
    c.name = name;
    run_case (&p, &c);
    g_free (name);
  }
  /* hd64 frames of 300 tokens: query tiles that straddle two frames */
  attn_case c = { "tile 2:3 hd64, 300 tokens per frame", 5 * 300, 5 * 300, 2, 64 };
  c.layout = 2, c.frames = 5, c.k = 2;
  run_case (&p, &c);
  gpu_pair_clear (&p);
}

/* AdaSpa's choice made on the device equals the host's (engine/adaptive_select.c): the
 * same blocks per head and, run through the same kernel, bit-identical attention. Heads
 * get scores of different concentration, so blocks move between heads. */
static void
test_adaptive_select (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 25);
  const struct {
    int n, heads;
    float sparsity;
  } cases[] = { { 64 * 37, 6, 0.8f }, { 1000, 3, 0.5f }, { 64 * 40 + 17, 40, 0.7f }, { 100, 2, 0.9f } };
  for (guint ci = 0; ci < G_N_ELEMENTS (cases); ci++) {
    const int n = cases[ci].n, heads = cases[ci].heads, hd = 64, w = heads * hd;
    const int nb = (n + 63) / 64;
    const size_t ns = (size_t) heads * nb * nb;
    float *hs = g_new (float, ns);
    for (int h = 0; h < heads; h++) {
      const double power = 1.0 + 6.0 * h / MAX (heads - 1, 1); /* flat to peaked */
      for (size_t i = 0; i < (size_t) nb * nb; i++)
        hs[(size_t) h * nb * nb + i] = (float) pow (g_rand_double (p.rng), power);
    }
    twin sc = twin_new (&p, hs, ns, VDIT_ELEM_F32);
    int *keep_g = g_new (int, heads), *keep_c = g_new (int, heads);
    GError *error = NULL;
    double dens_g = -1.0;
    void *lay_g = p.gpu.iface->adaptive_layout (p.gpu.context, sc.gpu, heads, n, n, 64, 64,
                                                cases[ci].sparsity, keep_g, &dens_g, &error);
    g_assert_no_error (error);
    g_assert_nonnull (lay_g);
    vdit_block_layout hl;
    const double dens_c = vdit_adaptive_select (&hl, keep_c, hs, heads, n, n, 64, 64,
                                                cases[ci].sparsity);
    int moved = 0;
    for (int h = 0; h < heads; h++) {
      g_assert_cmpint (keep_g[h], ==, keep_c[h]);
      moved += keep_c[h] != keep_c[0];
    }
    g_assert_cmpfloat (dens_g, ==, dens_c);
    g_test_message ("adaptive select n=%d heads=%d: density %.4f, %d heads off the first's count",
                    n, heads, dens_c, moved);
    void *lay_h = p.gpu.iface->layout_new (p.gpu.context, &hl, &error);
    g_assert_no_error (error);

    float *hq = host_uniform (p.rng, (size_t) n * w, -2, 2);
    twin q = twin_new (&p, hq, (size_t) n * w, VDIT_ELEM_ACT);
    twin a = twin_new (&p, NULL, (size_t) n * w, VDIT_ELEM_ACT);
    twin b = twin_new (&p, NULL, (size_t) n * w, VDIT_ELEM_ACT);
    const float scale = 0.125f;
    p.gpu.iface->attention (p.gpu.context, a.gpu, w, q.gpu, w, q.gpu, w, q.gpu, w, n, n, heads,
                            hd, scale, NULL, lay_g, NULL);
    p.gpu.iface->attention (p.gpu.context, b.gpu, w, q.gpu, w, q.gpu, w, q.gpu, w, n, n, heads,
                            hd, scale, NULL, lay_h, NULL);
    float *ra, *ga, *rb, *gb;
    twin_fetch (&p, &a, &ra, &ga);
    twin_fetch (&p, &b, &rb, &gb);
    g_assert_cmpmem (ga, a.n * sizeof (float), gb, b.n * sizeof (float));

    p.gpu.iface->layout_free (p.gpu.context, lay_g);
    p.gpu.iface->layout_free (p.gpu.context, lay_h);
    twin_free (&p, &q), twin_free (&p, &a), twin_free (&p, &b), twin_free (&p, &sc);
    g_free (ra), g_free (ga), g_free (rb), g_free (gb), g_free (hq);
    g_free ((int32_t *) hl.row_ptr), g_free ((int32_t *) hl.cols);
    g_free (hs), g_free (keep_g), g_free (keep_c);
  }
  /* other block sizes are left to the host */
  GError *error = NULL;
  int keep[1];
  double dens;
  twin sc = twin_new (&p, NULL, 4, VDIT_ELEM_F32);
  g_assert_null (p.gpu.iface->adaptive_layout (p.gpu.context, sc.gpu, 1, 100, 100, 50, 50,
                                               0.5f, keep, &dens, &error));
  g_assert_no_error (error);
  twin_free (&p, &sc);
  gpu_pair_clear (&p);
}

/* The sum of t's GPU values (block scores: the rows' attention mass). */
static double
gpu_total (gpu_pair *p, const twin *t)
{
  float *ref, *got;
  twin_fetch (p, t, &ref, &got);
  double total = 0.0;
  for (size_t i = 0; i < t->n; i++)
    total += got[i];
  g_free (ref), g_free (got);
  return total;
}

static void
test_block_scores (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 24);
  const int shapes[][5] = { /* n, heads, head_dim, block_q, block_k */
                            { 500, 3, 96, 64, 64 },
                            /* AdaSpa's 64 × 64 blocks on Hopper's kernels: an odd count
                             * of key tiles, query blocks that do not fill the last group
                             * of four, more tiles than one flush of the sums holds */
                            { 700, 2, 128, 64, 64 },
                            { 1100, 1, 64, 64, 64 },
                            /* whole tiles only; one tile, fewer blocks than a group */
                            { 128, 2, 96, 64, 64 },
                            { 64, 1, 64, 64, 64 },
                            { 300, 2, 64, 48, 40 },
                            { 260, 2, 12, 100, 70 },
                            { 129, 1, 128, 16, 8 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int n = shapes[s][0], heads = shapes[s][1], hd = shapes[s][2];
    const int bq = shapes[s][3], bk = shapes[s][4], w = heads * hd;
    const float scale = 1.0f / sqrtf ((float) hd);
    float *hq = host_uniform (p.rng, (size_t) n * w, -2, 2);
    float *hk = host_uniform (p.rng, (size_t) n * w, -2, 2);
    twin q = twin_new (&p, hq, (size_t) n * w, VDIT_ELEM_ACT);
    twin k = twin_new (&p, hk, (size_t) n * w, VDIT_ELEM_ACT);
    twin o = twin_new (&p, NULL, (size_t) n * w, VDIT_ELEM_ACT);
    /* the cached LSE comes from the CPU's dense pass; both backends score with it */
    float *lse_h = g_new (float, (size_t) heads * n);
    twin lse_c = twin_new (&p, NULL, (size_t) heads * n, VDIT_ELEM_F32);
    p.cpu.iface->attention (p.cpu.context, o.cpu, w, q.cpu, w, k.cpu, w, k.cpu, w, n, n, heads,
                            hd, scale, NULL, NULL, lse_c.cpu);
    GError *error = NULL;
    g_assert_true (p.cpu.iface->download (p.cpu.context, lse_h, lse_c.cpu, (size_t) heads * n,
                                          VDIT_ELEM_F32, &error));
    lse_h[3] = -INFINITY; /* a row that kept nothing adds nothing */
    twin lse = twin_new (&p, lse_h, (size_t) heads * n, VDIT_ELEM_F32);
    const int nqb = (n + bq - 1) / bq, nkb = (n + bk - 1) / bk;
    twin sc = twin_new (&p, NULL, (size_t) heads * nqb * nkb, VDIT_ELEM_F32);
    p.cpu.iface->block_scores (p.cpu.context, sc.cpu, q.cpu, w, k.cpu, w, lse.cpu, n, n, heads,
                               hd, scale, bq, bk);
    p.gpu.iface->block_scores (p.gpu.context, sc.gpu, q.gpu, w, k.gpu, w, lse.gpu, n, n, heads,
                               hd, scale, bq, bk);
    char *what = g_strdup_printf ("block_scores n=%d hd=%d blocks %dx%d", n, hd, bq, bk);
    twin_check (&p, &sc, 1e-5, what);
    /* every row's mass sums to 1 (except the −inf row) */
    g_assert_cmpfloat (fabs (gpu_total (&p, &sc) - ((double) heads * n - 1)), <, 1e-2 * heads * n);
    g_free (what);
    twin_free (&p, &q), twin_free (&p, &k), twin_free (&p, &o), twin_free (&p, &lse_c);
    twin_free (&p, &lse), twin_free (&p, &sc);
    g_free (hq), g_free (hk), g_free (lse_h);
  }
  gpu_pair_clear (&p);
}

/* Dense attention that also scores 64 × 64 blocks (one pass on Hopper) against the CPU's
 * attention followed by its block scores under the CPU's LSE. */
static void
test_attention_scored (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 26);
  const int shapes[][3] = { /* n, heads, head_dim */
                            { 500, 3, 96 },  /* 96-key tiles: blocks carried across tiles */
                            { 200, 2, 96 },  /* the last tile holds a block of its own */
                            { 150, 1, 96 },  /* the last tile ends a carried block */
                            { 100, 2, 96 },  /* ... that runs past the keys */
                            { 90, 1, 96 },   /* one tile, two blocks */
                            { 96, 1, 96 },   /* one whole tile */
                            { 50, 2, 96 },   /* under one block */
                            { 192, 1, 96 },
                            { 288, 2, 96 },
                            { 1100, 3, 96 }, /* groups of 2 + 1 under a 160 kB scratch */
                            { 700, 2, 128 }, /* 128-key tiles */
                            { 1100, 3, 64 }, /* groups of 2 + 1, too */
                            { 64, 1, 64 },
                            { 300, 2, 80 } }; /* a head dim the one-pass kernel skips */
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int n = shapes[s][0], heads = shapes[s][1], hd = shapes[s][2], w = heads * hd;
    const float scale = 1.0f / sqrtf ((float) hd);
    float *hq = host_uniform (p.rng, (size_t) n * w, -2, 2);
    float *hk = host_uniform (p.rng, (size_t) n * w, -2, 2);
    float *hv = host_uniform (p.rng, (size_t) n * w, -1, 1);
    twin q = twin_new (&p, hq, (size_t) n * w, VDIT_ELEM_ACT);
    twin k = twin_new (&p, hk, (size_t) n * w, VDIT_ELEM_ACT);
    twin v = twin_new (&p, hv, (size_t) n * w, VDIT_ELEM_ACT);
    twin o = twin_new (&p, NULL, (size_t) n * w, VDIT_ELEM_ACT);
    twin lse = twin_new (&p, NULL, (size_t) heads * n, VDIT_ELEM_F32);
    const int nb = (n + 63) / 64;
    twin sc = twin_new (&p, NULL, (size_t) heads * nb * nb, VDIT_ELEM_F32);
    p.cpu.iface->attention (p.cpu.context, o.cpu, w, q.cpu, w, k.cpu, w, v.cpu, w, n, n, heads,
                            hd, scale, NULL, NULL, lse.cpu);
    p.cpu.iface->block_scores (p.cpu.context, sc.cpu, q.cpu, w, k.cpu, w, lse.cpu, n, n, heads,
                               hd, scale, 64, 64);
    p.gpu.iface->attention_scored (p.gpu.context, o.gpu, w, q.gpu, w, k.gpu, w, v.gpu, w, n,
                                   heads, hd, scale, lse.gpu, sc.gpu, 64);
    char *what = g_strdup_printf ("attention_scored n=%d heads=%d hd=%d", n, heads, hd);
    twin_check (&p, &o, TOL_OUT, what);
    twin_check (&p, &lse, TOL_LSE, what);
    twin_check (&p, &sc, 1e-5, what);
    /* each row's mass is 1 */
    g_assert_cmpfloat (fabs (gpu_total (&p, &sc) - (double) heads * n), <, 1e-3 * heads * n);
    g_free (what);
    twin_free (&p, &q), twin_free (&p, &k), twin_free (&p, &v), twin_free (&p, &o);
    twin_free (&p, &lse), twin_free (&p, &sc);
    g_free (hq), g_free (hk), g_free (hv);
  }
  gpu_pair_clear (&p);
}

static void
test_bad_layout (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 25);
  GError *error = NULL;
  const int32_t row_ptr[] = { 0, 2, 3 }, cols[] = { 1, 0, 5 }; /* not ascending, 5 ≥ 2 */
  vdit_block_layout l = { 64, 64, 128, 128, 2, 2, 1, row_ptr, cols };
  g_assert_null (p.gpu.iface->layout_new (p.gpu.context, &l, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  gpu_pair_clear (&p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/attention/dense", test_dense);
  g_test_add_func ("/gpu/attention/sparse", test_sparse);
  g_test_add_func ("/gpu/attention/tile", test_tile);
  g_test_add_func ("/gpu/attention/block-scores", test_block_scores);
  g_test_add_func ("/gpu/attention/scored", test_attention_scored);
  g_test_add_func ("/gpu/attention/adaptive-select", test_adaptive_select);
  g_test_add_func ("/gpu/attention/bad-layout", test_bad_layout);
  return g_test_run ();
}
