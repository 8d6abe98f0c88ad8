/* Launchers of the memory-bound kernels (bf16 activations, f32 arithmetic): conversion
 * (convert.cu), normalisation (norm.cu), elementwise ops (elementwise.cu) and RoPE
 * (rope.cu). Contracts are the backend slots of engine/backend.h; each returns the
 * launch error. `act` values are VditActivation's. */
#ifndef VDIT_CUDA_OPS_H
#define VDIT_CUDA_OPS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* convert.cu */
cudaError_t vdit_cuda_f32_to_bf16 (void *dst, const float *src, size_t n, cudaStream_t s);
cudaError_t vdit_cuda_bf16_to_f32 (float *dst, const void *src, size_t n, cudaStream_t s);

/* norm.cu: one block per row */
cudaError_t vdit_cuda_rmsnorm (void *out, const void *x, const void *w, int m, int d,
                               float eps, cudaStream_t s);
cudaError_t vdit_cuda_layernorm_modulate (void *out, const void *x, const void *shift,
                                          const void *scale, int m, int d, float eps,
                                          cudaStream_t s);

/* elementwise.cu */
cudaError_t vdit_cuda_add_gated (void *x, const void *h, const void *gate, int m, int d,
                                 cudaStream_t s);
cudaError_t vdit_cuda_mul (void *out, const void *a, const void *b, size_t n, cudaStream_t s);
cudaError_t vdit_cuda_add (void *out, const void *a, const void *b, size_t n, cudaStream_t s);
cudaError_t vdit_cuda_activate (void *out, const void *in, size_t n, int act, cudaStream_t s);
/* out(m, n; row stride ldo) = act(out + bias(n)); bias may be NULL. */
cudaError_t vdit_cuda_bias_act (void *out, int ldo, const void *bias, int m, int n, int act,
                                cudaStream_t s);

/* rope.cu: rotate-half RoPE in place, cos/sin f32 (n, head_dim/2) */
cudaError_t vdit_cuda_rope (void *x, int ld, const float *cos_t, const float *sin_t, int n,
                            int heads, int head_dim, int n_chunks, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
