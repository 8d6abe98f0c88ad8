/* The VAE's causal conv3d on cuDNN (vae_conv_cudnn.c). */
#ifndef VDIT_VAE_CONV_CUDNN_H
#define VDIT_VAE_CONV_CUDNN_H

#include "cuda_ctx.h"
#include "vae_ops.h"

G_BEGIN_DECLS

/* out (cout, T, H, W; holding bias + residual) += causal conv3d of in (cin, T, H, W) with
 * w (cout, cin, kt, kh, kw), at precision p, cuDNN reading channels last or first.
 * FALSE when cuDNN is not available (nothing was done: run the im2col path); failures
 * after that are recorded on c for sync, and TRUE is returned. */
gboolean vdit_cuda_vae_conv3d_cudnn (vdit_cuda_ctx *c, float *out, const float *in,
                                     const float *w, int cout, int cin, int kt, int kh, int kw,
                                     int T, int H, int W, VditVaePrecision p,
                                     gboolean channels_last);
/* Destroys the context's cuDNN handle and plans (the context's teardown). */
void vdit_cuda_dnn_free (vdit_cuda_ctx *c);

G_END_DECLS

#endif
