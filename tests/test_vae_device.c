/* The CausalVideoVAE decoder's device path (vdit_vae_decode_stream_on) without a GPU: a
 * backend whose vae_* slots run the host ops on host buffers must decode exactly what
 * the host path decodes, whole and tiled, streaming the same chunks; allocation
 * failures come back as errors; backends without the slots are refused. */
#include "backend.h"
#include "config.h"
#include "vae_decoder.h"
#include "vae_ops.h"
#include "vae_writer.h"

/* ---- a host backend with the VAE's slots ------------------------------------------ */

static vdit_backend_i host_vae_i;
static int allocs_left = -1; /* < 0: no limit */

static void *
limited_alloc (void *ctx, size_t n, VditElem elem, GError **error)
{
  if (allocs_left == 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "test: out of allocations");
    return NULL;
  }
  if (allocs_left > 0)
    allocs_left--;
  return g_new (float, n);
}

static void
host_release (void *ctx, void *buf)
{
  g_free (buf);
}

static gboolean
host_copy (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  memcpy (dst, src, n * sizeof (float));
  return TRUE;
}

static void
host_conv (void *ctx, float *out, const float *in, const float *w, const float *b, int cout,
           int cin, int kt, int kh, int kw, int T, int H, int W, gboolean accumulate)
{
  const vdit_vae_conv c = { (float *) w, (float *) b, cout, cin, kt, kh, kw };
  const size_t n = (size_t) cout * T * H * W;
  float *h = g_new (float, n);
  vdit_vae_conv3d (h, in, &c, T, H, W);
  for (size_t i = 0; i < n; i++)
    out[i] = accumulate ? out[i] + h[i] : h[i];
  g_free (h);
}

static void
host_norm (void *ctx, float *out, const float *x, const float *gamma, const float *beta, int c,
           size_t per_channel, gboolean silu)
{
  const vdit_vae_norm nm = { (float *) gamma, (float *) beta, c };
  if (out != x)
    memcpy (out, x, sizeof (float) * c * per_channel);
  vdit_vae_group_norm (out, &nm, per_channel, silu);
}

static void
host_upsample (void *ctx, float *out, const float *in, int C, int T, int H, int W,
               gboolean temporal)
{
  if (temporal)
    vdit_vae_upsample_s2t2 (out, in, C, T, H, W);
  else
    vdit_vae_upsample_nearest2x (out, in, C, T, H, W);
}

static void
host_attention (void *ctx, float *out, const float *q, const float *k, const float *v, int C,
                int T, int HW)
{
  vdit_vae_frame_attention (out, q, k, v, C, T, HW);
}

/* The CPU backend with host-memory VAE slots in front. */
static void
host_vae_backend (vdit_backend *be)
{
  GError *error = NULL;
  g_assert_true (vdit_backend_cpu_init (be, 1, &error));
  g_assert_no_error (error);
  g_assert_false (vdit_vae_device_supported (be));
  host_vae_i = *be->iface;
  host_vae_i.alloc = limited_alloc;
  host_vae_i.release = host_release;
  host_vae_i.upload = host_copy;
  host_vae_i.download = host_copy;
  host_vae_i.vae_conv3d = host_conv;
  host_vae_i.vae_group_norm = host_norm;
  host_vae_i.vae_upsample = host_upsample;
  host_vae_i.vae_frame_attention = host_attention;
  be->iface = &host_vae_i;
  g_assert_true (vdit_vae_device_supported (be));
}

/* ---- decoding --------------------------------------------------------------------- */


enum { T = 3, LH = 8, LW = 8, Z = 4 };

static void
decode (vdit_vae_decoder *v, const vdit_vae_device *dev, const float *latent, sink *s,
        size_t frame_values, int frames)
{
  GError *error = NULL;
  s->firsts = g_array_new (FALSE, FALSE, sizeof (int));
  s->frame_values = frame_values;
  s->video = g_new0 (float, frame_values * frames);
  g_assert_true (vdit_vae_decode_stream_on (v, dev, latent, T, LH, LW, collect, s, &error));
  g_assert_no_error (error);
}

static void
test_same_as_host (gconstpointer data)
{
  const gboolean tiled = GPOINTER_TO_INT (data);
  GError *error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("vdit-vae-XXXXXX", &error);
  g_assert_no_error (error);
  /* tiles of 4 latent pixels overlapping by one, chunks of 2 latent frames */
  const vae_shape shape = { 32, { 1, 1, 2, 2 }, 1, Z, 4, 32, tiled ? 2 : 0, 0.25f };
  vae_write_random (dir, &shape, 7);
  vdit_vae_decoder *v = vdit_vae_decoder_load (dir, &error);
  g_assert_no_error (error);
  test_rmdir (dir);

  vdit_backend be;
  host_vae_backend (&be);
  vdit_vae_device *dev = vdit_vae_device_new (v, &be, &error);
  g_assert_no_error (error);

  const int frames = 1 + VDIT_VAE_TIME_FACTOR * (T - 1);
  const size_t frame_values = (size_t) LH * LW * 64 * 3, nl = (size_t) T * LH * LW * Z;
  g_autofree float *latent = g_new (float, nl);
  GRand *rng = g_rand_new_with_seed (3);
  for (size_t i = 0; i < nl; i++)
    latent[i] = (float) g_rand_double_range (rng, -0.2, 0.2); /* about scaling_factor */
  g_rand_free (rng);

  sink host, device;
  decode (v, NULL, latent, &host, frame_values, frames);
  decode (v, dev, latent, &device, frame_values, frames);
  g_assert_cmpuint (host.firsts->len, ==, tiled ? 2 : 1);
  g_assert_cmpuint (device.firsts->len, ==, host.firsts->len);
  for (guint i = 0; i < host.firsts->len; i++)
    g_assert_cmpint (g_array_index (device.firsts, int, i), ==, g_array_index (host.firsts, int, i));
  double amax = 0.0;
  for (size_t i = 0; i < frame_values * frames; i++) {
    g_assert_true (isfinite (host.video[i]));
    amax = MAX (amax, fabs (host.video[i]));
  }
  g_assert_cmpfloat (amax, >, 0.01); /* not a blank clip */
  g_assert_cmpmem (device.video, frame_values * frames * sizeof (float), host.video,
                   frame_values * frames * sizeof (float));

  /* the k-th allocation fails: an error, nothing leaked (the sanitizer run checks) */
  for (int k = 0; k < 30; k += 6) {
    allocs_left = k;
    sink s = { g_array_new (FALSE, FALSE, sizeof (int)), g_new0 (float, frame_values * frames),
               frame_values };
    g_assert_false (vdit_vae_decode_stream_on (v, dev, latent, T, LH, LW, collect, &s, &error));
    g_assert_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY);
    g_clear_error (&error);
    g_array_unref (s.firsts);
    g_free (s.video);
  }
  allocs_left = -1;

  g_array_unref (host.firsts);
  g_array_unref (device.firsts);
  g_free (host.video);
  g_free (device.video);
  vdit_vae_device_free (dev);
  vdit_backend_free (&be);
  vdit_vae_decoder_free (v);
}

/* The CPU backend decodes with the host ops: no device object for it. */
static void
test_cpu_refused (void)
{
  GError *error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("vdit-vae-XXXXXX", &error);
  const vae_shape shape = { 32, { 1, 1, 1, 1 }, 1, Z, 64, 512, 8, 0.125f };
  vae_write_random (dir, &shape, 1);
  vdit_vae_decoder *v = vdit_vae_decoder_load (dir, &error);
  g_assert_no_error (error);
  test_rmdir (dir);
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 1, &error));
  g_assert_null (vdit_vae_device_new (v, &be, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE);
  g_clear_error (&error);
  /* a decode on a device needs less host memory than one on the host */
  uint64_t host, device, host_only, none;
  vdit_vae_decoder_peak_split (v, 9, 90, 160, TRUE, &host, &device);
  vdit_vae_decoder_peak_split (v, 9, 90, 160, FALSE, &host_only, &none);
  g_assert_cmpuint (none, ==, 0);
  g_assert_cmpuint (host_only, ==, vdit_vae_decoder_peak_bytes (v, 9, 90, 160));
  g_assert_cmpuint (host, <, host_only);
  g_assert_cmpuint (device, >, 0);
  g_assert_cmpuint (vdit_vae_decoder_weight_bytes (v), >, 0);
  vdit_backend_free (&be);
  vdit_vae_decoder_free (v);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/vae-device/same-as-host/whole", GINT_TO_POINTER (FALSE),
                        test_same_as_host);
  g_test_add_data_func ("/vae-device/same-as-host/tiled", GINT_TO_POINTER (TRUE),
                        test_same_as_host);
  g_test_add_func ("/vae-device/cpu-refused", test_cpu_refused);
  return g_test_run ();
}
