/* Launchers of the kernels at the two ends of a forward: the timestep embedding going in
 * (timestep.cu) and 8-bit RGB frames coming out (decode.cu). Contracts are the backend
 * slots of engine/backend.h; each returns the launch error. */
#ifndef VDIT_CUDA_IO_OPS_H
#define VDIT_CUDA_IO_OPS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out(n, freq_dim) bf16; timesteps are n host values (passed as kernel arguments). */
cudaError_t vdit_cuda_timestep_embedding (void *out, const float *timesteps, int n,
                                          int freq_dim, cudaStream_t s);

/* The same with the n timesteps in device memory (f32), read when the kernel runs. */
cudaError_t vdit_cuda_timestep_embedding_buf (void *out, const float *timesteps, int n,
                                              int freq_dim, cudaStream_t s);

/* rgb: device bytes (frames, height, width, 3); src f32 (src_bf16 = 0) or bf16 tokens in
 * unpatchify order for patch (pt, ph, pw). */
cudaError_t vdit_cuda_decode_rgb (uint8_t *rgb, const void *src, int src_bf16, int frame0,
                                  int frames, int height, int width, int pt, int ph, int pw,
                                  cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
