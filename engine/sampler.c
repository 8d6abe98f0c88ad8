/* Flow matching (Euler), DDIM (η = 0) and Euler-ancestral, with epsilon / v / flow
 * predictions. Schedules are computed in double, updates per element in float. */
#include "sampler.h"
#include "sampler_update.h"

#include <math.h>

struct vdit_sampler {
  VditSamplerType type;
  VditPrediction prediction;
  int steps;
  double *t;         /* flow: t_0..t_S */
  float *timesteps;  /* DDPM family: τ_0..τ_{S-1} (integers unless fractional) */
  double *alpha_bar; /* DDPM family: ᾱ at τ_k, and ᾱ_prev (1 after the last step) */
  double *sigma;     /* Euler-ancestral: σ_0..σ_S (σ_S = 0) */
  gboolean f32_coefficients; /* σ_up, σ_down in f32 as diffusers' tensors compute them */
};

/* diffusers' σ table as its float32 tensors hold it: β = linspace(β0, β1) rounded to f32,
 * 1 − β in f32, ᾱ a cumulative product kept in double and stored in f32 (torch's CPU
 * cumprod), σ = ((1 − ᾱ)/ᾱ)^0.5 in f32. The f32 1 − ᾱ moves σ near t = 0 by up to 1e-4
 * relative from the exact value, so matching it matters for parity. (torch.linspace's own
 * f32 rounding differs by CPU vector width, by at most an ulp of β: ~1e-7 in σ.) */
static float *
diffusers_sigma_table (const vdit_sampler_config *cfg)
{
  const int n = cfg->train_timesteps;
  float *sig = g_new (float, n);
  double prod = 1.0;
  for (int i = 0; i < n; i++) {
    double frac = n > 1 ? (double) i / (n - 1) : 0.0;
    double r = cfg->scaled_linear
                 ? sqrt (cfg->beta_start) + frac * (sqrt (cfg->beta_end) - sqrt (cfg->beta_start))
                 : cfg->beta_start + frac * (cfg->beta_end - cfg->beta_start);
    float root = (float) r;
    float beta = cfg->scaled_linear ? root * root : root;
    prod *= 1.0f - beta;
    float acp = (float) prod;
    sig[i] = sqrtf ((1.0f - acp) / acp);
  }
  return sig;
}

static void
ddpm_schedule (vdit_sampler *s, const vdit_sampler_config *cfg)
{
  const int n = cfg->train_timesteps;
  g_autofree double *acp = g_new (double, n);
  double prod = 1.0;
  for (int i = 0; i < n; i++) {
    double frac = n > 1 ? (double) i / (n - 1) : 0.0;
    double beta;
    if (cfg->scaled_linear) {
      double r = sqrt (cfg->beta_start) + frac * (sqrt (cfg->beta_end) - sqrt (cfg->beta_start));
      beta = r * r;
    } else {
      beta = cfg->beta_start + frac * (cfg->beta_end - cfg->beta_start);
    }
    prod *= 1.0 - beta;
    acp[i] = prod;
  }
  g_autofree float *sig_f32 = cfg->fractional_timesteps ? diffusers_sigma_table (cfg) : NULL;
  s->timesteps = g_new (float, s->steps);
  s->alpha_bar = g_new (double, s->steps + 1);
  s->sigma = g_new (double, s->steps + 1);
  for (int k = 0; k < s->steps; k++) {
    /* numpy: linspace(0, n-1, steps)[::-1], with numpy's step·j arithmetic */
    int j = s->steps - 1 - k;
    double v = s->steps > 1 ? j * ((double) (n - 1) / (s->steps - 1)) : 0.0;
    if (j == s->steps - 1 && s->steps > 1)
      v = n - 1;
    if (!cfg->fractional_timesteps) {
      /* .round(): DDIM's integer timesteps */
      int tau = (int) nearbyint (v);
      s->timesteps[k] = (float) tau;
      s->alpha_bar[k] = acp[tau];
      s->sigma[k] = sqrt ((1.0 - acp[tau]) / acp[tau]);
      continue;
    }
    /* diffusers' Euler: the f32 timestep itself, σ by np.interp over the f32 table */
    s->timesteps[k] = (float) v;
    double x = s->timesteps[k];
    int i = (int) floor (x);
    double sig = sig_f32[i];
    if (x > i && i + 1 < n)
      sig = sig_f32[i] + (x - i) * ((double) sig_f32[i + 1] - sig_f32[i]);
    s->sigma[k] = (float) sig;
    s->alpha_bar[k] = 1.0 / (s->sigma[k] * s->sigma[k] + 1.0);
  }
  s->alpha_bar[s->steps] = 1.0;
  s->sigma[s->steps] = 0.0;
}

vdit_sampler *
vdit_sampler_new (const vdit_sampler_config *cfg, int steps, GError **error)
{
  if (steps < 1 || steps > VDIT_MAX_STEPS) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "steps = %d is out of range (1..%d)", steps, VDIT_MAX_STEPS);
    return NULL;
  }
  vdit_sampler *s = g_new0 (vdit_sampler, 1);
  s->type = cfg->type;
  s->prediction = cfg->prediction;
  s->steps = steps;
  s->f32_coefficients = cfg->fractional_timesteps;
  if (cfg->type == VDIT_SAMPLER_FLOW_EULER) {
    s->t = g_new (double, steps + 1);
    for (int k = 0; k <= steps; k++) {
      double t = 1.0 - (double) k / steps;
      s->t[k] = cfg->shift * t / (1.0 + (cfg->shift - 1.0) * t);
    }
  } else {
    ddpm_schedule (s, cfg);
  }
  return s;
}

void
vdit_sampler_free (vdit_sampler *s)
{
  if (s == NULL)
    return;
  g_free (s->t);
  g_free (s->timesteps);
  g_free (s->alpha_bar);
  g_free (s->sigma);
  g_free (s);
}

float
vdit_sampler_init_sigma (const vdit_sampler *s)
{
  return s->type == VDIT_SAMPLER_EULER_ANCESTRAL ? (float) s->sigma[0] : 1.0f;
}

float
vdit_sampler_timestep (const vdit_sampler *s, int k)
{
  if (s->type == VDIT_SAMPLER_FLOW_EULER)
    return (float) (1000.0 * s->t[k]);
  return s->timesteps[k];
}

float
vdit_sampler_input_scale (const vdit_sampler *s, int k)
{
  if (s->type == VDIT_SAMPLER_EULER_ANCESTRAL)
    return (float) (1.0 / sqrt (s->sigma[k] * s->sigma[k] + 1.0));
  return 1.0f;
}

gboolean
vdit_sampler_needs_noise (const vdit_sampler *s, int k)
{
  return s->type == VDIT_SAMPLER_EULER_ANCESTRAL && s->sigma[k + 1] > 0.0;
}

/* DDIM (η = 0): x0 and ε from the prediction, then x at ᾱ_prev. */
static void
update_ddim (const vdit_sampler *s, int k, vdit_sampler_update *u)
{
  const double ab = s->alpha_bar[k], ab_prev = s->alpha_bar[k + 1];
  u->kind = s->prediction == VDIT_PRED_V ? VDIT_UPDATE_DDIM_V : VDIT_UPDATE_DDIM_EPS;
  u->c[0] = (float) sqrt (ab);
  u->c[1] = (float) sqrt (1.0 - ab);
  u->c[2] = (float) sqrt (ab_prev);
  u->c[3] = (float) sqrt (1.0 - ab_prev);
}

/* Euler-ancestral: a step to σ_down, then noise of σ_up. */
static void
update_euler_ancestral (const vdit_sampler *s, int k, vdit_sampler_update *u)
{
  const double sg = s->sigma[k], next = s->sigma[k + 1];
  const double up = sqrt (next * next * (sg * sg - next * next) / (sg * sg));
  const double down = sqrt (next * next - up * up);
  float dt = (float) (down - sg), fs = (float) sg, fup = (float) up;
  if (s->f32_coefficients) {
    const float f_next = (float) next;
    fup = sqrtf (f_next * f_next * (fs * fs - f_next * f_next) / (fs * fs));
    dt = sqrtf (f_next * f_next - fup * fup) - fs;
  }
  u->kind = s->prediction == VDIT_PRED_V ? VDIT_UPDATE_ANCESTRAL_V : VDIT_UPDATE_ANCESTRAL_EPS;
  u->c[0] = (float) (-sg / sqrt (sg * sg + 1.0));
  u->c[1] = (float) (1.0 / (sg * sg + 1.0));
  u->c[2] = fs;
  u->c[3] = dt;
  u->c[4] = fup;
}

void
vdit_sampler_get_update (const vdit_sampler *s, int k, vdit_sampler_update *u)
{
  *u = (vdit_sampler_update) { 0 };
  switch (s->type) {
    case VDIT_SAMPLER_FLOW_EULER:
      u->kind = VDIT_UPDATE_FLOW;
      u->c[0] = (float) (s->t[k + 1] - s->t[k]);
      break;
    case VDIT_SAMPLER_DDIM:
      update_ddim (s, k, u);
      break;
    case VDIT_SAMPLER_EULER_ANCESTRAL:
      update_euler_ancestral (s, k, u);
      break;
  }
}

void
vdit_sampler_step (const vdit_sampler *s, int k, float *x, const float *m, const float *noise,
                   size_t n)
{
  vdit_sampler_update u;
  vdit_sampler_get_update (s, k, &u);
  for (size_t i = 0; i < n; i++)
    x[i] = vdit_sampler_update_value (&u, x[i], m[i], noise ? noise[i] : 0.0f, noise != NULL);
}
