/* Sampling schedules and update rules (docs/model-format.md, "Samplers"). A step's update
 * is per-element arithmetic with scalars made here (vdit_sampler_get_update), run on the
 * host (vdit_sampler_step) or by a backend's sampler_update on a latent it holds. */
#ifndef VDIT_SAMPLER_H
#define VDIT_SAMPLER_H

#include "backend.h"
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
/* Step k's update rule and its scalars, for a backend's sampler_update. */
void vdit_sampler_get_update (const vdit_sampler *s, int k, vdit_sampler_update *u);
/* x(n) ← update(x, model output at step k, noise (n) or NULL), on the host. */
void vdit_sampler_step (const vdit_sampler *s, int k, float *x, const float *model_out,
                        const float *noise, size_t n);

G_END_DECLS

#endif
