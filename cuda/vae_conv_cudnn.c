/* The VAE's causal 3D convolution through cuDNN (VDIT_CUDA_VAE_CONV=cudnn, the default, or
 * cudnn-ncdhw; vae_cuda.c falls back to im2col + cuBLAS when cuDNN cannot be loaded).
 *
 * cuDNN has no causal padding, so the input goes to cuDNN a chunk at a time: a copy of
 * frames [t0 − (kt − 1), t0 + frames) with frame 0 repeated in front of the clip, and of
 * rows [y0 − kh/2, y0 + rows + kh/2) with zero rows outside it, in the precision's type
 * and in channels-last order (cuDNN's tensor-core kernels are NDHWC; cudnn-ncdhw keeps
 * channels first). Chunks are whole frames where the budget allows, else bands of rows of
 * one frame, so the copies stay within DEVICE_COL_BUDGET_FLOATS like the im2col band.
 * cuDNN writes the chunk's result to scratch; a transpose-add puts it into the f32 output,
 * which already holds bias + residual. The algorithm is cuDNN's heuristic first choice
 * that fits the workspace limit, kept per shape. */
#include <string.h>

#include "cuda_ctx.h"
#include "cudnn_dl.h"
#include "ops.h"
#include "vae_conv_cudnn.h"
#include "vae_kernels.h"

/* cuDNN's workspace for one chunk at most */
#define WORKSPACE_LIMIT ((size_t) 256 << 20)

typedef struct {
  cudnnConvolutionFwdAlgo_t algo;
  size_t workspace; /* NO_PLAN: cuDNN had none (kept too, so it is asked and said once) */
} conv_plan;

#define NO_PLAN G_MAXSIZE

static gboolean
dnn_check (vdit_cuda_ctx *c, cudnnStatus_t st, const char *file, int line, const char *call)
{
  if (G_LIKELY (st == CUDNN_STATUS_SUCCESS))
    return TRUE;
  vdit_cuda_record (c, file, line, call, cudnnGetErrorString (st));
  return FALSE;
}
#define DNN_CHECK(c, call) dnn_check ((c), (call), __FILE__, __LINE__, #call)

/* The context's cuDNN handle on its stream, made at the first convolution; NULL (and the
 * reason logged once) when cuDNN cannot be loaded. */
static cudnnHandle_t
handle (vdit_cuda_ctx *c)
{
  g_mutex_lock (&c->dnn_lock);
  if (c->dnn == NULL && !c->dnn_failed) {
    GError *error = NULL;
    cudnnHandle_t h = NULL;
    if (!vdit_cudnn_load (&error)) {
      g_message ("%s: the VAE's convolutions use im2col + cuBLAS", error->message);
      g_error_free (error);
    } else if (cudnnCreate (&h) != CUDNN_STATUS_SUCCESS ||
               cudnnSetStream (h, c->stream) != CUDNN_STATUS_SUCCESS) {
      g_message ("cuDNN does not start on device %d: the VAE's convolutions use im2col + "
                 "cuBLAS", c->device);
      if (h)
        cudnnDestroy (h);
      h = NULL;
    }
    c->dnn = h;
    c->dnn_failed = h == NULL;
    if (h)
      c->dnn_plans = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  }
  cudnnHandle_t h = c->dnn;
  g_mutex_unlock (&c->dnn_lock);
  return h;
}

void
vdit_cuda_dnn_free (vdit_cuda_ctx *c)
{
  if (c->dnn)
    cudnnDestroy (c->dnn);
  if (c->dnn_plans)
    g_hash_table_destroy (c->dnn_plans);
  c->dnn = NULL;
  c->dnn_plans = NULL;
}

/* (1, C, D, H, W) with channels-first or channels-last strides */
static void
set_tensor (int dims[5], int strides[5], int C, int D, int H, int W, gboolean last)
{
  const int d[5] = { 1, C, D, H, W };
  memcpy (dims, d, sizeof d);
  if (last) {
    const int s[5] = { D * H * W * C, 1, H * W * C, W * C, C };
    memcpy (strides, s, sizeof s);
  } else {
    const int s[5] = { C * D * H * W, D * H * W, H * W, W, 1 };
    memcpy (strides, s, sizeof s);
  }
}

/* cuDNN's choice for this chunk shape, asked once per shape; FALSE when it has none
 * within the workspace limit (the caller then runs the im2col path). */
static gboolean
plan_for (vdit_cuda_ctx *c, cudnnHandle_t h, cudnnTensorDescriptor_t x,
          cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
          cudnnTensorDescriptor_t y, const char *key, conv_plan *out)
{
  g_mutex_lock (&c->dnn_lock);
  const conv_plan *known = g_hash_table_lookup (c->dnn_plans, key);
  if (known)
    *out = *known;
  g_mutex_unlock (&c->dnn_lock);
  if (known)
    return out->workspace != NO_PLAN;
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int n = 0;
  const cudnnStatus_t st = cudnnGetConvolutionForwardAlgorithm_v7 (
      h, x, w, conv, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf);
  for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < n; i++)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WORKSPACE_LIMIT) {
      out->algo = perf[i].algo;
      out->workspace = perf[i].memory;
      g_debug ("cuDNN conv %s: algorithm %d, workspace %zu bytes", key, (int) out->algo,
               out->workspace);
      g_mutex_lock (&c->dnn_lock);
      g_hash_table_replace (c->dnn_plans, g_strdup (key), g_memdup2 (out, sizeof *out));
      g_mutex_unlock (&c->dnn_lock);
      return TRUE;
    }
  g_message ("cuDNN has no algorithm for the convolution %s (%s): im2col + cuBLAS used", key,
             st == CUDNN_STATUS_SUCCESS ? "none within the workspace limit"
                                        : cudnnGetErrorString (st));
  const conv_plan none = { (cudnnConvolutionFwdAlgo_t) 0, NO_PLAN };
  g_mutex_lock (&c->dnn_lock);
  g_hash_table_replace (c->dnn_plans, g_strdup (key), g_memdup2 (&none, sizeof none));
  g_mutex_unlock (&c->dnn_lock);
  return FALSE;
}

/* Frames per chunk and rows per band: whole frames while one fits the budget, else
 * bands of one frame. The copy's planes (frames × rows) stay within a grid's z limit. */
static void
chunk_shape (int cin, int cout, int kt, int kh, int T, int H, int W, size_t elem, int *frames,
             int *rows)
{
  const size_t budget = DEVICE_COL_BUDGET_FLOATS * sizeof (float);
  const size_t halo = 2 * (size_t) (kh / 2);
  const size_t per_frame = ((size_t) cin * (H + halo) + (size_t) cout * H) * W * elem;
  if ((size_t) cin * (kt - 1) * (H + halo) * W * elem + per_frame <= budget) {
    const size_t fit = (budget - (size_t) cin * (kt - 1) * (H + halo) * W * elem) / per_frame;
    const size_t per_grid = 65535 / (H + halo), planes = per_grid > (size_t) kt ? per_grid - (kt - 1) : 1;
    *frames = (int) MAX (1, MIN (MIN (fit, planes), (size_t) T));
    *rows = H;
    return;
  }
  /* one frame: cin · kt · (rows + halo) + cout · rows elements per column */
  const size_t per_row = ((size_t) cin * kt + cout) * W * elem;
  const size_t fixed = (size_t) cin * kt * halo * W * elem;
  const size_t fit = budget > fixed ? (budget - fixed) / per_row : 1;
  *frames = 1;
  *rows = (int) MAX (1, MIN (fit, (size_t) H));
}

typedef struct {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  int cin, cout, kt, kh, kw, W, pad_t, pad_h;
  cudnnDataType_t type;
  VditVaePrecision p;
  gboolean last;
} conv_descs;

/* x and y described for a chunk of nt output frames × nr output rows */
static gboolean
set_chunk (vdit_cuda_ctx *c, const conv_descs *d, int nt, int nr)
{
  int dims[5], strides[5];
  set_tensor (dims, strides, d->cin, nt + d->pad_t, nr + 2 * d->pad_h, d->W, d->last);
  if (!DNN_CHECK (c, cudnnSetTensorNdDescriptor (d->x, d->type, 5, dims, strides)))
    return FALSE;
  set_tensor (dims, strides, d->cout, nt, nr, d->W, d->last);
  return DNN_CHECK (c, cudnnSetTensorNdDescriptor (d->y, d->type, 5, dims, strides));
}

/* The plan of a chunk of nt × nr (its descriptors set as a side effect) */
static gboolean
plan_chunk (vdit_cuda_ctx *c, cudnnHandle_t h, const conv_descs *d, int nt, int nr,
            conv_plan *plan)
{
  if (!set_chunk (c, d, nt, nr))
    return FALSE;
  char *key = g_strdup_printf ("%d>%d k%dx%dx%d %dx%dx%d %s %s", d->cin, d->cout, d->kt, d->kh,
                               d->kw, nt, nr, d->W, vdit_vae_precision_name (d->p),
                               d->last ? "ndhwc" : "ncdhw");
  const gboolean ok = plan_for (c, h, d->x, d->w, d->conv, d->y, key, plan);
  g_free (key);
  return ok;
}

gboolean
vdit_cuda_vae_conv3d_cudnn (vdit_cuda_ctx *c, float *out, const float *in, const float *w,
                            int cout, int cin, int kt, int kh, int kw, int T, int H, int W,
                            VditVaePrecision p, gboolean channels_last)
{
  cudnnHandle_t h = handle (c);
  if (h == NULL)
    return FALSE;
  const gboolean bf16 = p == VDIT_VAE_BF16;
  const size_t elem = bf16 ? 2 : sizeof (float);
  const int K = cin * kt * kh * kw;
  conv_descs d = {
    .cin = cin, .cout = cout, .kt = kt, .kh = kh, .kw = kw, .W = W, .pad_t = kt - 1,
    .pad_h = kh / 2, .type = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, .p = p,
    .last = channels_last,
  };
  int frames, rows;
  chunk_shape (cin, cout, kt, kh, T, H, W, elem, &frames, &rows);

  const int zero_pad[3] = { 0, 0, kw / 2 }, ones[3] = { 1, 1, 1 };
  const int wdims[5] = { cout, cin, kt, kh, kw };
  gboolean ok =
    DNN_CHECK (c, cudnnCreateTensorDescriptor (&d.x)) &&
    DNN_CHECK (c, cudnnCreateTensorDescriptor (&d.y)) &&
    DNN_CHECK (c, cudnnCreateFilterDescriptor (&d.w)) &&
    DNN_CHECK (c, cudnnCreateConvolutionDescriptor (&d.conv)) &&
    DNN_CHECK (c, cudnnSetFilterNdDescriptor (d.w, d.type,
                                              channels_last ? CUDNN_TENSOR_NHWC
                                                            : CUDNN_TENSOR_NCHW,
                                              5, wdims)) &&
    DNN_CHECK (c, cudnnSetConvolutionNdDescriptor (d.conv, 3, zero_pad, ones, ones,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) &&
    DNN_CHECK (c, cudnnSetConvolutionMathType (d.conv, bf16 ? CUDNN_TENSOR_OP_MATH
                                                      : p == VDIT_VAE_TF32 ? CUDNN_DEFAULT_MATH
                                                                           : CUDNN_FMA_MATH));
  /* every chunk shape (whole and last, in frames and in rows) planned before any work,
   * so a shape cuDNN cannot do sends the whole convolution to the im2col path; plans[i]
   * is the chunk of nts[i / 2] frames × nrs[i % 2] rows */
  const int nts[2] = { frames, T % frames ? T % frames : frames };
  const int nrs[2] = { rows, H % rows ? H % rows : rows };
  conv_plan plans[4];
  size_t ws_size = 0;
  gboolean planned = ok;
  for (int i = 0; planned && i < 4; i++) {
    planned = plan_chunk (c, h, &d, nts[i / 2], nrs[i % 2], &plans[i]);
    if (planned)
      ws_size = MAX (ws_size, plans[i].workspace);
  }

  void *wd = NULL, *xd = NULL, *yd = NULL, *ws = NULL;
  const float one = 1.0f, zero = 0.0f;
  ok = planned &&
    (wd = vdit_cuda_mem_scratch (c, elem * cout * (size_t) K, "the VAE's convolution weights")) &&
    (xd = vdit_cuda_mem_scratch (c, elem * cin * (size_t) (frames + d.pad_t) *
                                        (rows + 2 * d.pad_h) * W,
                                 "the VAE's convolution input chunk")) &&
    (yd = vdit_cuda_mem_scratch (c, elem * cout * (size_t) frames * rows * W,
                                 "the VAE's convolution output chunk")) &&
    (ws_size == 0 || (ws = vdit_cuda_mem_scratch (c, ws_size, "cuDNN's workspace"))) &&
    VDIT_CUDA_CHECK (c, channels_last
                          ? vdit_cuda_vae_weights_last (wd, bf16, w, cout, cin, kt * kh * kw,
                                                        c->stream)
                          : bf16 ? vdit_cuda_f32_to_bf16 (wd, w, (size_t) cout * K, c->stream)
                                 : cudaMemcpyAsync (wd, w, sizeof (float) * cout * (size_t) K,
                                                    cudaMemcpyDeviceToDevice, c->stream));
  for (int t0 = 0; ok && t0 < T; t0 += frames)
    for (int y0 = 0; ok && y0 < H; y0 += rows) {
      const int nt = MIN (frames, T - t0), nr = MIN (rows, H - y0);
      const conv_plan *plan = &plans[(nt != frames) * 2 + (nr != rows)];
      ok = set_chunk (c, &d, nt, nr) &&
           VDIT_CUDA_CHECK (c, vdit_cuda_vae_pack_chunk (xd, bf16, channels_last, in, cin, T, H,
                                                         W, t0, nt + d.pad_t, d.pad_t, y0,
                                                         nr + 2 * d.pad_h, d.pad_h,
                                                         c->stream)) &&
           DNN_CHECK (c, cudnnConvolutionForward (h, &one, d.x, xd, d.w, wd, d.conv, plan->algo,
                                                  ws, plan->workspace, &zero, d.y, yd)) &&
           VDIT_CUDA_CHECK (c, vdit_cuda_vae_add_chunk (out, yd, bf16, channels_last, cout, T, H,
                                                        W, t0, nt, y0, nr, c->stream));
    }
  if (d.conv)
    cudnnDestroyConvolutionDescriptor (d.conv);
  if (d.w)
    cudnnDestroyFilterDescriptor (d.w);
  if (d.y)
    cudnnDestroyTensorDescriptor (d.y);
  if (d.x)
    cudnnDestroyTensorDescriptor (d.x);
  vdit_cuda_mem_free (c, ws);
  vdit_cuda_mem_free (c, yd);
  vdit_cuda_mem_free (c, xd);
  vdit_cuda_mem_free (c, wd);
  return planned; /* unplanned: nothing was done, the caller runs im2col */
}
