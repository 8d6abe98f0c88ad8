/* Helpers of the GPU tests (see gpu_util.h). */
#include "gpu_util.h"

#include <math.h>
#include <string.h>

gboolean
gpu_available (void)
{
  int n = 0;
  if (vdit_cuda_available (&n))
    return TRUE;
  g_print ("no usable CUDA device (%d found, or built without CUDA): skipping\n", n);
  return FALSE;
}

void
gpu_pair_init (gpu_pair *p, guint32 seed)
{
  GError *error = NULL;
  memset (p, 0, sizeof *p);
  g_assert_true (vdit_backend_cpu_init (&p->cpu, 0, &error));
  g_assert_no_error (error);
  g_assert_true (vdit_backend_cuda_init (&p->gpu, 0, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (p->gpu.iface->name, ==, "cuda");
  p->rng = g_rand_new_with_seed (seed);
}

void
gpu_pair_clear (gpu_pair *p)
{
  vdit_backend_free (&p->gpu);
  vdit_backend_free (&p->cpu);
  g_rand_free (p->rng);
}

void
bf16_round (float *x, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (!isfinite (x[i]))
      continue;
    uint32_t u;
    memcpy (&u, &x[i], 4);
    u += 0x7fff + ((u >> 16) & 1);
    u &= 0xffff0000u;
    memcpy (&x[i], &u, 4);
  }
}

float *
host_uniform (GRand *rng, size_t n, double lo, double hi)
{
  float *x = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (rng, lo, hi);
  bf16_round (x, n);
  return x;
}

static void *
upload (vdit_backend *be, const float *host, size_t n, VditElem elem)
{
  GError *error = NULL;
  void *buf = be->iface->alloc (be->context, n, elem, &error);
  g_assert_no_error (error);
  g_assert_nonnull (buf);
  if (n)
    g_assert_true (be->iface->upload (be->context, buf, host, n, elem, &error));
  g_assert_no_error (error);
  return buf;
}

twin
twin_new (gpu_pair *p, const float *host, size_t n, VditElem elem)
{
  twin t = { NULL, NULL, n, elem };
  if (host) {
    t.cpu = upload (&p->cpu, host, n, elem);
    t.gpu = upload (&p->gpu, host, n, elem);
    return t;
  }
  float *fill = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    fill[i] = 0.0f;
  t.cpu = upload (&p->cpu, fill, n, elem);
  for (size_t i = 0; i < n; i++)
    fill[i] = NAN;
  t.gpu = upload (&p->gpu, fill, n, elem);
  g_free (fill);
  return t;
}

void
twin_free (gpu_pair *p, twin *t)
{
  p->cpu.iface->release (p->cpu.context, t->cpu);
  p->gpu.iface->release (p->gpu.context, t->gpu);
  t->cpu = t->gpu = NULL;
}

void
twin_fetch (gpu_pair *p, const twin *t, float **cpu, float **gpu)
{
  GError *error = NULL;
  vdit_backend *be[2] = { &p->cpu, &p->gpu };
  float **dst[2] = { cpu, gpu };
  void *src[2] = { t->cpu, t->gpu };
  for (int i = 0; i < 2; i++) {
    g_assert_true (be[i]->iface->sync (be[i]->context, &error));
    g_assert_no_error (error);
    *dst[i] = g_new (float, MAX (t->n, 1));
    g_assert_true (be[i]->iface->download (be[i]->context, *dst[i], src[i], t->n, t->elem,
                                           &error));
    g_assert_no_error (error);
  }
}

double
nmse (const float *ref, const float *got, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite (ref[i]))
      continue;
    const double d = (double) got[i] - ref[i];
    num += d * d;
    den += (double) ref[i] * ref[i];
  }
  if (num == 0.0)
    return 0.0;
  return den > 0.0 ? num / den : INFINITY;
}

double
twin_check (gpu_pair *p, const twin *t, double tol, const char *what)
{
  float *ref, *got;
  twin_fetch (p, t, &ref, &got);
  for (size_t i = 0; i < t->n; i++) {
    const gboolean rf = isfinite (ref[i]), gf = isfinite (got[i]);
    if (rf != gf || (!rf && ref[i] != got[i]))
      g_error ("%s: element %zu is %g on the GPU, %g on the CPU", what, i, got[i], ref[i]);
  }
  const double e = nmse (ref, got, t->n);
  g_test_message ("%s: nmse %.3g (tolerance %.3g)", what, e, tol);
  if (!(e <= tol))
    g_error ("%s: nmse %.3g over tolerance %.3g", what, e, tol);
  g_free (ref);
  g_free (got);
  return e;
}

gboolean
gpu_clip_on_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int w, int h,
                   int stride)
{
  gpu_clip *c = user_data;
  for (int y = 0; y < h; y++)
    g_byte_array_append (c->rgb, rgb + (size_t) y * stride, (guint) w * 3);
  c->frames++;
  return TRUE;
}

double
gpu_clip_psnr (const gpu_clip *a, const gpu_clip *b)
{
  g_assert_cmpuint (a->rgb->len, ==, b->rgb->len);
  double se = 0.0;
  for (guint i = 0; i < a->rgb->len; i++) {
    const double d = (double) a->rgb->data[i] - b->rgb->data[i];
    se += d * d;
  }
  const double mse = se / MAX (a->rgb->len, 1);
  return mse > 0.0 ? 10.0 * log10 (255.0 * 255.0 / mse) : INFINITY;
}
