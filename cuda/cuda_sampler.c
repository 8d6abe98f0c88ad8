/* CUDA backend slots of the sampler on the device: the latent's patches around a
 * forward, the guided update, the finiteness check, and the timestep read from device
 * memory (sampler.cu, timestep.cu). */
#include "cuda_ctx.h"
#include "io_ops.h"
#include "sampler_ops.h"
#include "vdit.h"

void
vdit_cuda_patchify_op (void *ctx, void *tokens, const float *latent, float scale, int T, int H,
                       int W, int C, const int patch[3])
{
  vdit_cuda_ctx *c = ctx;
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, vdit_cuda_patchify (tokens, latent, scale, T, H, W, C, patch, c->stream));
}

void
vdit_cuda_unpatchify_op (void *ctx, float *latent, const void *tokens, int T, int H, int W,
                         int C, const int patch[3])
{
  vdit_cuda_ctx *c = ctx;
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, vdit_cuda_unpatchify (latent, tokens, T, H, W, C, patch, c->stream));
}

void
vdit_cuda_sampler_update_op (void *ctx, float *x, const float *cond, const float *uncond,
                             float guidance, const float *noise, const vdit_sampler_update *u,
                             size_t n)
{
  vdit_cuda_ctx *c = ctx;
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, vdit_cuda_sampler_update (x, cond, uncond, guidance, noise, (int) u->kind,
                                                  u->c, n, c->stream));
}

/* A flag in stream-ordered scratch, the kernel, the flag back; the wait also reports
 * the failures of the step before it. */
gboolean
vdit_cuda_all_finite_op (void *ctx, const float *x, size_t n, gboolean *finite, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  unsigned *bad = NULL, host = 0;
  *finite = TRUE;
  if (!vdit_cuda_enter (c))
    return vdit_cuda_take_error (c, error);
  if (VDIT_CUDA_CHECK (c, cudaMallocAsync ((void **) &bad, sizeof *bad, c->stream))) {
    if (VDIT_CUDA_CHECK (c, cudaMemsetAsync (bad, 0, sizeof *bad, c->stream)) &&
        VDIT_CUDA_CHECK (c, vdit_cuda_non_finite (bad, x, n, c->stream)))
      VDIT_CUDA_CHECK (c, cudaMemcpyAsync (&host, bad, sizeof host, cudaMemcpyDeviceToHost,
                                           c->stream));
    VDIT_CUDA_CHECK (c, cudaFreeAsync (bad, c->stream));
  }
  VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream));
  *finite = host == 0;
  return vdit_cuda_take_error (c, error);
}

void
vdit_cuda_timestep_embedding_buf_op (void *ctx, void *out, const float *timesteps, int n,
                                     int freq_dim)
{
  vdit_cuda_ctx *c = ctx;
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, vdit_cuda_timestep_embedding_buf (out, timesteps, n, freq_dim,
                                                          c->stream));
}
