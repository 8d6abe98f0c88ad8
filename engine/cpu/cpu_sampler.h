/* CPU reference of the sampler slots: the latent's layouts around a forward, the update
 * with guidance, the finiteness check. Same contracts as the slots of engine/backend.h. */
#ifndef VDIT_CPU_SAMPLER_H
#define VDIT_CPU_SAMPLER_H

#include "backend.h"

void cpu_patchify (void *ctx, void *tokens, const float *latent, float scale, int T, int H,
                   int W, int C, const int patch[3]);
void cpu_unpatchify (void *ctx, float *latent, const void *tokens, int T, int H, int W, int C,
                     const int patch[3]);
void cpu_sampler_update (void *ctx, float *x, const float *cond, const float *uncond,
                         float guidance, const float *noise, const vdit_sampler_update *u,
                         size_t n);
gboolean cpu_all_finite (void *ctx, const float *x, size_t n, gboolean *finite, GError **error);
void cpu_timestep_embedding_buf (void *ctx, void *out, const float *timesteps, int n,
                                 int freq_dim);

#endif
