/* A shrunken Open-Sora-Plan v1.2 checkpoint in the published layout, converted by
 * train/convert_osp.py, against the PyTorch references written from the published
 * architecture (train/make_osp_goldens.py): the mT5 encoder, one transformer call, a
 * 2-step guided Euler-ancestral sample and the CausalVideoVAE decoder, on the CPU. Run by tests/osp/run_osp_model.py,
 * which writes the checkpoint, converts it (f32 and bf16) and makes the goldens:
 * OSP_MODEL_F32, OSP_MODEL_BF16 and OSP_GOLDEN name them. */
#include "config.h"
#include "ctx.h"
#include "dit.h"
#include "model.h"
#include "sampler.h"
#include "test_util.h"
#include "text_encoder.h"
#include "vae_decoder.h"
#include "weights.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>

typedef struct {
  vdit_config *cfg;
  vdit_weights *weights;
  vdit_safetensors *golden;
  vdit_backend be;
  gboolean cuda; /* OSP_DEVICE=cuda: the GPU backend (bf16 activations) */
} fixture;

/* On the GPU activations are bf16 (8 bits of mantissa): a normalised error bound, as the
 * other GPU tests use, instead of the CPU's element-wise one. */
#define GPU_NMSE_BOUND 1e-3

static const char *
need_env (const char *name)
{
  const char *v = g_getenv (name);
  if (v == NULL) {
    g_printerr ("%s is not set: run this test through tests/osp/run_osp_model.py\n", name);
    exit (1);
  }
  return v;
}

static void
fixture_open (fixture *f, const char *dir)
{
  GError *error = NULL;
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  f->cfg = vdit_config_load (cfg_path, &error);
  g_assert_no_error (error);
  f->weights = vdit_weights_load (dir, f->cfg, &error);
  g_assert_no_error (error);
  f->golden = vdit_safetensors_open (need_env ("OSP_GOLDEN"), &error);
  g_assert_no_error (error);
  f->cuda = g_strcmp0 (g_getenv ("OSP_DEVICE"), "cuda") == 0;
  g_assert_true (f->cuda ? vdit_backend_cuda_init (&f->be, 0, &error)
                         : vdit_backend_cpu_init (&f->be, 0, &error));
  g_assert_no_error (error);
}

/* ref against got: element-wise within atol + rtol·|ref| on the CPU, by nmse on the GPU. */
static void
osp_assert_close (const fixture *f, const char *what, const float *ref, const float *got,
                  size_t n, double atol, double rtol)
{
  if (!f->cuda) {
    test_assert_close (what, ref, got, n, atol, rtol);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (!isfinite (got[i]))
      g_error ("%s: element %zu is %f", what, i, got[i]);
  const double nmse = test_nmse (ref, got, n);
  g_test_message ("%s on the GPU: nmse %.3g against the f32 reference", what, nmse);
  if (g_test_verbose ())
    g_printerr ("%s on the GPU: nmse %.3g\n", what, nmse);
  g_assert_cmpfloat (nmse, <, GPU_NMSE_BOUND);
}

static void
setup_f32 (fixture *f, gconstpointer data)
{
  fixture_open (f, need_env ("OSP_MODEL_F32"));
}

static void
setup_bf16 (fixture *f, gconstpointer data)
{
  fixture_open (f, need_env ("OSP_MODEL_BF16"));
}

static void
teardown (fixture *f, gconstpointer data)
{
  vdit_backend_free (&f->be);
  vdit_safetensors_close (f->golden);
  vdit_weights_free (f->weights);
  vdit_config_free (f->cfg);
}

static double
max_abs (const float *a, size_t n)
{
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = MAX (m, fabs (a[i]));
  return m;
}

/* The converted config says what the published one does; the model loads with its VAE
 * (latent grid, frame counts 1 + 4k), and without one it is refused, clearly. */
static void
test_config (fixture *f, gconstpointer data)
{
  const vdit_config *c = f->cfg;
  g_assert_cmpint (c->decoder, ==, VDIT_DECODER_CAUSAL_VIDEO_VAE);
  g_assert_cmpint (c->decoder_channels, ==, 4);
  g_assert_cmpfloat (c->vae_scaling_factor, ==, 0.18215f);
  g_assert_cmpint (c->frames, ==, 9); /* 3 latent frames */
  g_assert_cmpint (c->dit.patch[0], ==, 1);
  g_assert_cmpint (c->dit.patch[1], ==, 2);
  g_assert_cmpfloat (c->dit.rope_scale[1], ==, 1.5f);
  g_assert_cmpfloat (c->dit.rope_scale[2], ==, 2.0f);
  g_assert_cmpint (c->sampler.type, ==, VDIT_SAMPLER_EULER_ANCESTRAL);
  g_assert_true (c->sampler.fractional_timesteps);
  g_assert_cmpint (c->sampler.steps, ==, 100);
  g_assert_cmpfloat (c->sampler.guidance, ==, 7.5f);
  g_assert_cmpint (c->text.max_tokens, ==, 512);

  GError *error = NULL;
  vdit_model *m = vdit_model_load (need_env ("OSP_MODEL_F32"), &error);
  g_assert_no_error (error);
  int grid[3];
  vdit_model_token_grid (m, 9, grid);
  g_assert_cmpint (grid[0], ==, 3); /* latent frames */
  g_assert_cmpint (grid[1], ==, c->height / 8 / 2);
  g_assert_true (vdit_model_check_frames (m, 13, &error));
  g_assert_false (vdit_model_check_frames (m, 8, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "1 + 4·k"));
  g_clear_error (&error);
  vdit_model_free (m);
  /* config.json alone (random weights): refused before any step, not after them */
  g_autofree char *cfg_only = g_build_filename (need_env ("OSP_MODEL_F32"), "config.json", NULL);
  m = vdit_model_load (cfg_only, &error);
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  vdit_ctx *ctx = vdit_ctx_new (m, &cp, &error);
  g_assert_no_error (error);
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a ball";
  g_assert_false (vdit_generate (ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "no VAE weights"));
  g_clear_error (&error);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
  /* converted without --vae: the decoder's weights are missing, and the message says how */
  m = vdit_model_load (need_env ("OSP_MODEL_BF16"), &error);
  g_assert_null (m);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "--vae"));
  g_clear_error (&error);
}

/* bf16 conversion: every weight is the round-to-nearest bf16 of the f32 one. */
static void
test_bf16_weights (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *f32_dir = g_strdup (need_env ("OSP_MODEL_F32"));
  vdit_weights *w32 = vdit_weights_load (f32_dir, f->cfg, &error);
  g_assert_no_error (error);
  g_autofree char *dtypes = vdit_weights_dtype_summary (f->weights);
  g_assert_null (strstr (dtypes, "f32"));
  g_assert_cmpint (vdit_weights_n_params (f->weights), ==, vdit_weights_n_params (w32));
  const char *names[] = { "pos_embed.proj.weight", "transformer_blocks.1.ff.net.2.weight",
                          "text_encoder.shared.weight", "scale_shift_table" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    const vdit_tensor_view *v = vdit_weights_get (f->weights, names[i]);
    g_assert_nonnull (v);
    size_t n = 1;
    for (int d = 0; d < v->ndim; d++)
      n *= (size_t) v->shape[d];
    g_autofree float *a = g_new (float, n);
    g_autofree float *b = g_new (float, n);
    g_assert_true (vdit_weights_read_f32 (f->weights, names[i], a, n, &error));
    g_assert_true (vdit_weights_read_f32 (w32, names[i], b, n, &error));
    for (size_t j = 0; j < n; j++)
      g_assert_cmpfloat (fabsf (a[j] - b[j]), <=, ldexpf (fabsf (b[j]), -8));
  }
  vdit_weights_free (w32);
}

/* Token ids → the mT5 encoder's last hidden state (the reference ran them padded). */
static void *
encode_ids (fixture *f, const float *ids_f, int n, GError **error)
{
  vdit_text_encoder *te = vdit_text_encoder_new (&f->be, &f->cfg->text, f->weights, error);
  g_assert_no_error (*error);
  g_autofree int32_t *ids = g_new (int32_t, n);
  for (int i = 0; i < n; i++)
    ids[i] = (int32_t) ids_f[i];
  void *out = f->be.iface->alloc (f->be.context, (size_t) n * f->cfg->text.d_model,
                                  VDIT_ELEM_ACT, error);
  g_assert_true (vdit_text_encoder_run (te, ids, n, out, error));
  vdit_text_encoder_free (te);
  return out;
}

static void
test_text_encoder (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  size_t n = 0, n_ref = 0;
  g_autofree float *ids = test_golden_f32 (f->golden, "text.ids", &n);
  g_autofree float *ref = test_golden_f32 (f->golden, "text.output", &n_ref);
  const int d = f->cfg->text.d_model;
  g_assert_cmpuint (n_ref, ==, n * d);
  void *out = encode_ids (f, ids, (int) n, &error);
  g_autofree float *got = g_new (float, n_ref);
  g_assert_true (f->be.iface->download (f->be.context, got, out, n_ref, VDIT_ELEM_ACT, &error));
  osp_assert_close (f, "text encoder", ref, got, n_ref, 1e-5, 1e-4);
  f->be.iface->release (f->be.context, out);
}

/* Caption embeddings (n, caption width) from the golden, as the DiT's text input. */
static vdit_dit_text *
caption (fixture *f, vdit_dit *dit, const char *name)
{
  GError *error = NULL;
  size_t n = 0;
  g_autofree float *text = test_golden_f32 (f->golden, name, &n);
  const int width = f->cfg->text.d_model;
  void *buf = f->be.iface->alloc (f->be.context, n, VDIT_ELEM_ACT, &error);
  g_assert_true (f->be.iface->upload (f->be.context, buf, text, n, VDIT_ELEM_ACT, &error));
  vdit_dit_text *t = vdit_dit_text_new (dit, buf, (int) (n / width), &error);
  g_assert_no_error (error);
  f->be.iface->release (f->be.context, buf);
  return t;
}

typedef struct {
  fixture *f;
  vdit_dit *dit;
  vdit_dit_ws *ws;
  int T, H, W, C;
  size_t n;
  float *patches, *tokens;
} dit_run;

static void
dit_run_init (dit_run *r, fixture *f)
{
  GError *error = NULL;
  const vdit_config *c = f->cfg;
  r->f = f;
  r->T = (c->frames - 1) / VDIT_VAE_TIME_FACTOR + 1;
  r->H = c->height / VDIT_VAE_SPACE_FACTOR;
  r->W = c->width / VDIT_VAE_SPACE_FACTOR;
  r->C = c->dit.in_channels;
  r->n = (size_t) r->T * r->H * r->W * r->C;
  r->dit = vdit_dit_new (&f->be, c, f->weights, &error);
  g_assert_no_error (error);
  const int *p = c->dit.patch;
  r->ws = vdit_dit_ws_new (r->dit, r->T / p[0], r->H / p[1], r->W / p[2], &error);
  g_assert_no_error (error);
  r->patches = g_new (float, r->n);
  r->tokens = g_new (float, r->n);
}

static void
dit_run_clear (dit_run *r)
{
  vdit_dit_ws_free (r->dit, r->ws);
  vdit_dit_free (r->dit);
  g_free (r->patches);
  g_free (r->tokens);
}

/* out (T, H, W, C) = DiT(latent (T, H, W, C), tau, text) */
static void
dit_call (dit_run *r, const float *latent, float tau, const vdit_dit_text *text, float *out)
{
  GError *error = NULL;
  const int *p = r->f->cfg->dit.patch;
  vdit_patchify (r->patches, latent, r->T, r->H, r->W, r->C, p);
  g_assert_true (vdit_dit_forward (r->dit, r->ws, r->patches, tau, text, NULL, 0, 0, r->tokens,
                                   NULL, &error));
  g_assert_no_error (error);
  vdit_unpatchify (out, r->tokens, r->T, r->H, r->W, r->C, p);
}

/* data: NULL for f32 weights; "bf16" compares the bf16 conversion more loosely. */
static void
test_dit_step (fixture *f, gconstpointer data)
{
  dit_run r;
  dit_run_init (&r, f);
  size_t n = 0;
  g_autofree float *latent = test_golden_f32 (f->golden, "dit.latent", &n);
  g_autofree float *tau = test_golden_f32 (f->golden, "dit.timestep", NULL);
  g_autofree float *ref = test_golden_f32 (f->golden, "dit.output", NULL);
  g_assert_cmpuint (n, ==, r.n);
  g_assert_cmpfloat (tau[0], !=, rintf (tau[0])); /* a fractional timestep */
  vdit_dit_text *text = caption (f, r.dit, "dit.text");
  g_autofree float *got = g_new (float, n);
  dit_call (&r, latent, tau[0], text, got);
  if (data == NULL || f->cuda) {
    osp_assert_close (f, data ? "dit step, bf16 weights" : "dit step", ref, got, n, 1e-5, 1e-4);
  } else {
    /* weights rounded to 8 bits of mantissa: a relative error of a few 1e-3 */
    double nmse = test_nmse (ref, got, n);
    g_test_message ("bf16 weights: nmse %.3g vs the f32 reference", nmse);
    g_assert_cmpfloat (nmse, <, 1e-4);
    g_assert_cmpfloat (nmse, >, 0.0);
  }
  vdit_dit_text_free (r.dit, text);
  dit_run_clear (&r);
}

/* Two guided steps of Open-Sora-Plan's sampler: uncond + 7.5·(cond − uncond), the
 * engine's sampler and DiT composed as generation composes them. */
static void
test_guided_sample (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  dit_run r;
  dit_run_init (&r, f);
  const int steps = 2;
  size_t nn = 0;
  g_autofree float *noise = test_golden_f32 (f->golden, "sample.noise", &nn);
  g_autofree float *ref = test_golden_f32 (f->golden, "sample.output", NULL);
  g_assert_cmpuint (nn, ==, r.n * (steps + 1));
  vdit_dit_text *cond = caption (f, r.dit, "sample.cond");
  vdit_dit_text *uncond = caption (f, r.dit, "sample.uncond");
  vdit_sampler *s = vdit_sampler_new (&f->cfg->sampler, steps, &error);
  g_assert_no_error (error);
  const float g = f->cfg->sampler.guidance;
  g_autofree float *x = g_new (float, r.n);
  g_autofree float *x_in = g_new (float, r.n);
  g_autofree float *out_c = g_new (float, r.n);
  g_autofree float *out_u = g_new (float, r.n);
  const float s0 = vdit_sampler_init_sigma (s);
  for (size_t i = 0; i < r.n; i++)
    x[i] = noise[i] * s0;
  for (int k = 0; k < steps; k++) {
    const float scale = vdit_sampler_input_scale (s, k);
    for (size_t i = 0; i < r.n; i++)
      x_in[i] = x[i] * scale;
    dit_call (&r, x_in, vdit_sampler_timestep (s, k), cond, out_c);
    dit_call (&r, x_in, vdit_sampler_timestep (s, k), uncond, out_u);
    for (size_t i = 0; i < r.n; i++)
      out_c[i] = out_u[i] + g * (out_c[i] - out_u[i]);
    const float *step_noise = vdit_sampler_needs_noise (s, k) ? noise + (k + 1) * r.n : NULL;
    vdit_sampler_step (s, k, x, out_c, step_noise, r.n);
  }
  /* the first step multiplies σ ≈ 157 into the latent: errors scale with its size */
  osp_assert_close (f, "guided sample", ref, x, r.n, 1e-6 * max_abs (ref, r.n), 1e-4);
  vdit_sampler_free (s);
  vdit_dit_text_free (r.dit, cond);
  vdit_dit_text_free (r.dit, uncond);
  dit_run_clear (&r);
}

/* data: latent frames (2 or 3). The CausalVideoVAE decoder against the PyTorch reference
 * on the same converted weights: 2 → 5 and 3 → 9 frames, the causal first-frame padding
 * and the first frame's separate upsampling included. */
static void
test_vae_decode (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  const int T = GPOINTER_TO_INT (data);
  g_autofree char *vae_dir = g_build_filename (need_env ("OSP_MODEL_F32"), "vae", NULL);
  vdit_vae_decoder *v = vdit_vae_decoder_load (vae_dir, &error);
  g_assert_no_error (error);
  g_autofree char *lname = g_strdup_printf ("vae.latent%d", T);
  g_autofree char *vname = g_strdup_printf ("vae.video%d", T);
  size_t nl = 0, nv = 0;
  g_autofree float *latent = test_golden_f32 (f->golden, lname, &nl);
  g_autofree float *ref = test_golden_f32 (f->golden, vname, &nv);
  const int h = f->cfg->height / VDIT_VAE_SPACE_FACTOR, w = f->cfg->width / VDIT_VAE_SPACE_FACTOR;
  g_assert_cmpuint (nl, ==, (size_t) T * h * w * vdit_vae_decoder_channels (v));
  const int frames = 1 + VDIT_VAE_TIME_FACTOR * (T - 1);
  g_assert_cmpuint (nv, ==, (size_t) frames * h * w * 64 * 3);
  g_autofree float *got = g_new (float, nv);
  g_assert_true (vdit_vae_decode (v, latent, T, h, w, got, &error));
  g_assert_no_error (error);
  test_assert_close (vname, ref, got, nv, 1e-4, 1e-3);
  g_test_message ("%s: nmse %.3g", vname, test_nmse (ref, got, nv));
  vdit_vae_decoder_free (v);
}

typedef struct {
  int calls, first[8], n[8];
  int stop_after; /* return FALSE from this call on (0 = never) */
} chunk_log;

static gboolean
log_chunk (void *user_data, int first, int n, const float *frames, GError **error)
{
  chunk_log *l = user_data;
  g_assert_cmpint (l->calls, <, 8);
  l->first[l->calls] = first;
  l->n[l->calls] = n;
  l->calls++;
  if (l->stop_after && l->calls >= l->stop_after) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED, "stopped after chunk %d", l->calls);
    return FALSE;
  }
  return TRUE;
}

/* The sample script's tiled decode with tiles small enough that the shrunken latent
 * (3 × 8 × 12) takes 2 × 2 overlapping spatial tiles in 2 temporal chunks: the seams'
 * in-place blending and the chunks' dropped first frames as the reference does them. */
static void
test_vae_decode_tiled (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *vae_dir = g_build_filename (need_env ("OSP_MODEL_F32"), "vae", NULL);
  vdit_vae_decoder *v = vdit_vae_decoder_load (vae_dir, &error);
  g_assert_no_error (error);
  size_t np = 0, nl = 0, nv = 0;
  g_autofree float *params = test_golden_f32 (f->golden, "vae.tiled.params", &np);
  g_autofree float *latent = test_golden_f32 (f->golden, "vae.tiled.latent", &nl);
  g_autofree float *ref = test_golden_f32 (f->golden, "vae.tiled.video", &nv);
  g_assert_cmpuint (np, ==, 4);
  const vdit_vae_tiling tiling = { (int) params[0], (int) params[1], (int) params[2], params[3] };
  vdit_vae_decoder_set_tiling (v, &tiling);
  const int h = f->cfg->height / VDIT_VAE_SPACE_FACTOR, w = f->cfg->width / VDIT_VAE_SPACE_FACTOR;
  const int T = (int) (nl / ((size_t) h * w * 4));
  g_assert_cmpuint (nv, ==, (size_t) (1 + 4 * (T - 1)) * h * w * 64 * 3);
  g_autofree float *got = g_new (float, nv);
  g_assert_true (vdit_vae_decode (v, latent, T, h, w, got, &error));
  g_assert_no_error (error);
  test_assert_close ("tiled decode", ref, got, nv, 1e-4, 1e-3);
  g_test_message ("tiled decode: nmse %.3g", test_nmse (ref, got, nv));
  /* tiling changes the result: the same latent decoded whole differs at the seams */
  const vdit_vae_tiling off = { 0, 0, 0, 0.0f };
  vdit_vae_decoder_set_tiling (v, &off);
  g_autofree float *whole = g_new (float, nv);
  g_assert_true (vdit_vae_decode (v, latent, T, h, w, whole, &error));
  g_assert_cmpfloat (test_nmse (ref, whole, nv), >, 1e-6);
  /* streamed: chunk by chunk (frames 0..4, then 5..8), and a stop ends it */
  vdit_vae_decoder_set_tiling (v, &tiling);
  chunk_log log = { 0 };
  g_assert_true (vdit_vae_decode_stream (v, latent, T, h, w, log_chunk, &log, &error));
  g_assert_cmpint (log.calls, ==, 2);
  g_assert_cmpint (log.first[0], ==, 0);
  g_assert_cmpint (log.n[0], ==, 5);
  g_assert_cmpint (log.first[1], ==, 5);
  g_assert_cmpint (log.n[1], ==, 4);
  chunk_log stop = { .stop_after = 1 };
  g_assert_false (vdit_vae_decode_stream (v, latent, T, h, w, log_chunk, &stop, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpint (stop.calls, ==, 1);
  /* what tiling is for: a 720p latent of 8 frames (90 × 160) held in 64 × 64 tiles needs
   * a fraction of the whole clip's memory */
  const vdit_vae_tiling osp = { 64, 512, 8, 0.125f };
  vdit_vae_decoder_set_tiling (v, &osp);
  const uint64_t tiled = vdit_vae_decoder_peak_bytes (v, 8, 90, 160);
  vdit_vae_decoder_set_tiling (v, &off);
  const uint64_t untiled = vdit_vae_decoder_peak_bytes (v, 8, 90, 160);
  g_test_message ("decode peak at 720p, 8 latent frames: %.2f GB tiled, %.2f GB whole",
                  tiled / 1e9, untiled / 1e9);
  g_assert_cmpuint (tiled, <, untiled / 2);
  vdit_vae_decoder_free (v);
}

typedef struct {
  uint8_t *frames; /* (n, height, width, 3) */
  int n, width, height;
} captured;

static gboolean
capture_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int width,
               int height, int stride)
{
  captured *c = user_data;
  g_assert_cmpint (index, <, c->n);
  g_assert_cmpint (width, ==, c->width);
  g_assert_cmpint (height, ==, c->height);
  g_assert_cmpint (stride, ==, width * 3);
  memcpy (c->frames + (size_t) index * stride * height, rgb, (size_t) stride * height);
  return TRUE;
}

/* The converted model through vdit_generate — tokens, mT5, guided DiT steps, the engine's
 * noise, the VAE, the 8-bit conversion — against the same generation by the references
 * (make_osp_goldens.py e2e). */
static void
test_generate (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_model *m = vdit_model_load (need_env ("OSP_MODEL_F32"), &error);
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  vdit_ctx *ctx = vdit_ctx_new (m, &cp, &error);
  g_assert_no_error (error);
  const vdit_config *c = vdit_model_get_config (m);
  captured cap = { NULL, 9, c->width, c->height };
  cap.frames = g_new0 (uint8_t, (size_t) cap.n * c->width * c->height * 3);
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a red ball moves left";
  p.negative_prompt = "blurry";
  p.seed = 3;
  p.steps = 2;
  p.guidance = 7.5f;
  p.frames = cap.n;
  p.on_frame = capture_frame;
  p.user_data = &cap;
  size_t n_lat = 0, n_vid = 0;
  g_autofree float *ref_latent = test_golden_f32 (f->golden, "e2e.latent", &n_lat);
  g_autofree float *ref_video = test_golden_f32 (f->golden, "e2e.video", &n_vid);
  g_assert_cmpuint (n_vid, ==, (size_t) cap.n * c->width * c->height * 3);
  g_autofree float *latent = g_new (float, n_lat);
  g_assert_true (vdit_generate_latent (ctx, &p, latent, &error));
  g_assert_no_error (error);
  test_assert_close ("e2e latent", ref_latent, latent, n_lat, 1e-6 * max_abs (ref_latent, n_lat),
                     1e-4);
  g_autofree uint8_t *ref_rgb = g_new (uint8_t, n_vid);
  vdit_vae_rgb (ref_rgb, ref_video, n_vid);
  size_t differ = 0;
  for (size_t i = 0; i < n_vid; i++) {
    g_assert_cmpint (abs ((int) ref_rgb[i] - (int) cap.frames[i]), <=, 1);
    differ += ref_rgb[i] != cap.frames[i];
  }
  g_test_message ("e2e frames: %zu of %zu bytes differ by 1", differ, n_vid);
  g_assert_cmpuint (differ, <, n_vid / 100);
  g_free (cap.frames);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
}

/* A bad VAE folder is refused with a message naming the file, not a crash. */
static void
test_vae_refuses (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("vdit-vae-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *cfg = g_build_filename (tmp, "config.json", NULL);
  static const char *const bad[] = {
    "{\"hidden_size\": 32}",
    "[1, 2]",
    "{\"hidden_size_mult\": \"1244\", \"decoder_spatial_upsample\": {}}",
    "{\"hidden_size_mult\": [{}, [], null, \"x\"], \"decoder_spatial_upsample\": [1, 2, 3, 4]}",
    "{\"hidden_size_mult\": [1, 2, 4, 4], \"decoder_spatial_upsample\": [\"\", "
    "\"SpatialUpsample2x\", \"Spatial2xTime2x3DUpsample\", \"Spatial2xTime2x3DUpsample\"], "
    "\"hidden_size\": 32, \"num_res_blocks\": 2, \"z_channels\": 4, \"embed_dim\": 4, "
    "\"decoder_attention\": [\"AttnBlock3DFix\"]}",
    "{\"hidden_size_mult\": [1, 2, 4, 4], \"decoder_spatial_upsample\": [\"\", "
    "\"SpatialUpsample2x\", \"Spatial2xTime2x3DUpsample\", \"Spatial2xTime2x3DUpsample\"], "
    "\"hidden_size\": 32, \"num_res_blocks\": 2, \"z_channels\": 4, \"embed_dim\": 4, "
    "\"tile_latent_min_size_t\": 1}",
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_assert_true (g_file_set_contents (cfg, bad[i], -1, &error));
    vdit_vae_decoder *v = vdit_vae_decoder_load (tmp, &error);
    g_assert_null (v);
    g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG);
    g_assert_nonnull (strstr (error->message, "config.json"));
    g_test_message ("%s", error->message);
    g_clear_error (&error);
  }
  g_unlink (cfg);
  g_rmdir (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (g_strcmp0 (g_getenv ("OSP_DEVICE"), "cuda") == 0 && !vdit_cuda_available (NULL)) {
    g_print ("no usable CUDA device: skipped\n");
    return 77;
  }
  g_test_add ("/osp-model/config", fixture, NULL, setup_f32, test_config, teardown);
  g_test_add ("/osp-model/bf16-weights", fixture, NULL, setup_bf16, test_bf16_weights, teardown);
  g_test_add ("/osp-model/text-encoder", fixture, NULL, setup_f32, test_text_encoder, teardown);
  g_test_add ("/osp-model/dit-step", fixture, NULL, setup_f32, test_dit_step, teardown);
  g_test_add ("/osp-model/dit-step-bf16", fixture, "bf16", setup_bf16, test_dit_step, teardown);
  g_test_add ("/osp-model/guided-sample", fixture, NULL, setup_f32, test_guided_sample, teardown);
  g_test_add ("/osp-model/vae-decode-2", fixture, GINT_TO_POINTER (2), setup_f32, test_vae_decode,
              teardown);
  g_test_add ("/osp-model/vae-decode-3", fixture, GINT_TO_POINTER (3), setup_f32, test_vae_decode,
              teardown);
  g_test_add ("/osp-model/vae-decode-tiled", fixture, NULL, setup_f32, test_vae_decode_tiled,
              teardown);
  g_test_add ("/osp-model/generate", fixture, NULL, setup_f32, test_generate, teardown);
  g_test_add ("/osp-model/vae-refuses", fixture, NULL, setup_f32, test_vae_refuses, teardown);
  return g_test_run ();
}
