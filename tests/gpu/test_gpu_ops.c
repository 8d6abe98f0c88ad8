/* CUDA normalisation, elementwise and RoPE ops against the CPU backend, and the CUDA
 * backend's error model (recorded first error, reported by sync; OOM with numbers). */
#include "gpu_util.h"
#include "safetensors.h"

#include <math.h>
#include <string.h>

#define TOL 1e-5 /* bf16 outputs of f32 arithmetic on identical inputs */

static void
test_rmsnorm (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 1);
  const int shapes[][2] = { { 37, 2304 }, { 5, 48 }, { 3, 4096 }, { 1, 7 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int m = shapes[s][0], d = shapes[s][1];
    float *hx = host_uniform (p.rng, (size_t) m * d, -2, 2);
    float *hw = host_uniform (p.rng, d, 0.5, 1.5);
    twin x = twin_new (&p, hx, (size_t) m * d, VDIT_ELEM_ACT);
    twin w = twin_new (&p, hw, d, VDIT_ELEM_ACT);
    twin out = twin_new (&p, NULL, (size_t) m * d, VDIT_ELEM_ACT);
    p.cpu.iface->rmsnorm (p.cpu.context, out.cpu, x.cpu, w.cpu, m, d, 1e-6f);
    p.gpu.iface->rmsnorm (p.gpu.context, out.gpu, x.gpu, w.gpu, m, d, 1e-6f);
    twin_check (&p, &out, TOL, "rmsnorm");
    twin_free (&p, &x), twin_free (&p, &w), twin_free (&p, &out);
    g_free (hx), g_free (hw);
  }
  gpu_pair_clear (&p);
}

static void
test_layernorm_modulate (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 2);
  /* 16-byte rows of one vector a thread; d = 1001 and 9000 take the plain kernel */
  const int shapes[][2] = { { 37, 2304 }, { 9, 48 }, { 2, 1000 }, { 3, 1001 }, { 2, 9000 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int m = shapes[s][0], d = shapes[s][1];
    /* an offset mean: the variance must be taken about the mean */
    float *hx = host_uniform (p.rng, (size_t) m * d, 2, 5);
    float *hsh = host_uniform (p.rng, d, -0.5, 0.5);
    float *hsc = host_uniform (p.rng, d, -0.5, 0.5);
    twin x = twin_new (&p, hx, (size_t) m * d, VDIT_ELEM_ACT);
    twin sh = twin_new (&p, hsh, d, VDIT_ELEM_ACT);
    twin sc = twin_new (&p, hsc, d, VDIT_ELEM_ACT);
    twin out = twin_new (&p, NULL, (size_t) m * d, VDIT_ELEM_ACT);
    p.cpu.iface->layernorm_modulate (p.cpu.context, out.cpu, x.cpu, sh.cpu, sc.cpu, m, d, 1e-6f);
    p.gpu.iface->layernorm_modulate (p.gpu.context, out.gpu, x.gpu, sh.gpu, sc.gpu, m, d, 1e-6f);
    twin_check (&p, &out, TOL, "layernorm_modulate");
    twin_free (&p, &x), twin_free (&p, &sh), twin_free (&p, &sc), twin_free (&p, &out);
    g_free (hx), g_free (hsh), g_free (hsc);
  }
  gpu_pair_clear (&p);
}

static void
test_elementwise (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 3);
  const int m = 33, d = 2304;
  const size_t n = (size_t) m * d;
  float *ha = host_uniform (p.rng, n, -3, 3);
  float *hb = host_uniform (p.rng, n, -3, 3);
  float *hg = host_uniform (p.rng, d, -1, 1);
  twin a = twin_new (&p, ha, n, VDIT_ELEM_ACT);
  twin b = twin_new (&p, hb, n, VDIT_ELEM_ACT);
  twin g = twin_new (&p, hg, d, VDIT_ELEM_ACT);
  vdit_backend *be[2] = { &p.cpu, &p.gpu };

  for (int gated = 0; gated < 2; gated++) {
    twin x = twin_new (&p, ha, n, VDIT_ELEM_ACT);
    for (int i = 0; i < 2; i++)
      be[i]->iface->add_gated (be[i]->context, i ? x.gpu : x.cpu, i ? b.gpu : b.cpu,
                               gated ? (i ? g.gpu : g.cpu) : NULL, m, d);
    twin_check (&p, &x, TOL, gated ? "add_gated" : "add_gated (no gate)");
    twin_free (&p, &x);
  }
  /* rows of 2303: the plain kernel (no 16-byte accesses); h NULL adds the gate alone to
   * each row (a one-token caption's cross-attention), on both kernels */
  const struct {
    gboolean with_h;
    int d;
    const char *what;
  } cases[] = { { TRUE, d - 1, "add_gated (odd rows)" },
                { FALSE, d, "add_gated (row only)" },
                { FALSE, d - 1, "add_gated (row only, odd rows)" } };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    twin x = twin_new (&p, ha, n, VDIT_ELEM_ACT);
    for (int i = 0; i < 2; i++)
      be[i]->iface->add_gated (be[i]->context, i ? x.gpu : x.cpu,
                               cases[c].with_h ? (i ? b.gpu : b.cpu) : NULL, i ? g.gpu : g.cpu,
                               m, cases[c].d);
    twin_check (&p, &x, TOL, cases[c].what);
    twin_free (&p, &x);
  }

  twin out = twin_new (&p, NULL, n, VDIT_ELEM_ACT);
  p.cpu.iface->mul (p.cpu.context, out.cpu, a.cpu, b.cpu, n);
  p.gpu.iface->mul (p.gpu.context, out.gpu, a.gpu, b.gpu, n);
  twin_check (&p, &out, TOL, "mul");
  p.cpu.iface->add (p.cpu.context, out.cpu, a.cpu, b.cpu, n - 1);
  p.gpu.iface->add (p.gpu.context, out.gpu, a.gpu, b.gpu, n - 1);
  p.cpu.iface->add (p.cpu.context, vdit_buf_at (&p.cpu, out.cpu, n - 1),
                    vdit_buf_at (&p.cpu, a.cpu, n - 1), vdit_buf_at (&p.cpu, b.cpu, n - 1), 1);
  p.gpu.iface->add (p.gpu.context, vdit_buf_at (&p.gpu, out.gpu, n - 1),
                    vdit_buf_at (&p.gpu, a.gpu, n - 1), vdit_buf_at (&p.gpu, b.gpu, n - 1), 1);
  twin_check (&p, &out, TOL, "add");

  const VditActivation acts[] = { VDIT_ACT_NONE, VDIT_ACT_GELU_TANH, VDIT_ACT_SILU };
  const char *names[] = { "activate none", "activate gelu_tanh", "activate silu" };
  for (guint i = 0; i < G_N_ELEMENTS (acts); i++) {
    p.cpu.iface->activate (p.cpu.context, out.cpu, a.cpu, n, acts[i]);
    p.gpu.iface->activate (p.gpu.context, out.gpu, a.gpu, n, acts[i]);
    twin_check (&p, &out, TOL, names[i]);
  }
  /* in place */
  twin x = twin_new (&p, ha, n, VDIT_ELEM_ACT);
  p.cpu.iface->activate (p.cpu.context, x.cpu, x.cpu, n, VDIT_ACT_GELU_TANH);
  p.gpu.iface->activate (p.gpu.context, x.gpu, x.gpu, n, VDIT_ACT_GELU_TANH);
  twin_check (&p, &x, TOL, "activate in place");

  twin_free (&p, &x), twin_free (&p, &out), twin_free (&p, &a), twin_free (&p, &b);
  twin_free (&p, &g);
  g_free (ha), g_free (hb), g_free (hg);
  gpu_pair_clear (&p);
}

static void
test_rope (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 4);
  /* (tokens, heads rotated, head_dim, chunks, heads of q in a packed qkv row): q alone,
   * or q and k together (the DiT's one call); half-chunks of 16 and 32 take the
   * eight-pair kernel, 2 the plain one */
  const int shapes[][5] = { { 50, 4, 96, 3, 4 }, { 64, 4, 12, 3, 4 }, { 17, 2, 64, 1, 2 },
                            { 50, 8, 96, 3, 4 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int n = shapes[s][0], heads = shapes[s][1], hd = shapes[s][2], ch = shapes[s][3];
    const int ld = 3 * shapes[s][4] * hd, pairs = hd / 2;
    float *hx = host_uniform (p.rng, (size_t) n * ld, -2, 2);
    float *hcos = g_new (float, (size_t) n * pairs), *hsin = g_new (float, (size_t) n * pairs);
    for (int i = 0; i < n * pairs; i++) {
      const double a = g_rand_double_range (p.rng, -10, 10);
      hcos[i] = (float) cos (a);
      hsin[i] = (float) sin (a);
    }
    twin x = twin_new (&p, hx, (size_t) n * ld, VDIT_ELEM_ACT);
    twin c = twin_new (&p, hcos, (size_t) n * pairs, VDIT_ELEM_F32);
    twin si = twin_new (&p, hsin, (size_t) n * pairs, VDIT_ELEM_F32);
    p.cpu.iface->rope (p.cpu.context, x.cpu, ld, c.cpu, si.cpu, n, heads, hd, ch);
    p.gpu.iface->rope (p.gpu.context, x.gpu, ld, c.gpu, si.gpu, n, heads, hd, ch);
    twin_check (&p, &x, TOL, "rope");
    twin_free (&p, &x), twin_free (&p, &c), twin_free (&p, &si);
    g_free (hx), g_free (hcos), g_free (hsin);
  }
  gpu_pair_clear (&p);
}

static void
test_transfers (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 5);
  GError *error = NULL;
  /* over one staging chunk (8 Mi elements), odd length, f32 and i32 untouched */
  const size_t n = ((size_t) 8 << 20) + 12345;
  float *h = host_uniform (p.rng, n, -100, 100);
  twin t = twin_new (&p, h, n, VDIT_ELEM_ACT);
  float *cpu, *gpu;
  twin_fetch (&p, &t, &cpu, &gpu);
  g_assert_cmpmem (gpu, n * 4, h, n * 4); /* bf16-exact values survive the round trip */
  g_free (cpu), g_free (gpu);
  twin_free (&p, &t);

  int32_t ints[5] = { 0, -1, 7, G_MAXINT32, G_MININT32 }, back[5];
  void *b = p.gpu.iface->alloc (p.gpu.context, 5, VDIT_ELEM_I32, &error);
  g_assert_no_error (error);
  g_assert_true (p.gpu.iface->upload (p.gpu.context, b, ints, 5, VDIT_ELEM_I32, &error));
  g_assert_true (p.gpu.iface->download (p.gpu.context, back, b, 5, VDIT_ELEM_I32, &error));
  g_assert_cmpmem (back, sizeof back, ints, sizeof ints);
  p.gpu.iface->release (p.gpu.context, b);

  /* stored bf16 weights go up as they are and read back as the same values */
  uint16_t bits[6] = { 0x3F80, 0xC020, 0x0001, 0x7F7F, 0x8000, 0x3F81 };
  float want[6], got[6];
  vdit_convert_to_f32 (want, bits, VDIT_DTYPE_BF16, 6);
  b = p.gpu.iface->alloc (p.gpu.context, 6, VDIT_ELEM_ACT, &error);
  g_assert_no_error (error);
  g_assert_true (p.gpu.iface->upload (p.gpu.context, b, bits, 6, VDIT_ELEM_BF16, &error));
  g_assert_true (p.gpu.iface->download (p.gpu.context, got, b, 6, VDIT_ELEM_ACT, &error));
  g_assert_cmpmem (got, sizeof got, want, sizeof want);
  p.gpu.iface->release (p.gpu.context, b);
  g_free (h);
  gpu_pair_clear (&p);
}

static void
test_errors (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 6);
  GError *error = NULL;

  /* out of memory: NULL and a message with the numbers, nothing recorded */
  void *huge = p.gpu.iface->alloc (p.gpu.context, (size_t) 1 << 50, VDIT_ELEM_ACT, &error);
  g_assert_null (huge);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (error->message, "MiB"));
  g_clear_error (&error);
  g_assert_true (p.gpu.iface->sync (p.gpu.context, &error));
  g_assert_no_error (error);

  /* an op that cannot run records its failure; sync reports it once */
  twin q = twin_new (&p, NULL, 4 * 256, VDIT_ELEM_ACT);
  g_test_expect_message ("vdit", G_LOG_LEVEL_WARNING, "*attention*");
  p.gpu.iface->attention (p.gpu.context, q.gpu, 256, q.gpu, 256, q.gpu, 256, q.gpu, 256, 4, 4, 1,
                          256 /* head dim over the kernels' limit */, 1.0f, NULL, NULL, NULL);
  g_test_assert_expected_messages ();
  g_assert_false (p.gpu.iface->sync (p.gpu.context, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND);
  g_test_message ("recorded: %s", error->message);
  g_assert_nonnull (strstr (error->message, "attention"));
  g_clear_error (&error);
  g_assert_true (p.gpu.iface->sync (p.gpu.context, &error));
  g_assert_no_error (error);
  twin_free (&p, &q);
  gpu_pair_clear (&p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/ops/rmsnorm", test_rmsnorm);
  g_test_add_func ("/gpu/ops/layernorm-modulate", test_layernorm_modulate);
  g_test_add_func ("/gpu/ops/elementwise", test_elementwise);
  g_test_add_func ("/gpu/ops/rope", test_rope);
  g_test_add_func ("/gpu/ops/transfers", test_transfers);
  g_test_add_func ("/gpu/ops/errors", test_errors);
  return g_test_run ();
}
