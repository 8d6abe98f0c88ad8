/* Launchers of the CausalVideoVAE decoder's kernels, f32 throughout (the decoder's
 * weights and activations stay f32 on the device, as on the host). Clips are laid out
 * (C, T, H, W). Each returns the launch error. */
#ifndef VDIT_CUDA_VAE_KERNELS_H
#define VDIT_CUDA_VAE_KERNELS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* vae_conv.cu. col (cin·kt·kh·kw, rows·W) ← in (cin, T, H, W): the causal conv3d's
 * im2col for output rows [row0, row0 + rows) of the T·H rows (frame t, row y =
 * row / H, row % H); frame 0 repeats in front, space is zero-padded by kh/2, kw/2.
 * col holds bf16 when col_bf16, else f32. */
cudaError_t vdit_cuda_vae_im2col (void *col, int col_bf16, const float *in, int cin, int kt,
                                  int kh, int kw, int T, int H, int W, int row0, int rows,
                                  cudaStream_t s);
/* out[co·ld + i] = b[co] (+ out[co·ld + i] when accumulate) for co < cout, i < n. */
cudaError_t vdit_cuda_vae_bias (float *out, size_t ld, const float *b, int cout, size_t n,
                                int accumulate, cudaStream_t s);

/* vae_conv_chunk.cu: the cuDNN convolution's chunks (vae_conv_cudnn.c). dst ← input
 * frames max(0, t0 − pad_t + j) for j < frames, rows y0 − pad_h + r for r < rows (zeros
 * outside the frame), all W columns; laid out (cin, frames, rows, W), or (frames, rows, W,
 * cin) when channels_last; bf16 or f32. */
cudaError_t vdit_cuda_vae_pack_chunk (void *dst, int bf16_out, int channels_last,
                                      const float *in, int cin, int T, int H, int W, int t0,
                                      int frames, int pad_t, int y0, int rows, int pad_h,
                                      cudaStream_t s);
/* out (cout, T, H, W) += y over frames [t0, t0 + frames) and rows [y0, y0 + rows), y laid
 * out (cout, frames, rows, W) or channels last, bf16 or f32. */
cudaError_t vdit_cuda_vae_add_chunk (float *out, const void *y, int bf16_in, int channels_last,
                                     int cout, int T, int H, int W, int t0, int frames, int y0,
                                     int rows, cudaStream_t s);
/* w (cout, cin, k) f32 → dst (cout, k, cin), bf16 or f32. */
cudaError_t vdit_cuda_vae_weights_last (void *dst, int bf16_out, const float *w, int cout,
                                        int cin, int k, cudaStream_t s);

/* vae_norm.cu. GroupNorm(32, eps 1e-6) with the host's two passes in double; scratch
 * holds vdit_cuda_vae_group_norm_scratch (c, per_channel) doubles. */
size_t vdit_cuda_vae_group_norm_scratch (int c, size_t per_channel);
cudaError_t vdit_cuda_vae_group_norm (float *out, const float *x, const float *gamma,
                                      const float *beta, int c, size_t per_channel, int silu,
                                      double *scratch, cudaStream_t s);

/* vae_resample.cu: out (C, T', 2H, 2W) */
cudaError_t vdit_cuda_vae_upsample_nearest2x (float *out, const float *in, int C, int T, int H,
                                              int W, cudaStream_t s);
cudaError_t vdit_cuda_vae_upsample_s2t2 (float *out, const float *in, int C, int T, int H,
                                         int W, cudaStream_t s);

/* vae_softmax.cu: each row of s (rows, cols) replaced by its softmax, in place. */
cudaError_t vdit_cuda_vae_softmax_rows (float *s, int rows, int cols, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
