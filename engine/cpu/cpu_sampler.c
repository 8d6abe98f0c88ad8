/* CPU reference: the sampler's slots (cpu_sampler.h). Buffers are host memory, so these
 * are the host's own loops: the same bits as generate.c's host path. */
#include "cpu_sampler.h"

#include "cpu_frames.h"
#include "sampler_update.h"

#include <string.h>

/* Walks latent (T, H, W, C) in order; token values ordered (c, dt, dy, dx) going in and
 * (dt, dy, dx, c) coming out, as vdit_patchify / vdit_unpatchify. */
static void
patch_walk (float *latent, float *tokens, float scale, int T, int H, int W, int C,
            const int patch[3], gboolean to_tokens)
{
  const int pt = patch[0], ph = patch[1], pw = patch[2];
  const int gh = H / ph, gw = W / pw, per = pt * ph * pw * C;
  size_t li = 0;
  for (int t = 0; t < T; t++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int ch = 0; ch < C; ch++, li++) {
          const size_t token = ((size_t) (t / pt) * gh + y / ph) * gw + x / pw;
          const int dt = t % pt, dy = y % ph, dx = x % pw;
          if (to_tokens)
            tokens[token * per + ((ch * pt + dt) * ph + dy) * pw + dx] = latent[li] * scale;
          else
            latent[li] = tokens[token * per + ((dt * ph + dy) * pw + dx) * C + ch];
        }
}

void
cpu_patchify (void *ctx, void *tokens, const float *latent, float scale, int T, int H, int W,
              int C, const int patch[3])
{
  patch_walk ((float *) latent, tokens, scale, T, H, W, C, patch, TRUE);
}

void
cpu_unpatchify (void *ctx, float *latent, const void *tokens, int T, int H, int W, int C,
                const int patch[3])
{
  patch_walk (latent, (float *) tokens, 1.0f, T, H, W, C, patch, FALSE);
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
