/* CUDA matmul (cuBLASLt, bf16 in/out, f32 accumulation) against the CPU backend: bias
 * and activation epilogues, accumulation, row strides (views into wider buffers),
 * shapes of the tiny model and of Open-Sora-Plan v1.2. */
#include "gpu_util.h"

#include <math.h>

#define TOL 2e-5

typedef struct {
  int m, n, k;
  int ldo_pad, ldi_pad; /* extra columns in out / in rows */
  gboolean bias;
  VditActivation act;
  gboolean accumulate;
} mm_case;

static void
run_case (gpu_pair *p, const mm_case *c)
{
  const int ldo = c->n + c->ldo_pad, ldi = c->k + c->ldi_pad;
  /* scale inputs so outputs stay O(1) whatever k is */
  const double a = 2.0 / sqrt ((double) MAX (c->k, 1));
  float *hin = host_uniform (p->rng, (size_t) c->m * ldi, -1, 1);
  float *hw = host_uniform (p->rng, (size_t) c->n * c->k, -a, a);
  float *hb = host_uniform (p->rng, c->n, -1, 1);
  float *hout = host_uniform (p->rng, (size_t) c->m * ldo, -1, 1);
  twin in = twin_new (p, hin, (size_t) c->m * ldi, VDIT_ELEM_ACT);
  twin w = twin_new (p, hw, (size_t) c->n * c->k, VDIT_ELEM_ACT);
  twin b = twin_new (p, hb, c->n, VDIT_ELEM_ACT);
  /* accumulate reads out; otherwise the padding columns must stay as they were */
  twin out = twin_new (p, hout, (size_t) c->m * ldo, VDIT_ELEM_ACT);
  p->cpu.iface->matmul (p->cpu.context, out.cpu, ldo, in.cpu, ldi, w.cpu, c->bias ? b.cpu : NULL,
                        c->m, c->n, c->k, c->act, c->accumulate);
  p->gpu.iface->matmul (p->gpu.context, out.gpu, ldo, in.gpu, ldi, w.gpu, c->bias ? b.gpu : NULL,
                        c->m, c->n, c->k, c->act, c->accumulate);
  char *what = g_strdup_printf ("matmul m=%d n=%d k=%d ldo=%d ldi=%d bias=%d act=%d acc=%d",
                                c->m, c->n, c->k, ldo, ldi, c->bias, c->act, c->accumulate);
  twin_check (p, &out, TOL, what);
  g_free (what);
  twin_free (p, &in), twin_free (p, &w), twin_free (p, &b), twin_free (p, &out);
  g_free (hin), g_free (hw), g_free (hb), g_free (hout);
}

static void
test_matmul (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 11);
  const mm_case cases[] = {
    { 77, 96, 64, 0, 0, FALSE, VDIT_ACT_NONE, FALSE },
    { 77, 96, 64, 0, 0, TRUE, VDIT_ACT_NONE, FALSE },
    { 77, 96, 64, 0, 0, TRUE, VDIT_ACT_GELU_TANH, FALSE },
    { 77, 96, 64, 0, 0, FALSE, VDIT_ACT_GELU_TANH, FALSE },
    { 77, 96, 64, 0, 0, TRUE, VDIT_ACT_SILU, FALSE },
    { 77, 96, 64, 0, 0, FALSE, VDIT_ACT_NONE, TRUE },
    { 77, 96, 64, 0, 0, TRUE, VDIT_ACT_NONE, TRUE },
    /* tiny model: hidden 48, ffn 192, text 32, qkv views with row stride 144 */
    { 64, 48, 48, 96, 0, TRUE, VDIT_ACT_NONE, FALSE },
    { 64, 192, 48, 0, 0, TRUE, VDIT_ACT_GELU_TANH, FALSE },
    { 64, 48, 192, 0, 0, TRUE, VDIT_ACT_NONE, FALSE },
    { 7, 48, 32, 0, 0, TRUE, VDIT_ACT_NONE, FALSE },
    { 1, 288, 48, 0, 0, TRUE, VDIT_ACT_NONE, FALSE },
    /* odd sizes and strides: no 16-byte alignment anywhere */
    { 13, 33, 17, 3, 5, TRUE, VDIT_ACT_GELU_TANH, FALSE },
    { 13, 33, 17, 3, 5, TRUE, VDIT_ACT_NONE, TRUE },
    /* Open-Sora-Plan v1.2 widths on a few hundred tokens */
    { 300, 2304, 2304, 0, 0, TRUE, VDIT_ACT_NONE, FALSE },
    { 300, 9216, 2304, 0, 0, TRUE, VDIT_ACT_GELU_TANH, FALSE },
    { 300, 2304, 9216, 0, 0, TRUE, VDIT_ACT_NONE, FALSE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    run_case (&p, &cases[i]);
  gpu_pair_clear (&p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/matmul", test_matmul);
  return g_test_run ();
}
