/* The CausalVideoVAE decoder's CUDA slots against the host ops of engine/vae_ops.h, op
 * by op, then whole decodes of a small random decoder (untiled and tiled) on the GPU
 * against the host decode.
 *
 * Both sides are f32 with f32 (GroupNorm: double) accumulation, so they differ only in
 * the order of sums: about 1e-6 of the output's scale per GEMM. The op bound, 1e-4 of
 * max(1, max |ref|), leaves a 100× margin and still fails a GEMM that ran in TF32
 * (~5e-4) or bf16 (~4e-3). A whole decode chains ~40 such layers through GroupNorms
 * that renormalise; it must stay within 1e-3 absolute of the host's values in [−1, 1]
 * (PSNR ≥ 80 dB over that range of 2), and its RGB bytes within one step.
 *
 * Run with VDIT_CUDA_VAE_PRECISION=tf32 or bf16 (meson's gpu_vae_tf32, gpu_vae_bf16), the
 * convolutions' GEMMs round their operands: the conv3d bound becomes 2e-3 (TF32, ~4× its
 * error) or 2e-2 (bf16), and a whole decode must keep PSNR ≥ 50 or 35 dB. */
#include "gpu_util.h"

#include "backend_timing.h"
#include "config.h"
#include "vae_decoder.h"
#include "vae_ops.h"
#include "vae_writer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_GEMM 1e-4
#define TOL_NORM 1e-5
#define TOL_RESAMPLE 1e-6

/* the conv3d op bound and the whole decode's PSNR floor at the convolutions' precision */
static double
conv_tol (void)
{
  const VditVaePrecision p = vdit_vae_gpu_precision ();
  return p == VDIT_VAE_BF16 ? 2e-2 : p == VDIT_VAE_TF32 ? 2e-3 : TOL_GEMM;
}

static double
decode_min_psnr (void)
{
  const VditVaePrecision p = vdit_vae_gpu_precision ();
  return p == VDIT_VAE_BF16 ? 35.0 : p == VDIT_VAE_TF32 ? 50.0 : 80.0;
}

static float *
dev_put (vdit_backend *be, const float *host, size_t n)
{
  GError *error = NULL;
  float *buf = be->iface->alloc (be->context, n, VDIT_ELEM_F32, &error);
  g_assert_no_error (error);
  if (host)
    g_assert_true (be->iface->upload (be->context, buf, host, n, VDIT_ELEM_F32, &error));
  g_assert_no_error (error);
  return buf;
}

/* The buffer's values after the queued work, freed. */
static float *
dev_take (vdit_backend *be, float *buf, size_t n)
{
  GError *error = NULL;
  float *host = g_new (float, n);
  g_assert_true (be->iface->sync (be->context, &error));
  g_assert_no_error (error);
  g_assert_true (be->iface->download (be->context, host, buf, n, VDIT_ELEM_F32, &error));
  g_assert_no_error (error);
  be->iface->release (be->context, buf);
  return host;
}

/* max |got − ref| ≤ tol · max(1, max |ref|), every value finite. */
static void
check_close (const float *ref, const float *got, size_t n, double tol, const char *what)
{
  double amax = 0.0, err = 0.0;
  size_t worst = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite (got[i]) || !isfinite (ref[i]))
      g_error ("%s: element %zu is %g on the GPU, %g on the host", what, i, got[i], ref[i]);
    amax = MAX (amax, fabs (ref[i]));
    if (fabs ((double) got[i] - ref[i]) > err) {
      err = fabs ((double) got[i] - ref[i]);
      worst = i;
    }
  }
  g_test_message ("%s: max |error| %.3g (max |ref| %.3g)", what, err, amax);
  if (err > tol * MAX (1.0, amax))
    g_error ("%s: element %zu is %.9g on the GPU, %.9g on the host (bound %.3g)", what, worst,
             got[worst], ref[worst], tol * MAX (1.0, amax));
}

static float *
uniform (GRand *rng, size_t n, double lo, double hi)
{
  float *v = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    v[i] = (float) g_rand_double_range (rng, lo, hi);
  return v;
}

/* ---- ops ------------------------------------------------------------------------- */

typedef struct {
  int cin, cout, kt, kh, kw, T, H, W;
} conv_case;

static void
test_conv3d (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 21);
  static const conv_case cases[] = {
    { 8, 16, 3, 3, 3, 3, 5, 7 },     /* a ResNet conv: causal padding in time, zeros in space */
    { 16, 8, 1, 3, 3, 2, 6, 4 },     /* SpatialUpsample2x's */
    { 12, 20, 1, 1, 1, 3, 5, 5 },    /* shortcut, q/k/v: the input is the column matrix */
    { 4, 3, 3, 3, 3, 1, 9, 9 },      /* conv_out shape, one frame */
    { 256, 32, 3, 3, 3, 2, 64, 128 }, /* an im2col band smaller than the clip: two GEMMs */
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    for (int acc = 0; acc < 2; acc++) {
      const conv_case *k = &cases[c];
      const size_t K = (size_t) k->cin * k->kt * k->kh * k->kw, px = (size_t) k->T * k->H * k->W;
      const double a = 1.0 / sqrt ((double) K);
      g_autofree float *in = uniform (p.rng, k->cin * px, -1, 1);
      g_autofree float *w = uniform (p.rng, k->cout * K, -a, a);
      g_autofree float *b = uniform (p.rng, k->cout, -0.1, 0.1);
      g_autofree float *res = uniform (p.rng, k->cout * px, -1, 1);
      g_autofree float *ref = g_new (float, k->cout * px);
      const vdit_vae_conv cv = { w, b, k->cout, k->cin, k->kt, k->kh, k->kw };
      vdit_vae_conv3d (ref, in, &cv, k->T, k->H, k->W);
      if (acc)
        for (size_t i = 0; i < k->cout * px; i++)
          ref[i] += res[i];
      float *d_in = dev_put (&p.gpu, in, k->cin * px), *d_w = dev_put (&p.gpu, w, k->cout * K);
      float *d_b = dev_put (&p.gpu, b, k->cout);
      float *d_out = dev_put (&p.gpu, acc ? res : NULL, k->cout * px);
      p.gpu.iface->vae_conv3d (p.gpu.context, d_out, d_in, d_w, d_b, k->cout, k->cin, k->kt,
                               k->kh, k->kw, k->T, k->H, k->W, acc);
      g_autofree float *got = dev_take (&p.gpu, d_out, k->cout * px);
      g_autofree char *what = g_strdup_printf ("conv3d %d→%d k(%d,%d,%d) %d×%d×%d%s", k->cin,
                                               k->cout, k->kt, k->kh, k->kw, k->T, k->H, k->W,
                                               acc ? " accumulate" : "");
      check_close (ref, got, k->cout * px, conv_tol (), what);
      g_free (dev_take (&p.gpu, d_in, 1));
      g_free (dev_take (&p.gpu, d_w, 1));
      g_free (dev_take (&p.gpu, d_b, 1));
    }
  /* the backend says what ran: the method asked for, or im2col where cuDNN is missing */
  g_assert_nonnull (p.gpu.iface->vae_conv_ran);
  const unsigned ran = p.gpu.iface->vae_conv_ran (p.gpu.context, TRUE);
  const VditVaeConvMethod m = vdit_vae_gpu_conv ();
  g_test_message ("convolutions ran on: %s%s%s", ran & 1 ? "cudnn " : "",
                  ran & 2 ? "cudnn-ncdhw " : "", ran & 4 ? "gemm" : "");
  g_assert_cmpuint (ran, !=, 0);
  g_assert_cmpuint (ran & ~(1u << m | 1u << VDIT_VAE_CONV_GEMM), ==, 0);
  g_assert_cmpuint (p.gpu.iface->vae_conv_ran (p.gpu.context, FALSE), ==, 0);
  gpu_pair_clear (&p);
}

static void
test_group_norm (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 22);
  static const struct {
    int c;
    size_t per_channel;
  } cases[] = { { 32, 1 }, { 64, 105 }, { 128, 3 * 33 * 17 }, { 32, 1 << 20 } };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++)
    for (int mode = 0; mode < 3; mode++) { /* SiLU out of place, plain, SiLU in place */
      const int c = cases[s].c;
      const size_t n = c * cases[s].per_channel;
      const gboolean silu = mode != 1, in_place = mode == 2;
      g_autofree float *x = uniform (p.rng, n, -2, 3); /* a mean away from 0 */
      g_autofree float *gamma = uniform (p.rng, c, 0.5, 1.5);
      g_autofree float *beta = uniform (p.rng, c, -0.5, 0.5);
      g_autofree float *ref = g_memdup2 (x, n * sizeof (float));
      const vdit_vae_norm nm = { gamma, beta, c };
      vdit_vae_group_norm (ref, &nm, cases[s].per_channel, silu);
      float *d_x = dev_put (&p.gpu, x, n), *d_g = dev_put (&p.gpu, gamma, c);
      float *d_b = dev_put (&p.gpu, beta, c);
      float *d_out = in_place ? d_x : dev_put (&p.gpu, NULL, n);
      p.gpu.iface->vae_group_norm (p.gpu.context, d_out, d_x, d_g, d_b, c,
                                   cases[s].per_channel, silu);
      g_autofree float *got = dev_take (&p.gpu, d_out, n);
      g_autofree char *what = g_strdup_printf ("group_norm c %d × %zu%s%s", c,
                                               cases[s].per_channel, silu ? " silu" : "",
                                               in_place ? " in place" : "");
      check_close (ref, got, n, TOL_NORM, what);
      if (!in_place)
        g_free (dev_take (&p.gpu, d_x, 1));
      g_free (dev_take (&p.gpu, d_g, 1));
      g_free (dev_take (&p.gpu, d_b, 1));
    }
  gpu_pair_clear (&p);
}

static void
test_upsample (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 23);
  static const int shapes[][4] = { { 3, 1, 5, 6 }, { 4, 2, 3, 7 }, { 2, 5, 8, 8 }, { 1, 3, 1, 1 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    for (int temporal = 0; temporal < 2; temporal++) {
      const int C = shapes[s][0], T = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
      const int T2 = temporal ? 1 + 2 * (T - 1) : T;
      const size_t n_in = (size_t) C * T * H * W, n_out = (size_t) C * T2 * 4 * H * W;
      g_autofree float *in = uniform (p.rng, n_in, -1, 1);
      g_autofree float *ref = g_new (float, n_out);
      if (temporal)
        vdit_vae_upsample_s2t2 (ref, in, C, T, H, W);
      else
        vdit_vae_upsample_nearest2x (ref, in, C, T, H, W);
      float *d_in = dev_put (&p.gpu, in, n_in), *d_out = dev_put (&p.gpu, NULL, n_out);
      p.gpu.iface->vae_upsample (p.gpu.context, d_out, d_in, C, T, H, W, temporal);
      g_autofree float *got = dev_take (&p.gpu, d_out, n_out);
      g_autofree char *what = g_strdup_printf ("upsample %s %d×%d×%d×%d",
                                               temporal ? "s2t2" : "nearest2x", C, T, H, W);
      check_close (ref, got, n_out, TOL_RESAMPLE, what);
      g_free (dev_take (&p.gpu, d_in, 1));
    }
  gpu_pair_clear (&p);
}

static void
test_frame_attention (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 24);
  static const int shapes[][3] = { { 32, 1, 64 }, { 64, 2, 300 }, { 128, 3, 1000 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int C = shapes[s][0], T = shapes[s][1], HW = shapes[s][2];
    const size_t n = (size_t) C * T * HW;
    /* scores of a few units, as after the mid block's GroupNorm and 1×1 convs */
    g_autofree float *q = uniform (p.rng, n, -1.5, 1.5);
    g_autofree float *k = uniform (p.rng, n, -1.5, 1.5);
    g_autofree float *v = uniform (p.rng, n, -1, 1);
    g_autofree float *ref = g_new (float, n);
    vdit_vae_frame_attention (ref, q, k, v, C, T, HW);
    float *dq = dev_put (&p.gpu, q, n), *dk = dev_put (&p.gpu, k, n), *dv = dev_put (&p.gpu, v, n);
    float *d_out = dev_put (&p.gpu, NULL, n);
    p.gpu.iface->vae_frame_attention (p.gpu.context, d_out, dq, dk, dv, C, T, HW);
    g_autofree float *got = dev_take (&p.gpu, d_out, n);
    g_autofree char *what = g_strdup_printf ("frame_attention C %d T %d HW %d", C, T, HW);
    check_close (ref, got, n, TOL_GEMM, what);
    g_free (dev_take (&p.gpu, dq, 1));
    g_free (dev_take (&p.gpu, dk, 1));
    g_free (dev_take (&p.gpu, dv, 1));
  }
  gpu_pair_clear (&p);
}

/* ---- whole decodes ---------------------------------------------------------------- */

enum { T = 3, LH = 12, LW = 10, Z = 4 };


static void
test_decode (gconstpointer data)
{
  const gboolean tiled = GPOINTER_TO_INT (data);
  GError *error = NULL;
  gpu_pair p;
  gpu_pair_init (&p, 25);
  g_autofree char *dir = g_dir_make_tmp ("vdit-gpu-vae-XXXXXX", &error);
  g_assert_no_error (error);
  /* tiles of 6 latent pixels (48 decoded) overlapping by a quarter, chunks of 2 frames */
  const vae_shape shape = { 32, { 1, 2, 2, 4 }, 1, Z, 6, 48, tiled ? 2 : 0, 0.25f };
  vae_write_random (dir, &shape, 31);
  vdit_vae_decoder *v = vdit_vae_decoder_load (dir, &error);
  g_assert_no_error (error);
  test_rmdir (dir);
  vdit_vae_device *dev = vdit_vae_device_new (v, &p.gpu, &error);
  g_assert_no_error (error);

  const int frames = 1 + VDIT_VAE_TIME_FACTOR * (T - 1);
  const size_t fv = (size_t) LH * LW * 64 * 3, nv = fv * frames, nl = (size_t) T * LH * LW * Z;
  g_autofree float *latent = uniform (p.rng, nl, -0.2, 0.2);
  sink host = { g_array_new (FALSE, FALSE, sizeof (int)), g_new0 (float, nv), fv };
  sink gpu = { g_array_new (FALSE, FALSE, sizeof (int)), g_new0 (float, nv), fv };
  g_assert_true (vdit_vae_decode_stream_on (v, NULL, latent, T, LH, LW, collect, &host, &error));
  g_assert_no_error (error);
  /* through the timing wrapper: its VAE slots reach the GPU's */
  vdit_backend_timing *timing = vdit_backend_timing_wrap (&p.gpu);
  g_assert_true (vdit_vae_decode_stream_on (v, dev, latent, T, LH, LW, collect, &gpu, &error));
  g_assert_no_error (error);
  vdit_op_times times = { 0 };
  g_assert_true (vdit_backend_timing_collect (timing, &times, &error));
  g_assert_no_error (error);
  vdit_backend_timing_unwrap (&p.gpu, timing);
  g_assert_cmpint (times.calls[VDIT_OP_GEMM], >, 0);
  g_assert_cmpint (times.calls[VDIT_OP_NORM], >, 0);
  g_assert_cmpint (times.calls[VDIT_OP_ATTENTION], >, 0);

  g_assert_cmpuint (gpu.firsts->len, ==, host.firsts->len);
  g_assert_cmpuint (host.firsts->len, ==, tiled ? 2 : 1);
  for (guint i = 0; i < host.firsts->len; i++)
    g_assert_cmpint (g_array_index (gpu.firsts, int, i), ==, g_array_index (host.firsts, int, i));
  double err = 0.0, sq = 0.0, amax = 0.0;
  for (size_t i = 0; i < nv; i++) {
    g_assert_true (isfinite (gpu.video[i]));
    const double d = fabs ((double) gpu.video[i] - host.video[i]);
    err = MAX (err, d);
    sq += d * d;
    amax = MAX (amax, fabs (host.video[i]));
  }
  const double psnr = sq > 0.0 ? 10.0 * log10 (4.0 / (sq / nv)) : INFINITY;
  g_test_message ("decode %s: max |error| %.3g, PSNR %.1f dB (max |ref| %.3g)",
                  tiled ? "tiled" : "whole", err, psnr, amax);
  g_assert_cmpfloat (amax, >, 0.01);
  g_assert_cmpfloat (psnr, >=, decode_min_psnr ());
  if (vdit_vae_gpu_precision () == VDIT_VAE_F32) {
    g_assert_cmpfloat (err, <=, 1e-3);
    g_autofree uint8_t *rgb_host = g_new (uint8_t, nv), *rgb_gpu = g_new (uint8_t, nv);
    vdit_vae_rgb (rgb_host, host.video, nv);
    vdit_vae_rgb (rgb_gpu, gpu.video, nv);
    for (size_t i = 0; i < nv; i++)
      g_assert_cmpint (abs ((int) rgb_host[i] - rgb_gpu[i]), <=, 1);
  }

  g_array_unref (host.firsts);
  g_array_unref (gpu.firsts);
  g_free (host.video);
  g_free (gpu.video);
  vdit_vae_device_free (dev);
  vdit_vae_decoder_free (v);
  gpu_pair_clear (&p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/vae/conv3d", test_conv3d);
  g_test_add_func ("/gpu/vae/group-norm", test_group_norm);
  g_test_add_func ("/gpu/vae/upsample", test_upsample);
  g_test_add_func ("/gpu/vae/frame-attention", test_frame_attention);
  g_test_add_data_func ("/gpu/vae/decode/whole", GINT_TO_POINTER (FALSE), test_decode);
  g_test_add_data_func ("/gpu/vae/decode/tiled", GINT_TO_POINTER (TRUE), test_decode);
  return g_test_run ();
}
