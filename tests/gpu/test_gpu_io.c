/* The CUDA ops at the two ends of a forward against the CPU backend: the timestep
 * embedding (bf16 of the same double-precision numbers), decoding latent tokens to 8-bit
 * RGB (the very same bytes, into page-locked memory) and page-locked host memory. */
#include "gpu_util.h"

#include "decoder.h"
#include "dit.h"

#include <math.h>
#include <string.h>

#define TOL 1e-5 /* bf16 outputs of identical arithmetic */

static void
test_timestep_embedding (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 11);
  /* the goldens' 637.5, the ends of a 1000-step schedule, a fractional flow timestep */
  const float ts[] = { 637.5f, 0.0f, 999.0f, 1.0f, 371.4286f };
  const int n = G_N_ELEMENTS (ts);
  const int dims[] = { 256, 8, 2, 1000 };
  for (guint s = 0; s < G_N_ELEMENTS (dims); s++) {
    const int fd = dims[s];
    twin out = twin_new (&p, NULL, (size_t) n * fd, VDIT_ELEM_ACT);
    p.cpu.iface->timestep_embedding (p.cpu.context, out.cpu, ts, n, fd);
    p.gpu.iface->timestep_embedding (p.gpu.context, out.gpu, ts, n, fd);
    float *ref, *got;
    twin_fetch (&p, &out, &ref, &got);
    /* within one bf16 rounding of the f32 value everywhere: catches swapped halves,
     * rows or frequencies that an nmse alone would average away */
    for (size_t i = 0; i < (size_t) n * fd; i++)
      if (!(fabsf (got[i] - ref[i]) <= 1.0f / 256))
        g_error ("timestep_embedding freq_dim %d: element %zu is %g on the GPU, %g on the CPU",
                 fd, i, got[i], ref[i]);
    g_free (ref), g_free (got);
    char *what = g_strdup_printf ("timestep_embedding freq_dim %d", fd);
    twin_check (&p, &out, TOL, what);
    g_free (what);
    twin_free (&p, &out);
  }
  gpu_pair_clear (&p);
}

/* A latent in [−1.3, 1.3] with the values whose bytes are easy to get wrong. */
static float *
latent_values (GRand *rng, size_t n)
{
  float *x = host_uniform (rng, n, -1.3, 1.3);
  const float special[] = { NAN, INFINITY, -INFINITY, -1.0f, 1.0f, 0.0f, -0.99609375f,
                            0.00390625f, 1.5f, -2.0f, -0.0f };
  for (guint i = 0; i < G_N_ELEMENTS (special) && i * 7 < n; i++)
    x[i * 7] = special[i];
  return x;
}

/* The CPU op against the engine's own host path: unpatchify, then vdit_decode_frame. */
static void
check_cpu_reference (gpu_pair *p, const float *tokens, const uint8_t *rgb, int T, int H, int W,
                     const int patch[3], int frame0, int frames)
{
  const size_t n = (size_t) T * H * W * 3, frame = (size_t) H * W * 3;
  float *latent = g_new (float, n);
  uint8_t *want = g_new (uint8_t, frame);
  vdit_config cfg;
  memset (&cfg, 0, sizeof cfg);
  cfg.height = H;
  cfg.width = W;
  vdit_unpatchify (latent, tokens, T, H, W, 3, patch);
  for (int f = 0; f < frames; f++) {
    vdit_decode_frame (&cfg, latent, frame0 + f, want);
    g_assert_cmpmem (rgb + f * frame, frame, want, frame);
  }
  g_free (latent), g_free (want);
}

static void
test_decode_rgb (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 12);
  GError *error = NULL;
  /* T, H, W, patch, first frame, frames */
  const int cases[][8] = {
    { 4, 6, 10, 1, 2, 2, 0, 4 },  /* the DiT's tokens, 1×2×2 patches */
    { 4, 8, 8, 2, 2, 2, 1, 2 },   /* temporal patches, a range starting mid-patch */
    { 3, 5, 7, 1, 1, 1, 0, 3 },   /* the plain latent, as generate.c decodes it */
    { 2, 64, 96, 1, 1, 1, 1, 1 }, /* one larger frame, not the first */
  };
  const VditElem elems[] = { VDIT_ELEM_F32, VDIT_ELEM_ACT };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++) {
    const int T = cases[s][0], H = cases[s][1], W = cases[s][2];
    const int patch[3] = { cases[s][3], cases[s][4], cases[s][5] };
    const int frame0 = cases[s][6], frames = cases[s][7];
    const size_t n = (size_t) T * H * W * 3, bytes = (size_t) frames * H * W * 3;
    float *tokens = latent_values (p.rng, n);
    for (guint e = 0; e < G_N_ELEMENTS (elems); e++) {
      twin src = twin_new (&p, tokens, n, elems[e]);
      uint8_t *ref = g_malloc (bytes);
      uint8_t *got = p.gpu.iface->host_alloc (p.gpu.context, bytes, &error);
      g_assert_no_error (error);
      memset (got, 0xa5, bytes);
      p.cpu.iface->decode_rgb (p.cpu.context, ref, src.cpu, elems[e], frame0, frames, H, W,
                               patch);
      p.gpu.iface->decode_rgb (p.gpu.context, got, src.gpu, elems[e], frame0, frames, H, W,
                               patch);
      g_assert_true (p.gpu.iface->sync (p.gpu.context, &error));
      g_assert_no_error (error);
      g_test_message ("decode_rgb %dx%dx%d patch %dx%dx%d %s: %zu bytes", T, H, W, patch[0],
                      patch[1], patch[2], elems[e] == VDIT_ELEM_F32 ? "f32" : "act", bytes);
      /* bf16-exact inputs: the bytes must be identical, not merely close */
      g_assert_cmpmem (got, bytes, ref, bytes);
      check_cpu_reference (&p, tokens, ref, T, H, W, patch, frame0, frames);
      p.gpu.iface->host_free (p.gpu.context, got);
      g_free (ref);
      twin_free (&p, &src);
    }
    g_free (tokens);
  }
  gpu_pair_clear (&p);
}

static void
test_host_memory (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 13);
  GError *error = NULL;
  /* usable memory, freed with a copy possibly queued */
  const size_t bytes = (size_t) 3 << 20;
  uint8_t *h = p.gpu.iface->host_alloc (p.gpu.context, bytes, &error);
  g_assert_no_error (error);
  g_assert_nonnull (h);
  memset (h, 7, bytes);
  g_assert_cmpint (h[bytes - 1], ==, 7);
  p.gpu.iface->host_free (p.gpu.context, h);
  p.gpu.iface->host_free (p.gpu.context, NULL);

  /* out of memory: NULL and the numbers, nothing recorded for sync */
  void *huge = p.gpu.iface->host_alloc (p.gpu.context, (size_t) 1 << 52, &error);
  g_assert_null (huge);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (error->message, "MiB"));
  g_clear_error (&error);
  g_assert_true (p.gpu.iface->sync (p.gpu.context, &error));
  g_assert_no_error (error);

  /* the CPU keeps frames where they are */
  g_assert_null (p.cpu.iface->host_alloc);
  gpu_pair_clear (&p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/io/timestep-embedding", test_timestep_embedding);
  g_test_add_func ("/gpu/io/decode-rgb", test_decode_rgb);
  g_test_add_func ("/gpu/io/host-memory", test_host_memory);
  return g_test_run ();
}
