/* Launchers of the sampler's kernels (sampler.cu): contracts are the backend slots
 * patchify, unpatchify, sampler_update and all_finite of engine/backend.h, on f32
 * latents and bf16 tokens. Each returns the launch error. */
#ifndef VDIT_CUDA_SAMPLER_OPS_H
#define VDIT_CUDA_SAMPLER_OPS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* kind: VditUpdateKind; c: vdit_sampler_update.c; uncond and noise may be NULL. */
cudaError_t vdit_cuda_sampler_update (float *x, const float *cond, const float *uncond,
                                      float guidance, const float *noise, int kind,
                                      const float c[5], size_t n, cudaStream_t s);
cudaError_t vdit_cuda_patchify (void *tokens, const float *latent, float scale, int T, int H,
                                int W, int C, const int patch[3], cudaStream_t s);
cudaError_t vdit_cuda_unpatchify (float *latent, const void *tokens, int T, int H, int W,
                                  int C, const int patch[3], cudaStream_t s);
/* *bad (device) |= 1 when x holds a NaN or ±inf; *bad is not cleared here. */
cudaError_t vdit_cuda_non_finite (unsigned *bad, const float *x, size_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
