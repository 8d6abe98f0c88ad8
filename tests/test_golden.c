/* The C engine against the PyTorch reference (train/make_tiny_model.py): tokens, text
 * encoder, Philox noise, one DiT forward and 2-step guided samples of every sampler,
 * all on models/tiny at fp32. */
#include "backend.h"
#include "ctx.h"
#include "dit.h"
#include "model.h"
#include "philox.h"
#include "test_util.h"
#include "text_encoder.h"

#include <math.h>
#include <string.h>

typedef struct {
  vdit_model *model;
  vdit_ctx *ctx;
  vdit_safetensors *golden;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *golden = test_source_path ("tests/data/golden.safetensors");
  test_load_tiny (&f->model, &f->ctx);
  f->golden = vdit_safetensors_open (golden, &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  vdit_safetensors_close (f->golden);
  vdit_ctx_free (f->ctx);
  vdit_model_free (f->model);
}

static const char *
meta (const fixture *f, const char *key)
{
  const char *v = vdit_safetensors_metadata (f->golden, key);
  if (v == NULL)
    g_error ("golden metadata %s is missing", key);
  return v;
}

static void
check_tokens (fixture *f, const char *text, const char *golden_name)
{
  GError *error = NULL;
  g_autofree int32_t *ids = NULL;
  int n = 0;
  size_t n_ref = 0;
  g_autofree float *ref = test_golden_f32 (f->golden, golden_name, &n_ref);
  g_assert_true (vdit_ctx_tokenize (f->ctx, text, &ids, &n, &error));
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, (int) n_ref);
  for (int i = 0; i < n; i++)
    g_assert_cmpint (ids[i], ==, (int) ref[i]);
}

static void
test_tokens (fixture *f, gconstpointer data)
{
  check_tokens (f, meta (f, "prompt"), "tokens.prompt");
  check_tokens (f, meta (f, "negative"), "tokens.negative");
  check_tokens (f, meta (f, "prompt_long"), "tokens.long"); /* truncated to max_tokens */
}

static void
test_noise (fixture *f, gconstpointer data)
{
  size_t n = 0;
  g_autofree float *s0 = test_golden_f32 (f->golden, "noise.s0", &n);
  g_autofree float *got = g_new (float, n);
  vdit_philox_normal (got, n, 1234, 0, 0);
  g_assert_cmpmem (got, n * sizeof (float), s0, n * sizeof (float));
  g_autofree float *s5 = test_golden_f32 (f->golden, "noise.s5", &n);
  vdit_philox_normal (got, n, 0xDEADBEEFCAFEull, 5, 0);
  g_assert_cmpmem (got, n * sizeof (float), s5, n * sizeof (float));
  /* an offset start continues the same sequence */
  vdit_philox_normal (got, n - 3, 0xDEADBEEFCAFEull, 5, 3);
  g_assert_cmpmem (got, (n - 3) * sizeof (float), s5 + 3, (n - 3) * sizeof (float));
}

/* Runs the text encoder on golden tokens; returns an ACT buffer on be. */
static void *
encode (fixture *f, vdit_backend *be, vdit_text_encoder *te, const char *tokens, int *n_out)
{
  GError *error = NULL;
  size_t n = 0;
  g_autofree float *tok = test_golden_f32 (f->golden, tokens, &n);
  g_autofree int32_t *ids = g_new (int32_t, n);
  for (size_t i = 0; i < n; i++)
    ids[i] = (int32_t) tok[i];
  const int d = f->model->config->text.d_model;
  void *out = be->iface->alloc (be->context, n * d, VDIT_ELEM_ACT, &error);
  g_assert_true (vdit_text_encoder_run (te, ids, n, out, &error));
  g_assert_no_error (error);
  *n_out = n;
  return out;
}

static void
test_text_encoder (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 0, &error));
  vdit_text_encoder *te = vdit_text_encoder_new (&be, &f->model->config->text, f->model->weights, &error);
  g_assert_no_error (error);
  const char *names[][2] = { { "tokens.prompt", "text.prompt" },
                             { "tokens.negative", "text.negative" },
                             { "tokens.long", "text.long" } };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    int n = 0;
    void *out = encode (f, &be, te, names[i][0], &n);
    size_t n_ref = 0;
    g_autofree float *ref = test_golden_f32 (f->golden, names[i][1], &n_ref);
    g_assert_cmpuint (n_ref, ==, (size_t) n * f->model->config->text.d_model);
    test_assert_close (names[i][1], ref, out, n_ref, 1e-5, 1e-4);
    be.iface->release (be.context, out);
  }
  vdit_text_encoder_free (te);
  vdit_backend_free (&be);
}

/* data: the golden name; "dit.output_abs_pos" runs the same weights with dit.abs_pos. */
static void
test_dit_forward (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  const char *golden_name = data;
  vdit_config variant = *f->model->config;
  variant.dit.abs_pos = g_str_equal (golden_name, "dit.output_abs_pos");
  const vdit_config *cfg = &variant;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 0, &error));
  vdit_text_encoder *te = vdit_text_encoder_new (&be, &cfg->text, f->model->weights, &error);
  vdit_dit *dit = vdit_dit_new (&be, cfg, f->model->weights, &error);
  g_assert_no_error (error);
  int n_text = 0;
  void *text = encode (f, &be, te, "tokens.prompt", &n_text);
  vdit_dit_text *dt = vdit_dit_text_new (dit, text, n_text, &error);
  g_assert_no_error (error);

  size_t n = 0;
  g_autofree float *input = test_golden_f32 (f->golden, "dit.input", &n);
  g_autofree float *tstep = test_golden_f32 (f->golden, "dit.timestep", NULL);
  g_autofree float *ref = test_golden_f32 (f->golden, golden_name, NULL);
  const int T = n / ((size_t) cfg->height * cfg->width * cfg->dit.in_channels);
  const int *p = cfg->dit.patch;
  vdit_dit_ws *ws = vdit_dit_ws_new (dit, T / p[0], cfg->height / p[1], cfg->width / p[2], &error);
  g_assert_no_error (error);
  g_autofree float *patches = g_new (float, n);
  g_autofree float *tokens = g_new (float, n);
  g_autofree float *got = g_new (float, n);
  vdit_patchify (patches, input, T, cfg->height, cfg->width, cfg->dit.in_channels, p);
  g_assert_true (vdit_dit_forward (dit, ws, patches, tstep[0], dt, NULL, 0, 0, tokens, NULL, &error));
  g_assert_no_error (error);
  vdit_unpatchify (got, tokens, T, cfg->height, cfg->width, cfg->dit.in_channels, p);
  test_assert_close (golden_name, ref, got, n, 1e-5, 1e-4);

  vdit_dit_ws_free (dit, ws);
  vdit_dit_text_free (dit, dt);
  be.iface->release (be.context, text);
  vdit_dit_free (dit);
  vdit_text_encoder_free (te);
  vdit_backend_free (&be);
}

/* Guidance's shared prefix (vdit_dit_ws_share_prefix): the unconditional pass that
 * starts from the conditional pass's block-0 self-attention gives the bits of a full
 * forward, and the conditional pass that keeps it gives its own bits too; an
 * unconditional pass at another timestep or input would not (it shares nothing then:
 * the check that the test can fail). */
static void
test_dit_shared_prefix (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  const vdit_config *cfg = f->model->config;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 0, &error));
  vdit_text_encoder *te = vdit_text_encoder_new (&be, &cfg->text, f->model->weights, &error);
  vdit_dit *dit = vdit_dit_new (&be, cfg, f->model->weights, &error);
  g_assert_no_error (error);
  int n_cond = 0, n_uncond = 0;
  void *cond = encode (f, &be, te, "tokens.prompt", &n_cond);
  void *uncond = encode (f, &be, te, "tokens.negative", &n_uncond);
  vdit_dit_text *tc = vdit_dit_text_new (dit, cond, n_cond, &error);
  vdit_dit_text *tu = vdit_dit_text_new (dit, uncond, n_uncond, &error);
  g_assert_no_error (error);

  size_t n = 0;
  g_autofree float *input = test_golden_f32 (f->golden, "dit.input", &n);
  g_autofree float *tstep = test_golden_f32 (f->golden, "dit.timestep", NULL);
  const int T = n / ((size_t) cfg->height * cfg->width * cfg->dit.in_channels);
  const int *p = cfg->dit.patch;
  vdit_dit_ws *plain = vdit_dit_ws_new (dit, T / p[0], cfg->height / p[1], cfg->width / p[2], &error);
  vdit_dit_ws *shared = vdit_dit_ws_new (dit, T / p[0], cfg->height / p[1], cfg->width / p[2], &error);
  g_assert_no_error (error);
  g_assert_true (vdit_dit_ws_share_prefix (dit, shared, &error));
  g_autofree float *patches = g_new (float, n);
  vdit_patchify (patches, input, T, cfg->height, cfg->width, cfg->dit.in_channels, p);
  float *want[2], *got[2];
  for (int pass = 0; pass < 2; pass++) {
    want[pass] = g_new (float, n), got[pass] = g_new (float, n);
    const vdit_dit_text *text = pass ? tu : tc;
    g_assert_true (vdit_dit_forward (dit, plain, patches, tstep[0], text, NULL, 0, pass,
                                     want[pass], NULL, &error));
    g_assert_true (vdit_dit_forward (dit, shared, patches, tstep[0], text, NULL, 0, pass,
                                     got[pass], NULL, &error));
    g_assert_no_error (error);
    g_assert_cmpmem (got[pass], n * sizeof (float), want[pass], n * sizeof (float));
  }
  /* the two passes differ (the caption matters), so sharing did not just repeat pass 0 */
  g_assert_true (memcmp (got[0], got[1], n * sizeof (float)) != 0);
  /* pass 1 after a pass 0 at another timestep takes that step's prefix: not this one's */
  g_assert_true (vdit_dit_forward (dit, shared, patches, tstep[0] * 0.5f, tc, NULL, 0, 0, got[0],
                                   NULL, &error));
  g_assert_true (vdit_dit_forward (dit, shared, patches, tstep[0], tu, NULL, 0, 1, got[1], NULL,
                                   &error));
  g_assert_true (memcmp (got[1], want[1], n * sizeof (float)) != 0);
  for (int pass = 0; pass < 2; pass++)
    g_free (want[pass]), g_free (got[pass]);

  vdit_dit_ws_free (dit, plain);
  vdit_dit_ws_free (dit, shared);
  vdit_dit_text_free (dit, tc);
  vdit_dit_text_free (dit, tu);
  be.iface->release (be.context, cond);
  be.iface->release (be.context, uncond);
  vdit_dit_free (dit);
  vdit_text_encoder_free (te);
  vdit_backend_free (&be);
}

/* A one-token caption's shortcut (dit.h) against the same token twice, in f32 */
static void
test_dit_one_key_cpu (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 0, &error));
  test_dit_one_key (&be, f->model, 1e-10);
  vdit_backend_free (&be);
}

typedef struct {
  const char *name;
  VditSamplerType type;
  VditPrediction prediction;
} sample_case;

static const sample_case sample_cases[] = {
  { "flow_euler", VDIT_SAMPLER_FLOW_EULER, VDIT_PRED_FLOW },
  { "ddim_epsilon", VDIT_SAMPLER_DDIM, VDIT_PRED_EPSILON },
  { "ddim_v", VDIT_SAMPLER_DDIM, VDIT_PRED_V },
  { "euler_ancestral_epsilon", VDIT_SAMPLER_EULER_ANCESTRAL, VDIT_PRED_EPSILON },
  { "euler_ancestral_v", VDIT_SAMPLER_EULER_ANCESTRAL, VDIT_PRED_V },
};

typedef struct {
  float *frames; /* (T, H, W, 3) as 0..255 */
  int count;
} frame_sink;

static gboolean
collect_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int w, int h,
               int stride)
{
  frame_sink *s = user_data;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w * 3; x++)
      s->frames[((size_t) index * h + y) * w * 3 + x] = rgb[(size_t) y * stride + x];
  s->count++;
  return TRUE;
}

/* prefix "sample" (2 steps, linear betas) or "sample4" (4 steps, flow shift, scaled-linear
 * betas: exercises the shift warp, ᾱ_prev mid-trajectory and the ancestral noise). */
static void
check_samples (fixture *f, const char *prefix)
{
  GError *error = NULL;
  vdit_config *cfg = f->model->config;
  const vdit_sampler_config saved = cfg->sampler;
  const gboolean four = g_str_equal (prefix, "sample4");
  if (four) {
    cfg->sampler.shift = g_ascii_strtod (meta (f, "sample4.shift"), NULL);
    cfg->sampler.beta_start = g_ascii_strtod (meta (f, "sample4.beta_start"), NULL);
    cfg->sampler.beta_end = g_ascii_strtod (meta (f, "sample4.beta_end"), NULL);
    cfg->sampler.scaled_linear = g_str_equal (meta (f, "sample4.beta_schedule"), "scaled_linear");
  }
  for (guint i = 0; i < G_N_ELEMENTS (sample_cases); i++) {
    const sample_case *c = &sample_cases[i];
    g_autofree char *golden = g_strdup_printf ("%s.%s", prefix, c->name);
    size_t n = 0;
    g_autofree float *ref = test_golden_f32 (f->golden, golden, &n);
    g_autofree float *got = g_new (float, n);
    const int T = n / ((size_t) cfg->height * cfg->width * cfg->dit.in_channels);
    frame_sink sink = { g_new0 (float, n), 0 };
    cfg->sampler.type = c->type;
    cfg->sampler.prediction = c->prediction;
    vdit_gen_params p;
    vdit_gen_params_init (&p);
    p.prompt = meta (f, "prompt");
    p.negative_prompt = meta (f, "negative");
    p.seed = g_ascii_strtoull (meta (f, "seed"), NULL, 10);
    p.guidance = g_ascii_strtod (meta (f, "guidance"), NULL);
    p.steps = atoi (meta (f, four ? "sample4.steps" : "steps"));
    p.frames = T;
    p.on_frame = collect_frame;
    p.user_data = &sink;
    g_assert_true (vdit_generate_latent (f->ctx, &p, got, &error));
    g_assert_no_error (error);
    g_assert_cmpint (sink.count, ==, T);
    /* 2-step epsilon samples reach |x| ~ 1e3 (1/sqrt(ᾱ) amplification): the absolute
     * tolerance scales with the largest value */
    double scale = 0.0;
    for (size_t j = 0; j < n; j++)
      scale = MAX (scale, fabs (ref[j]));
    test_assert_close (golden, ref, got, n, 5e-5 * MAX (scale, 1.0), 2e-4);
    if (!four && c->type == VDIT_SAMPLER_FLOW_EULER) {
      g_autofree float *frames = test_golden_f32 (f->golden, "frames.flow_euler", NULL);
      /* a value on a rounding edge may land one code away */
      test_assert_close ("frames.flow_euler", frames, sink.frames, n, 1.0, 0.0);
    }
    g_free (sink.frames);
  }
  cfg->sampler = saved;
}

static void
test_samples (fixture *f, gconstpointer data)
{
  check_samples (f, "sample");
}

static void
test_samples4 (fixture *f, gconstpointer data)
{
  check_samples (f, "sample4");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/golden/tokens", fixture, NULL, fixture_setup, test_tokens, fixture_teardown);
  g_test_add ("/golden/noise", fixture, NULL, fixture_setup, test_noise, fixture_teardown);
  g_test_add ("/golden/text-encoder", fixture, NULL, fixture_setup, test_text_encoder, fixture_teardown);
  g_test_add ("/golden/dit-forward", fixture, "dit.output", fixture_setup, test_dit_forward,
              fixture_teardown);
  g_test_add ("/golden/dit-forward-abs-pos", fixture, "dit.output_abs_pos", fixture_setup,
              test_dit_forward, fixture_teardown);
  g_test_add ("/golden/dit-shared-prefix", fixture, NULL, fixture_setup, test_dit_shared_prefix,
              fixture_teardown);
  g_test_add ("/golden/dit-one-key", fixture, NULL, fixture_setup, test_dit_one_key_cpu,
              fixture_teardown);
  g_test_add ("/golden/samples", fixture, NULL, fixture_setup, test_samples, fixture_teardown);
  g_test_add ("/golden/samples-4-steps", fixture, NULL, fixture_setup, test_samples4, fixture_teardown);
  return g_test_run ();
}
