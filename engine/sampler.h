/* Sampling schedules and update rules (docs/model-format.md, "Samplers"). The latent
 * stays on the host in f32; the sampler never sees the backend. */
#ifndef VDIT_SAMPLER_H
#define VDIT_SAMPLER_H

#include "config.h"

G_BEGIN_DECLS

typedef struct vdit_sampler vdit_sampler;

vdit_sampler *vdit_sampler_new (const vdit_sampler_config *cfg, int steps, GError **error);
void vdit_sampler_free (vdit_sampler *s);
/* Factor applied to the initial standard-normal latent. */
float vdit_sampler_init_sigma (const vdit_sampler *s);
/* The timestep fed to the model at step k. */
float vdit_sampler_timestep (const vdit_sampler *s, int k);
/* Factor applied to the latent before it enters the model at step k. */
float vdit_sampler_input_scale (const vdit_sampler *s, int k);
/* Whether step k adds fresh noise (ancestral sampling). */
gboolean vdit_sampler_needs_noise (const vdit_sampler *s, int k);
/* x(n) ← update(x, model output at step k, noise (n) or NULL). */
void vdit_sampler_step (const vdit_sampler *s, int k, float *x, const float *model_out,
                        const float *noise, size_t n);

G_END_DECLS

#endif
