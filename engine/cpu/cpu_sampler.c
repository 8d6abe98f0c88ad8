/* CPU reference: the sampler's slots (cpu_sampler.h). Buffers are host memory, so these
 * are the host's own loops: the same bits as generate.c's host path. */
#include "cpu_sampler.h"

#include "cpu_frames.h"
#include "dit.h"
#include "sampler_update.h"

#include <string.h>

void
cpu_patchify (void *ctx, void *tokens, const float *latent, float scale, int T, int H, int W,
              int C, const int patch[3])
{
  vdit_patchify_scaled (tokens, latent, scale, T, H, W, C, patch);
}

void
cpu_unpatchify (void *ctx, float *latent, const void *tokens, int T, int H, int W, int C,
                const int patch[3])
{
  vdit_unpatchify (latent, tokens, T, H, W, C, patch);
}

void
cpu_sampler_update (void *ctx, float *x, const float *cond, const float *uncond,
                    float guidance, const float *noise, const vdit_sampler_update *u, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    const float m = uncond ? vdit_guidance_value (cond[i], uncond[i], guidance) : cond[i];
    x[i] = vdit_sampler_update_value (u, x[i], m, noise ? noise[i] : 0.0f, noise != NULL);
  }
}

gboolean
cpu_all_finite (void *ctx, const float *x, size_t n, gboolean *finite, GError **error)
{
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) { /* integer tests of the exponent: vectorises */
    uint32_t bits;
    memcpy (&bits, &x[i], sizeof bits);
    bad |= (bits & 0x7f800000u) == 0x7f800000u;
  }
  *finite = !bad;
  return TRUE;
}

void
cpu_timestep_embedding_buf (void *ctx, void *out, const float *timesteps, int n, int freq_dim)
{
  cpu_timestep_embedding (ctx, out, timesteps, n, freq_dim); /* buffers are host memory */
}
