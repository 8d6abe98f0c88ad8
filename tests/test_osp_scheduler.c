/* Open-Sora-Plan v1.2's sampler (diffusers' EulerAncestralDiscreteScheduler, "linspace"
 * spacing: unrounded timesteps, interpolated σ) against goldens from the reference in
 * train/osp/scheduler.py (tests/data/osp_scheduler.safetensors, made by
 * train/make_osp_scheduler_golden.py), and the config key that selects it. */
#include "config.h"
#include "sampler.h"
#include "test_util.h"

#include <math.h>

static const char osp_sampler_json[] =
  "{\"format\": \"vdit\", \"version\": 1,"
  " \"video\": {\"frames\": 2, \"height\": 8, \"width\": 8},"
  " \"decoder\": {\"type\": \"identity\"},"
  " \"text_encoder\": {\"vocab_size\": 16, \"d_model\": 8, \"n_layers\": 1, \"n_heads\": 2,"
  "   \"d_kv\": 4, \"d_ff\": 16, \"rel_buckets\": 8, \"rel_max_distance\": 16,"
  "   \"max_tokens\": 8},"
  " \"dit\": {\"hidden\": 12, \"depth\": 1, \"heads\": 2, \"head_dim\": 6, \"patch\": [1, 2, 2],"
  "   \"in_channels\": 3, \"ffn_hidden\": 24, \"freq_dim\": 8},"
  " \"sampler\": {\"type\": \"%s\", \"prediction\": \"epsilon\", \"steps\": 100,"
  "   \"guidance\": 7.5, \"timestep_spacing\": \"%s\"}}";

static vdit_config *
parse_sampler (const char *type, const char *spacing, GError **error)
{
  g_autofree char *json = g_strdup_printf (osp_sampler_json, type, spacing);
  return vdit_config_parse (json, -1, "osp/config.json", error);
}

static vdit_safetensors *
open_golden (void)
{
  GError *error = NULL;
  g_autofree char *path = test_source_path ("tests/data/osp_scheduler.safetensors");
  vdit_safetensors *st = vdit_safetensors_open (path, &error);
  g_assert_no_error (error);
  return st;
}

static void
test_config_key (void)
{
  GError *error = NULL;
  vdit_config *c = parse_sampler ("euler_ancestral", "linspace", &error);
  g_assert_no_error (error);
  g_assert_true (c->sampler.fractional_timesteps);
  g_assert_cmpint (c->sampler.steps, ==, 100);
  vdit_config_free (c);
  c = parse_sampler ("euler_ancestral", "linspace_rounded", &error);
  g_assert_no_error (error);
  g_assert_false (c->sampler.fractional_timesteps);
  vdit_config_free (c);
  c = parse_sampler ("ddim", "linspace", &error);
  g_assert_null (c);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG);
  g_assert_nonnull (strstr (error->message, "sampler.timestep_spacing"));
  g_clear_error (&error);
  c = parse_sampler ("euler_ancestral", "leading", &error);
  g_assert_null (c);
  g_assert_nonnull (strstr (error->message, "timestep_spacing"));
  g_clear_error (&error);
}

static vdit_sampler *
osp_sampler (int steps)
{
  GError *error = NULL;
  vdit_config *c = parse_sampler ("euler_ancestral", "linspace", &error);
  g_assert_no_error (error);
  vdit_sampler *s = vdit_sampler_new (&c->sampler, steps, &error);
  g_assert_no_error (error);
  vdit_config_free (c);
  return s;
}

/* data: the number of steps. Timesteps are exact (numpy's linspace in f32); σ agree to
 * the float32 rounding diffusers' table carries (ᾱ cumulated in f32). */
static void
test_schedule (gconstpointer data)
{
  const int steps = GPOINTER_TO_INT (data);
  vdit_safetensors *st = open_golden ();
  g_autofree char *tname = g_strdup_printf ("timesteps.%d", steps);
  g_autofree char *sname = g_strdup_printf ("sigmas.%d", steps);
  size_t nt = 0, ns = 0;
  g_autofree float *tau = test_golden_f32 (st, tname, &nt);
  g_autofree float *sig = test_golden_f32 (st, sname, &ns);
  g_assert_cmpuint (nt, ==, (size_t) steps);
  g_assert_cmpuint (ns, ==, (size_t) steps + 1);
  vdit_sampler *s = osp_sampler (steps);
  g_autofree float *got_in = g_new (float, steps);
  g_autofree float *ref_in = g_new (float, steps);
  for (int k = 0; k < steps; k++) {
    g_assert_cmpfloat (vdit_sampler_timestep (s, k), ==, tau[k]);
    got_in[k] = vdit_sampler_input_scale (s, k);
    ref_in[k] = (float) (1.0 / sqrt ((double) sig[k] * sig[k] + 1.0));
  }
  g_assert_cmpfloat_with_epsilon (vdit_sampler_init_sigma (s), sig[0], 3e-7 * sig[0]);
  test_assert_close ("input scale", ref_in, got_in, steps, 0, 1e-6);
  /* fractional timesteps are what makes this diffusers' schedule, not DDIM's */
  if (steps == 100) {
    g_assert_cmpfloat (tau[1], !=, rintf (tau[1]));
    g_assert_false (vdit_sampler_needs_noise (s, steps - 1));
    g_assert_true (vdit_sampler_needs_noise (s, steps - 2));
  }
  vdit_sampler_free (s);
  vdit_safetensors_close (st);
}

static double
max_abs (const float *a, size_t n)
{
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = MAX (m, fabs (a[i]));
  return m;
}

/* The 100-step trajectory of the toy model ε = 0.5·tanh(x_in) with the golden's noise:
 * every model input and every updated latent. */
static void
test_trajectory (void)
{
  const int steps = 100;
  vdit_safetensors *st = open_golden ();
  size_t nn = 0, ni = 0, no = 0;
  g_autofree float *noise = test_golden_f32 (st, "trajectory.noise", &nn);
  g_autofree float *inputs = test_golden_f32 (st, "trajectory.inputs", &ni);
  g_autofree float *outputs = test_golden_f32 (st, "trajectory.outputs", &no);
  const size_t n = nn / (steps + 1);
  g_assert_cmpuint (ni, ==, n * steps);
  g_assert_cmpuint (no, ==, n * steps);
  vdit_sampler *s = osp_sampler (steps);
  g_autofree float *x = g_new (float, n);
  g_autofree float *x_in = g_new (float, n);
  g_autofree float *eps = g_new (float, n);
  const float s0 = vdit_sampler_init_sigma (s);
  for (size_t i = 0; i < n; i++)
    x[i] = noise[i] * s0;
  for (int k = 0; k < steps; k++) {
    const float scale = vdit_sampler_input_scale (s, k);
    for (size_t i = 0; i < n; i++) {
      x_in[i] = x[i] * scale;
      eps[i] = 0.5f * tanhf (x_in[i]);
    }
    g_autofree char *what = g_strdup_printf ("step %d", k);
    /* f32 rounding of latents up to |x| ≈ 400: errors scale with the largest element */
    test_assert_close (what, inputs + k * n, x_in, n, 1e-6 * max_abs (inputs + k * n, n), 1e-5);
    const float *step_noise = vdit_sampler_needs_noise (s, k) ? noise + (k + 1) * n : NULL;
    vdit_sampler_step (s, k, x, eps, step_noise, n);
    test_assert_close (what, outputs + k * n, x, n, 1e-6 * max_abs (outputs + k * n, n), 1e-5);
  }
  vdit_sampler_free (s);
  vdit_safetensors_close (st);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/osp-scheduler/config-key", test_config_key);
  g_test_add_data_func ("/osp-scheduler/schedule-100", GINT_TO_POINTER (100), test_schedule);
  g_test_add_data_func ("/osp-scheduler/schedule-7", GINT_TO_POINTER (7), test_schedule);
  g_test_add_data_func ("/osp-scheduler/schedule-1", GINT_TO_POINTER (1), test_schedule);
  g_test_add_func ("/osp-scheduler/trajectory", test_trajectory);
  return g_test_run ();
}
