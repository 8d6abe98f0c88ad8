/* A small CausalVideoVAE decoder with random weights, written as a converted model's
 * vae/ folder (config.json + vae.safetensors), for tests that need one without PyTorch.
 * Weights are scaled by 1/sqrt(fan-in) so that activations stay about unit size. */
#ifndef VDIT_TEST_VAE_WRITER_H
#define VDIT_TEST_VAE_WRITER_H

#include "st_writer.h"

#include <math.h>
#include <string.h>

typedef struct {
  int hidden, mult[4], res_blocks, z;
  int tile_latent, tile_sample, tile_latent_t; /* tile_latent_t 0: use_tiling false */
  float tile_overlap;
} vae_shape;

typedef struct {
  st_writer *w;
  GRand *rng;
} vae_writer;

static inline void
vae_put (vae_writer *vw, const char *name, int ndim, const int64_t *shape, double lo, double hi)
{
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  float *v = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float) g_rand_double_range (vw->rng, lo, hi);
  st_writer_add (vw->w, name, "F32", ndim, shape, v, (size_t) n * sizeof (float));
  g_free (v);
}

static inline void
vae_put_conv (vae_writer *vw, const char *prefix, int cin, int cout, int kt, int kh, int kw)
{
  const int64_t ws[5] = { cout, cin, kt, kh, kw }, bs[1] = { cout };
  const double a = 1.0 / sqrt ((double) cin * kt * kh * kw);
  char *wn = g_strdup_printf ("%s.conv.weight", prefix), *bn = g_strdup_printf ("%s.conv.bias", prefix);
  vae_put (vw, wn, 5, ws, -a, a);
  vae_put (vw, bn, 1, bs, -0.1, 0.1);
  g_free (wn);
  g_free (bn);
}

static inline void
vae_put_norm (vae_writer *vw, const char *prefix, int c)
{
  const int64_t s[1] = { c };
  char *wn = g_strdup_printf ("%s.weight", prefix), *bn = g_strdup_printf ("%s.bias", prefix);
  vae_put (vw, wn, 1, s, 0.8, 1.2);
  vae_put (vw, bn, 1, s, -0.1, 0.1);
  g_free (wn);
  g_free (bn);
}

static inline void
vae_put_resnet (vae_writer *vw, const char *prefix, int cin, int cout)
{
  char *p[5] = { g_strconcat (prefix, ".norm1", NULL), g_strconcat (prefix, ".conv1", NULL),
                 g_strconcat (prefix, ".norm2", NULL), g_strconcat (prefix, ".conv2", NULL),
                 g_strconcat (prefix, ".nin_shortcut", NULL) };
  vae_put_norm (vw, p[0], cin);
  vae_put_conv (vw, p[1], cin, cout, 3, 3, 3);
  vae_put_norm (vw, p[2], cout);
  vae_put_conv (vw, p[3], cout, cout, 3, 3, 3);
  if (cin != cout)
    vae_put_conv (vw, p[4], cin, cout, 1, 1, 1);
  for (int i = 0; i < 5; i++)
    g_free (p[i]);
}

/* Writes dir/config.json and dir/vae.safetensors (dir must exist). */
static inline void
vae_write_random (const char *dir, const vae_shape *s, guint32 seed)
{
  vae_writer vw = { st_writer_new (), g_rand_new_with_seed (seed) };
  const int top = s->hidden * s->mult[3], z = s->z;
  vae_put_conv (&vw, "post_quant_conv", z, z, 1, 1, 1);
  vae_put_conv (&vw, "decoder.conv_in", z, top, 3, 3, 3);
  vae_put_resnet (&vw, "decoder.mid.block_1", top, top);
  vae_put_norm (&vw, "decoder.mid.attn_1.norm", top);
  vae_put_conv (&vw, "decoder.mid.attn_1.q", top, top, 1, 1, 1);
  vae_put_conv (&vw, "decoder.mid.attn_1.k", top, top, 1, 1, 1);
  vae_put_conv (&vw, "decoder.mid.attn_1.v", top, top, 1, 1, 1);
  vae_put_conv (&vw, "decoder.mid.attn_1.proj_out", top, top, 1, 1, 1);
  vae_put_resnet (&vw, "decoder.mid.block_2", top, top);
  int cin = top;
  for (int i = 3; i >= 0; i--) {
    const int cout = s->hidden * s->mult[i];
    for (int b = 0; b < s->res_blocks + 1; b++) {
      char *name = g_strdup_printf ("decoder.up.%d.block.%d", i, b);
      vae_put_resnet (&vw, name, cin, cout);
      g_free (name);
      cin = cout;
    }
    char *up = g_strdup_printf ("decoder.up.%d.upsample.conv", i);
    if (i == 1)
      vae_put_conv (&vw, up, cin, cin, 1, 3, 3);
    else if (i > 1)
      vae_put_conv (&vw, up, cin, cin, 3, 3, 3);
    g_free (up);
  }
  vae_put_norm (&vw, "decoder.norm_out", cin);
  vae_put_conv (&vw, "decoder.conv_out", cin, 3, 3, 3, 3);
  char *st = g_build_filename (dir, "vae.safetensors", NULL);
  st_writer_save (vw.w, st);
  char *cfg = g_build_filename (dir, "config.json", NULL);
  char *json = g_strdup_printf (
    "{\"hidden_size\": %d, \"hidden_size_mult\": [%d, %d, %d, %d], \"num_res_blocks\": %d, "
    "\"z_channels\": %d, \"embed_dim\": %d, \"scaling_factor\": 0.18215, "
    "\"decoder_spatial_upsample\": [\"\", \"SpatialUpsample2x\", \"Spatial2xTime2x3DUpsample\", "
    "\"Spatial2xTime2x3DUpsample\"], \"decoder_attention\": \"AttnBlock3DFix\", "
    "\"decoder_conv_in\": \"CausalConv3d\", \"decoder_conv_out\": \"CausalConv3d\", "
    "\"decoder_mid_resnet\": \"ResnetBlock3D\", \"use_tiling\": %s, "
    "\"tile_latent_min_size\": %d, \"tile_sample_min_size\": %d, "
    "\"tile_latent_min_size_t\": %d, \"tile_overlap_factor\": %g}",
    s->hidden, s->mult[0], s->mult[1], s->mult[2], s->mult[3], s->res_blocks, z, z,
    s->tile_latent_t > 0 ? "true" : "false", s->tile_latent, s->tile_sample,
    s->tile_latent_t > 0 ? s->tile_latent_t : 8, (double) s->tile_overlap);
  g_assert_true (g_file_set_contents (cfg, json, -1, NULL));
  g_free (json);
  g_free (cfg);
  g_free (st);
  g_rand_free (vw.rng);
  st_writer_free (vw.w);
}

/* A decode's chunks as vdit_vae_decode_stream hands them out: each chunk's first frame,
 * and the frames at their place in video. */
typedef struct {
  GArray *firsts; /* int: the first frame of each chunk */
  float *video;
  size_t frame_values;
} sink;

static inline gboolean
collect (void *user_data, int first, int n, const float *frames, GError **error)
{
  sink *s = user_data;
  g_array_append_val (s->firsts, first);
  memcpy (s->video + (size_t) first * s->frame_values, frames,
          sizeof (float) * n * s->frame_values);
  return TRUE;
}

#endif
