/* The sampler's backend slots on the CPU backend against the host sampler: the update of
 * every sampler type and prediction (with and without guidance and noise), the patch
 * layouts, the finiteness check and the buffered timestep bit for bit; whole generations
 * with the latent on the backend against the host path, latents and frames bit for bit;
 * a NaN and a cancel on the backend path give the host path's errors. */
#include "ctx.h"
#include "dit.h"
#include "model.h"
#include "sampler.h"
#include "test_util.h"
#include "vdit.h"

#include <math.h>
#include <string.h>

typedef struct {
  VditSamplerType type;
  VditPrediction prediction;
  gboolean fractional; /* diffusers' f32 coefficients (Euler-ancestral only) */
  const char *name;
} sampler_case;

static const sampler_case cases[] = {
  { VDIT_SAMPLER_FLOW_EULER, VDIT_PRED_FLOW, FALSE, "flow" },
  { VDIT_SAMPLER_DDIM, VDIT_PRED_EPSILON, FALSE, "ddim-eps" },
  { VDIT_SAMPLER_DDIM, VDIT_PRED_V, FALSE, "ddim-v" },
  { VDIT_SAMPLER_EULER_ANCESTRAL, VDIT_PRED_EPSILON, FALSE, "ancestral-eps" },
  { VDIT_SAMPLER_EULER_ANCESTRAL, VDIT_PRED_V, FALSE, "ancestral-v" },
  { VDIT_SAMPLER_EULER_ANCESTRAL, VDIT_PRED_EPSILON, TRUE, "ancestral-eps-f32" },
};

static vdit_sampler_config
sampler_config (const sampler_case *c)
{
  vdit_sampler_config cfg = { 0 };
  cfg.type = c->type;
  cfg.prediction = c->prediction;
  cfg.shift = 3.0;
  cfg.train_timesteps = 1000;
  cfg.beta_start = 0.00085;
  cfg.beta_end = 0.012;
  cfg.scaled_linear = TRUE;
  cfg.fractional_timesteps = c->fractional;
  return cfg;
}

static void
fill (GRand *rng, float *x, size_t n, double scale)
{
  for (size_t i = 0; i < n; i++)
    x[i] = (float) (g_rand_double_range (rng, -1.0, 1.0) * scale);
}

/* Every step of a 7-step schedule: the backend op against vdit_sampler_step, with the
 * host's guidance mix in front when guided. */
static void
test_update (gconstpointer data)
{
  const sampler_case *c = data;
  GError *error = NULL;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 1, &error));
  const vdit_backend_i *f = be.iface;
  g_assert_nonnull (f->sampler_update);
  const vdit_sampler_config cfg = sampler_config (c);
  const int steps = 7;
  vdit_sampler *s = vdit_sampler_new (&cfg, steps, &error);
  g_assert_no_error (error);
  const size_t n = 1031; /* not a multiple of a vector width */
  GRand *rng = g_rand_new_with_seed (17);
  float *cond = g_new (float, n), *uncond = g_new (float, n), *noise = g_new (float, n);
  float *host = g_new (float, n), *dev = f->alloc (be.context, n, VDIT_ELEM_F32, &error);
  float *mix = g_new (float, n);
  for (int guided = 0; guided < 2; guided++) {
    fill (rng, host, n, vdit_sampler_init_sigma (s));
    memcpy (dev, host, n * sizeof (float));
    const float g = 4.5f;
    for (int k = 0; k < steps; k++) {
      fill (rng, cond, n, 1.0);
      fill (rng, uncond, n, 1.0);
      fill (rng, noise, n, 1.0);
      const gboolean with_noise = vdit_sampler_needs_noise (s, k);
      for (size_t i = 0; i < n; i++) /* generate.c's host mix */
        mix[i] = guided ? uncond[i] + g * (cond[i] - uncond[i]) : cond[i];
      vdit_sampler_step (s, k, host, mix, with_noise ? noise : NULL, n);
      vdit_sampler_update u;
      vdit_sampler_get_update (s, k, &u);
      f->sampler_update (be.context, dev, cond, guided ? uncond : NULL, g,
                         with_noise ? noise : NULL, &u, n);
      g_assert_cmpmem (dev, n * sizeof (float), host, n * sizeof (float));
    }
  }
  gboolean finite = FALSE;
  g_assert_true (f->all_finite (be.context, dev, n, &finite, &error));
  g_assert_true (finite);
  dev[n - 1] = NAN;
  g_assert_true (f->all_finite (be.context, dev, n, &finite, &error));
  g_assert_false (finite);
  dev[n - 1] = -INFINITY;
  g_assert_true (f->all_finite (be.context, dev, n, &finite, &error));
  g_assert_false (finite);
  f->release (be.context, dev);
  g_free (cond);
  g_free (uncond);
  g_free (noise);
  g_free (host);
  g_free (mix);
  g_rand_free (rng);
  vdit_sampler_free (s);
  vdit_backend_free (&be);
}

/* patchify (with the input scale) and unpatchify against the host layouts. */
static void
test_layouts (void)
{
  GError *error = NULL;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 1, &error));
  const vdit_backend_i *f = be.iface;
  static const int patches[][3] = { { 1, 1, 1 }, { 1, 2, 2 }, { 2, 2, 2 }, { 2, 1, 2 } };
  const int T = 4, H = 6, W = 8, C = 3;
  const size_t n = (size_t) T * H * W * C;
  GRand *rng = g_rand_new_with_seed (5);
  float *latent = g_new (float, n), *scaled = g_new (float, n), *want = g_new (float, n);
  float *got = g_new (float, n);
  fill (rng, latent, n, 2.0);
  for (guint p = 0; p < G_N_ELEMENTS (patches); p++) {
    const float scale = 0.37f;
    for (size_t i = 0; i < n; i++)
      scaled[i] = latent[i] * scale;
    vdit_patchify (want, scaled, T, H, W, C, patches[p]);
    f->patchify (be.context, got, latent, scale, T, H, W, C, patches[p]);
    g_assert_cmpmem (got, n * sizeof (float), want, n * sizeof (float));
    vdit_unpatchify (want, latent, T, H, W, C, patches[p]); /* latent read as tokens */
    f->unpatchify (be.context, got, latent, T, H, W, C, patches[p]);
    g_assert_cmpmem (got, n * sizeof (float), want, n * sizeof (float));
  }
  /* the timestep read from a buffer */
  const float tau[2] = { 999.0f, 12.5f };
  const int fd = 64;
  float *a = g_new (float, 2 * fd), *b = g_new (float, 2 * fd);
  f->timestep_embedding (be.context, a, tau, 2, fd);
  f->timestep_embedding_buf (be.context, b, tau, 2, fd);
  g_assert_cmpmem (a, 2 * fd * sizeof (float), b, 2 * fd * sizeof (float));
  g_free (a);
  g_free (b);
  g_free (latent);
  g_free (scaled);
  g_free (want);
  g_free (got);
  g_rand_free (rng);
  vdit_backend_free (&be);
}

/* ---- whole generations ----------------------------------------------------------- */

typedef struct {
  vdit_model *model;
  vdit_ctx *ctx;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  test_load_tiny (&f->model, &f->ctx);
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  vdit_ctx_free (f->ctx);
  vdit_model_free (f->model);
}

typedef struct {
  uint8_t *frames;
  size_t frame_bytes;
  int count;
  vdit_ctx *cancel_ctx; /* cancels after the first denoising step */
} sink;

static gboolean
on_frame (void *user_data, int index, int total, const uint8_t *rgb, int width, int height,
          int stride)
{
  sink *s = user_data;
  s->frame_bytes = (size_t) height * stride;
  s->frames = g_realloc (s->frames, (index + 1) * s->frame_bytes);
  memcpy (s->frames + index * s->frame_bytes, rgb, s->frame_bytes);
  s->count++;
  return TRUE;
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  sink *s = user_data;
  if (s->cancel_ctx && stage == VDIT_STAGE_DENOISE && step == 1)
    vdit_cancel (s->cancel_ctx);
}

static size_t
latent_values (const vdit_model *m, int frames)
{
  const vdit_config *c = m->config;
  return (size_t) vdit_model_latent_frames (m, frames) * c->latent_height * c->latent_width *
         c->dit.in_channels;
}

static gboolean
run (fixture *f, const vdit_gen_params *base, float *latent, sink *s, GError **error)
{
  vdit_gen_params p = *base;
  p.on_frame = on_frame;
  p.progress = on_progress;
  p.user_data = s;
  return vdit_generate_latent (f->ctx, &p, latent, error);
}

/* The CPU table without the sampler's slots: the host path. */
static void
use_host_path (vdit_backend *be, vdit_backend_i *copy)
{
  *copy = *be->iface;
  copy->patchify = NULL;
  copy->unpatchify = NULL;
  copy->sampler_update = NULL;
  copy->all_finite = NULL;
  be->iface = copy;
}

static void
test_generate_paths (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_config *cfg = f->model->config;
  const vdit_sampler_config saved = cfg->sampler;
  vdit_backend *be = vdit_ctx_get_backend (f->ctx);
  const vdit_backend_i *cpu = be->iface;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int guided = 0; guided < 2; guided++) {
      const vdit_sampler_config sc = sampler_config (&cases[i]);
      cfg->sampler.type = sc.type;
      cfg->sampler.prediction = sc.prediction;
      cfg->sampler.fractional_timesteps = sc.fractional_timesteps;
      vdit_gen_params p;
      vdit_gen_params_init (&p);
      p.prompt = "a blue square moving right";
      p.seed = 11;
      p.steps = 3;
      p.guidance = guided ? 3.5f : 0.0f;
      const size_t n = latent_values (f->model, f->model->info.frames);
      g_autofree float *a = g_new (float, n), *b = g_new (float, n);
      sink sa = { 0 }, sb = { 0 };
      g_assert_true (run (f, &p, a, &sa, &error));
      g_assert_no_error (error);
      vdit_backend_i host;
      use_host_path (be, &host);
      const gboolean ok = run (f, &p, b, &sb, &error);
      be->iface = cpu;
      g_assert_no_error (error);
      g_assert_true (ok);
      g_test_message ("%s, guidance %g: %zu latent values, %d frames", cases[i].name,
                      p.guidance, n, sa.count);
      g_assert_cmpmem (a, n * sizeof (float), b, n * sizeof (float));
      g_assert_cmpint (sa.count, ==, sb.count);
      g_assert_cmpmem (sa.frames, sa.count * sa.frame_bytes, sb.frames, sb.count * sb.frame_bytes);
      g_free (sa.frames);
      g_free (sb.frames);
    }
  cfg->sampler = saved;
}

/* A NaN written by the update is seen after its step, with the host's message. */
static void (*real_update) (void *, float *, const float *, const float *, float, const float *,
                            const vdit_sampler_update *, size_t);

static void
poisoned_update (void *ctx, float *x, const float *cond, const float *uncond, float guidance,
                 const float *noise, const vdit_sampler_update *u, size_t n)
{
  real_update (ctx, x, cond, uncond, guidance, noise, u, n);
  x[5] = NAN;
}

static void
test_errors (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_backend *be = vdit_ctx_get_backend (f->ctx);
  const vdit_backend_i *cpu = be->iface;
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a blue square";
  p.steps = 3;
  const size_t n = latent_values (f->model, f->model->info.frames);
  g_autofree float *latent = g_new (float, n);
  sink s = { 0 };

  vdit_backend_i poisoned = *cpu;
  real_update = cpu->sampler_update;
  poisoned.sampler_update = poisoned_update;
  be->iface = &poisoned;
  g_assert_false (run (f, &p, latent, &s, &error));
  be->iface = cpu;
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NOT_FINITE);
  g_assert_nonnull (strstr (error->message, "at step 1 of 3 (value 5 is nan)"));
  g_clear_error (&error);

  s.cancel_ctx = f->ctx;
  g_assert_false (run (f, &p, latent, &s, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_clear_error (&error);
  vdit_reset_cancel (f->ctx);
  g_free (s.frames);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *path = g_strdup_printf ("/sampler-ops/update/%s", cases[i].name);
    g_test_add_data_func (path, &cases[i], test_update);
  }
  g_test_add_func ("/sampler-ops/layouts", test_layouts);
  g_test_add ("/sampler-ops/generate-paths", fixture, NULL, fixture_setup, test_generate_paths,
              fixture_teardown);
  g_test_add ("/sampler-ops/errors", fixture, NULL, fixture_setup, test_errors,
              fixture_teardown);
  return g_test_run ();
}
