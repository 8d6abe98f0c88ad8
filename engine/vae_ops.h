/* The CausalVideoVAE decoder's layers on the CPU, f32, one clip laid out (C, T, H, W)
 * as PyTorch holds it. Outputs first, shapes last. */
#ifndef VDIT_VAE_OPS_H
#define VDIT_VAE_OPS_H

#include <glib.h>

G_BEGIN_DECLS

/* Floats of the im2col band a convolution works in (64 MB). */
#define COL_BUDGET_FLOATS (16u << 20)
/* The same on a device (256 MB): large enough that a band's GEMM fills a GPU. */
#define DEVICE_COL_BUDGET_FLOATS ((size_t) 64 << 20)

/* The GEMM precision of a GPU backend's VAE convolutions, from VDIT_CUDA_VAE_PRECISION
 * (read once): bf16 (the default, as Open-Sora-Plan's pipeline runs its VAE: bf16
 * operands, f32 accumulation and activations), tf32 (f32 data on TF32 tensor cores) or
 * f32 (the host reference's arithmetic; at 720p cuDNN has no f32 algorithm within its
 * workspace limit for the largest layers, which then run on im2col + cuBLAS). */
typedef enum { VDIT_VAE_F32, VDIT_VAE_TF32, VDIT_VAE_BF16 } VditVaePrecision;
VditVaePrecision vdit_vae_gpu_precision (void);
const char *vdit_vae_precision_name (VditVaePrecision p);

/* How a GPU backend runs the VAE's convolutions, from VDIT_CUDA_VAE_CONV (read once):
 * cudnn (the default: cuDNN on a channels-last copy of each chunk; 5 × the im2col path at
 * bf16), cudnn-ncdhw (cuDNN on the channels-first layout the activations have) or gemm
 * (im2col bands + cuBLAS, also what runs when cuDNN cannot be loaded or has no algorithm). */
typedef enum { VDIT_VAE_CONV_CUDNN, VDIT_VAE_CONV_CUDNN_NCDHW, VDIT_VAE_CONV_GEMM } VditVaeConvMethod;
VditVaeConvMethod vdit_vae_gpu_conv (void);
const char *vdit_vae_conv_name (VditVaeConvMethod m);

typedef struct {
  float *w; /* (cout, cin, kt, kh, kw) */
  float *b; /* (cout) */
  int cout, cin, kt, kh, kw;
} vdit_vae_conv;

typedef struct {
  float *gamma, *beta; /* (c) */
  int c;
} vdit_vae_norm;

/* Causal 3D convolution, stride 1: frame 0 repeated kt − 1 times in front, zero padding
 * of kh/2, kw/2 in space. out (cout, T, H, W) ← in (cin, T, H, W). */
void vdit_vae_conv3d (float *out, const float *in, const vdit_vae_conv *c, int T, int H, int W);
/* GroupNorm(32 groups, eps 1e-6) over (c/32, T, H, W), then SiLU when silu. In place. */
void vdit_vae_group_norm (float *x, const vdit_vae_norm *n, size_t per_channel, gboolean silu);
/* Nearest ×2 in space per frame: out (C, T, 2H, 2W). */
void vdit_vae_upsample_nearest2x (float *out, const float *in, int C, int T, int H, int W);
/* Trilinear (align_corners false) ×(1, 2, 2) on frame 0 and ×(2, 2, 2) on frames 1..T−1,
 * concatenated: out (C, T', 2H, 2W), T' = 1 + 2(T − 1). */
void vdit_vae_upsample_s2t2 (float *out, const float *in, int C, int T, int H, int W);
/* Single-head attention over each frame's H·W pixels of C channels:
 * out (C, T, H, W) = softmax(qᵀk / sqrt(C)) applied to v, frame by frame. */
void vdit_vae_frame_attention (float *out, const float *q, const float *k, const float *v, int C,
                               int T, int HW);

G_END_DECLS

#endif
