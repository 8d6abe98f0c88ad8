/* The CausalVideoVAE decoder's backend slots on CUDA: convolutions on cuDNN
 * (vae_conv_cudnn.c) or as im2col over bands of output rows + cublasGemmEx
 * (VDIT_CUDA_VAE_CONV, vdit_vae_gpu_conv), GroupNorm, the upsamplers and per-frame attention (two GEMMs
 * around a row softmax). Activations stay f32 (C, T, H, W) like the host reference; the
 * convolutions' GEMM precision is VDIT_CUDA_VAE_PRECISION (vdit_vae_gpu_precision):
 * f32 (CUBLAS_COMPUTE_32F, the default), tf32 (f32 data, TF32 tensor cores) or bf16
 * (the im2col band and the weights in bf16, f32 accumulation into the f32 output, as
 * PyTorch's bf16 autocast). Scratch (the im2col band, bf16 weights, the scores of a
 * frame, GroupNorm partials) comes from the stream-ordered pool per call. */
#include "cuda_ctx.h"
#include "ops.h"
#include "vae_kernels.h"
#include "vae_ops.h"
#ifdef VDIT_HAVE_CUDNN
#include "vae_conv_cudnn.h"
#endif

static void *
scratch_new (vdit_cuda_ctx *c, size_t bytes)
{
  return vdit_cuda_mem_scratch (c, bytes, "the VAE decoder's scratch");
}

/* Column-major C (m × n, ldc, f32) = alpha·op(A)·op(B) + beta·C; A and B are f32, or
 * bf16 at VDIT_VAE_BF16; TF32 tensor cores at VDIT_VAE_TF32. */
static void
gemm (vdit_cuda_ctx *c, VditVaePrecision p, cublasOperation_t ta, cublasOperation_t tb, int m,
      int n, int k, float alpha, const void *a, int lda, const void *b, int ldb, float beta,
      float *out, int ldc)
{
  const cudaDataType_t in = p == VDIT_VAE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = p == VDIT_VAE_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                          : CUBLAS_COMPUTE_32F;
  VDIT_CUBLAS_CHECK (c, cublasGemmEx (c->blas, ta, tb, m, n, k, &alpha, a, in, lda, b, in, ldb,
                                      &beta, out, CUDA_R_32F, ldc, compute,
                                      CUBLAS_GEMM_DEFAULT));
}

/* Row-major out (cout, n; row stride ld) += w (cout, K) · col (K, n; row stride ldcol)
 * is column-major outᵀ (n × cout) = colᵀ (n × K) · wᵀ (K × cout), at precision p. */
static void
conv_gemm (vdit_cuda_ctx *c, float *out, size_t ld, const void *w, const void *col,
           size_t ldcol, int cout, int n, int K, VditVaePrecision p)
{
  gemm (c, p, CUBLAS_OP_N, CUBLAS_OP_N, n, cout, K, 1.0f, col, (int) ldcol, w, K, 1.0f, out,
        (int) ld);
}

void
vdit_cuda_vae_conv3d_op (void *ctx, float *out, const float *in, const float *w,
                         const float *b, int cout, int cin, int kt, int kh, int kw, int T,
                         int H, int W, gboolean accumulate)
{
  vdit_cuda_ctx *c = ctx;
  const size_t per_channel = (size_t) T * H * W;
  if (cout <= 0 || per_channel == 0 || !vdit_cuda_enter (c))
    return;
  if (per_channel > G_MAXINT) {
    vdit_cuda_record (c, __FILE__, __LINE__, "vae_conv3d", "a clip of more than 2³¹ pixels");
    return;
  }
  /* the GEMMs add into out, which first holds the bias (plus the residual) */
  if (!VDIT_CUDA_CHECK (c, vdit_cuda_vae_bias (out, per_channel, b, cout, per_channel,
                                               accumulate, c->stream)))
    return;
  const int K = cin * kt * kh * kw;
  const VditVaePrecision p = vdit_vae_gpu_precision ();
#ifdef VDIT_HAVE_CUDNN
  const VditVaeConvMethod m = vdit_vae_gpu_conv ();
  if (m != VDIT_VAE_CONV_GEMM &&
      vdit_cuda_vae_conv3d_cudnn (c, out, in, w, cout, cin, kt, kh, kw, T, H, W, p,
                                  m == VDIT_VAE_CONV_CUDNN)) {
    g_atomic_int_or (&c->vae_conv_ran, 1u << m);
    return;
  }
#endif
  g_atomic_int_or (&c->vae_conv_ran, 1u << VDIT_VAE_CONV_GEMM);
  const gboolean bf16 = p == VDIT_VAE_BF16;
  const size_t elem = bf16 ? 2 : sizeof (float);
  const void *wg = w; /* the weights as the GEMM reads them */
  void *w16 = NULL;
  if (bf16) {
    w16 = scratch_new (c, elem * cout * (size_t) K);
    if (w16 == NULL || !VDIT_CUDA_CHECK (c, vdit_cuda_f32_to_bf16 (w16, w, (size_t) cout * K,
                                                                    c->stream)))
      goto done;
    wg = w16;
  }
  if (kt == 1 && kh == 1 && kw == 1 && !bf16) { /* the input is its own column matrix */
    conv_gemm (c, out, per_channel, wg, in, per_channel, cout, (int) per_channel, K, p);
    goto done;
  }
  const int all_rows = T * H;
  const int rows = (int) MAX (1, MIN ((size_t) all_rows, DEVICE_COL_BUDGET_FLOATS / ((size_t) K * W)));
  void *col = scratch_new (c, elem * K * (size_t) rows * W);
  if (col == NULL)
    goto done;
  for (int r0 = 0; r0 < all_rows; r0 += rows) {
    const int nr = MIN (rows, all_rows - r0), n = nr * W;
    if (!VDIT_CUDA_CHECK (c, vdit_cuda_vae_im2col (col, bf16, in, cin, kt, kh, kw, T, H, W, r0,
                                                   nr, c->stream)))
      break;
    conv_gemm (c, out + (size_t) r0 * W, per_channel, wg, col, (size_t) n, cout, n, K, p);
  }
  vdit_cuda_mem_free (c, col);
done:
  if (w16 != NULL)
    vdit_cuda_mem_free (c, w16);
}

void
vdit_cuda_vae_group_norm_op (void *ctx, float *out, const float *x, const float *gamma,
                             const float *beta, int ch, size_t per_channel, gboolean silu)
{
  vdit_cuda_ctx *c = ctx;
  if (!vdit_cuda_enter (c))
    return;
  double *scratch = scratch_new (c, sizeof (double) *
                                        vdit_cuda_vae_group_norm_scratch (ch, per_channel));
  if (scratch == NULL)
    return;
  VDIT_CUDA_CHECK (c, vdit_cuda_vae_group_norm (out, x, gamma, beta, ch, per_channel, silu,
                                                scratch, c->stream));
  vdit_cuda_mem_free (c, scratch);
}

void
vdit_cuda_vae_upsample_op (void *ctx, float *out, const float *in, int C, int T, int H,
                           int W, gboolean temporal)
{
  vdit_cuda_ctx *c = ctx;
  if (!vdit_cuda_enter (c))
    return;
  if (temporal)
    VDIT_CUDA_CHECK (c, vdit_cuda_vae_upsample_s2t2 (out, in, C, T, H, W, c->stream));
  else
    VDIT_CUDA_CHECK (c, vdit_cuda_vae_upsample_nearest2x (out, in, C, T, H, W, c->stream));
}

/* Per frame t, with q, k, v, out (C, T·HW) row-major (ld = T·HW):
 * S (HW × HW, row-major) = qₜᵀkₜ / sqrt(C) is column-major Sᵀ = kₜ'·qₜ'ᵀ where kₜ' is k's
 * frame viewed column-major (HW × C, ld); then outₜᵀ (HW × C, column-major) = P · vₜ'
 * with P read back from the row-major scores transposed. */
void
vdit_cuda_vae_frame_attention_op (void *ctx, float *out, const float *q, const float *k,
                                  const float *v, int C, int T, int HW)
{
  vdit_cuda_ctx *c = ctx;
  if (C <= 0 || T <= 0 || HW <= 0 || !vdit_cuda_enter (c))
    return;
  const size_t ld = (size_t) T * HW;
  if (ld > G_MAXINT) {
    vdit_cuda_record (c, __FILE__, __LINE__, "vae_frame_attention", "too many pixels");
    return;
  }
  float *s = scratch_new (c, sizeof (float) * (size_t) HW * HW);
  if (s == NULL)
    return;
  const float scale = 1.0f / sqrtf ((float) C);
  for (int t = 0; t < T; t++) {
    const size_t off = (size_t) t * HW;
    gemm (c, VDIT_VAE_F32, CUBLAS_OP_N, CUBLAS_OP_T, HW, HW, C, scale, k + off, (int) ld,
          q + off, (int) ld, 0.0f, s, HW);
    if (!VDIT_CUDA_CHECK (c, vdit_cuda_vae_softmax_rows (s, HW, HW, c->stream)))
      break;
    gemm (c, VDIT_VAE_F32, CUBLAS_OP_T, CUBLAS_OP_N, HW, C, HW, 1.0f, s, HW, v + off,
          (int) ld, 0.0f, out + off, (int) ld);
  }
  vdit_cuda_mem_free (c, s);
}
