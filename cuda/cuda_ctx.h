/* The CUDA backend's context and its error model, shared by the host-side C files.
 *
 * Ops return nothing (engine/backend.h): every CUDA, cuBLAS and launch failure is logged
 * with file, line and the failing call, and the first one is kept; `sync` reports it.
 * After a failure later ops still run (CUDA reports most errors asynchronously anyway);
 * nothing in here exits. */
#ifndef VDIT_CUDA_CTX_H
#define VDIT_CUDA_CTX_H

#include <cuda_runtime_api.h>
#include <glib.h>

#include "cublas_dl.h"

#include "backend.h"

G_BEGIN_DECLS

typedef struct {
  int device;
  int n_sm;
  cudaStream_t stream;
  cublasLtHandle_t lt;
  cublasHandle_t blas;
  void *lt_workspace; /* cuBLASLt scratch */
  size_t lt_workspace_size;
  GHashTable *lt_algos; /* matmul shape -> cuBLASLt plan (or none: use cuBLAS) */
  GMutex lt_lock;
  void *dnn;             /* cudnnHandle_t: made by the first cuDNN convolution */
  gboolean dnn_failed;   /* cuDNN could not be loaded or started: im2col + cuBLAS */
  GHashTable *dnn_plans; /* convolution shape -> cuDNN algorithm and workspace */
  GMutex dnn_lock;
  guint vae_conv_ran;    /* 1 << VditVaeConvMethod for each method a convolution ran on */
  float *staging;     /* device f32 scratch for upload/download conversion */
  size_t staging_n;   /* elements */
  GMutex io_lock;     /* staging is shared by upload and download */
  GMutex error_lock;
  GError *first_error; /* first recorded failure, reported (and cleared) by sync */
  /* between graph_begin and graph_end (cuda_graph.c): failures spoil the recording
   * instead of being kept for sync, and sync does not wait */
  gboolean capturing;
  gboolean capture_failed;
} vdit_cuda_ctx;

/* Records a failure (the first one is kept) and logs it. Thread-safe. */
void vdit_cuda_record (vdit_cuda_ctx *c, const char *file, int line, const char *call,
                       const char *what);
/* Records e (taken) as the context's failure unless one is kept already. Thread-safe. */
void vdit_cuda_record_error (vdit_cuda_ctx *c, GError *e);
/* Makes c's device current in the calling thread (ops may come from any thread). */
gboolean vdit_cuda_enter (vdit_cuda_ctx *c);

/* Evaluates a cudaError_t expression; on failure records "file:line: call: error". */
#define VDIT_CUDA_CHECK(c, call)                                                            \
  vdit_cuda_check_impl ((c), (call), __FILE__, __LINE__, #call)
/* The same for cublasStatus_t expressions (cuBLAS and cuBLASLt). */
#define VDIT_CUBLAS_CHECK(c, call)                                                          \
  vdit_cublas_check_impl ((c), (call), __FILE__, __LINE__, #call)

static inline gboolean
vdit_cuda_check_impl (vdit_cuda_ctx *c, cudaError_t err, const char *file, int line,
                      const char *call)
{
  if (G_LIKELY (err == cudaSuccess))
    return TRUE;
  vdit_cuda_record (c, file, line, call, cudaGetErrorString (err));
  return FALSE;
}

static inline gboolean
vdit_cublas_check_impl (vdit_cuda_ctx *c, cublasStatus_t st, const char *file, int line,
                        const char *call)
{
  if (G_LIKELY (st == CUBLAS_STATUS_SUCCESS))
    return TRUE;
  vdit_cuda_record (c, file, line, call, cublasGetStatusString (st));
  return FALSE;
}

/* Device memory (cuda_mem.c): every device allocation goes through these, so that what
 * the process's contexts hold is known, the test faults apply and running out of memory
 * says how much was asked and free (VDIT_ERROR_OUT_OF_MEMORY; `what` names the use). */
/* Stream-ordered on c's stream, retried once after the pool hands its unused blocks back. */
void *vdit_cuda_mem_alloc (vdit_cuda_ctx *c, size_t bytes, const char *what, GError **error);
/* The same for ops, which return nothing: a failure is recorded for sync. */
void *vdit_cuda_mem_scratch (vdit_cuda_ctx *c, size_t bytes, const char *what);
void vdit_cuda_mem_free (vdit_cuda_ctx *c, void *p); /* stream-ordered */
/* A context's buffers for its whole life (cudaMalloc / cudaFree). */
void *vdit_cuda_mem_alloc_fixed (vdit_cuda_ctx *c, size_t bytes, const char *what,
                                 GError **error);
void vdit_cuda_mem_free_fixed (vdit_cuda_ctx *c, void *p);

/* The table of cuBLASLt plans, one per matmul shape (cuda_matmul.c). */
GHashTable *vdit_cuda_matmul_plans_new (void);

/* Backend slots implemented outside backend_cuda.c. */
void vdit_cuda_matmul (void *ctx, void *out, int ldo, const void *in, int ldi, const void *w,
                       const void *bias, int m, int n, int k, VditActivation act,
                       gboolean accumulate);
void *vdit_cuda_layout_new (void *ctx, const vdit_block_layout *layout, GError **error);
void vdit_cuda_layout_free (void *ctx, void *layout);
/* The adaptive_layout slot: AdaSpa's choice made on the device (adaspa_select.cu). */
void *vdit_cuda_adaptive_layout (void *ctx, const float *scores, int heads, int n_q, int n_k,
                                 int block_q, int block_k, float sparsity, int *keep,
                                 double *density, GError **error);
void vdit_cuda_attention (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k,
                          int ldk, const void *v, int ldv, int nq, int nk, int heads,
                          int head_dim, float scale, const void *bias, const void *layout,
                          float *lse);
void vdit_cuda_block_scores (void *ctx, float *scores, const void *q, int ldq, const void *k,
                             int ldk, const float *lse, int nq, int nk, int heads,
                             int head_dim, float scale, int block_q, int block_k);
/* The sampler's slots (cuda_sampler.c). */
void vdit_cuda_patchify_op (void *ctx, void *tokens, const float *latent, float scale, int T,
                            int H, int W, int C, const int patch[3]);
void vdit_cuda_unpatchify_op (void *ctx, float *latent, const void *tokens, int T, int H,
                              int W, int C, const int patch[3]);
void vdit_cuda_sampler_update_op (void *ctx, float *x, const float *cond, const float *uncond,
                                  float guidance, const float *noise,
                                  const vdit_sampler_update *u, size_t n);
gboolean vdit_cuda_all_finite_op (void *ctx, const float *x, size_t n, gboolean *finite,
                                  GError **error);
void vdit_cuda_timestep_embedding_buf_op (void *ctx, void *out, const float *timesteps, int n,
                                          int freq_dim);
/* Graphs of the stream's work (cuda_graph.c). */
gboolean vdit_cuda_graph_begin (void *ctx);
void *vdit_cuda_graph_end (void *ctx);
void vdit_cuda_graph_launch (void *ctx, void *graph);
void vdit_cuda_graph_free (void *ctx, void *graph);
/* Moves the first recorded failure into error (and clears it); TRUE when none. */
gboolean vdit_cuda_take_error (vdit_cuda_ctx *c, GError **error);

/* The CausalVideoVAE decoder's slots, f32 (vae_cuda.c). */
void vdit_cuda_vae_conv3d_op (void *ctx, float *out, const float *in, const float *w,
                              const float *b, int cout, int cin, int kt, int kh, int kw,
                              int T, int H, int W, gboolean accumulate);
void vdit_cuda_vae_group_norm_op (void *ctx, float *out, const float *x, const float *gamma,
                                  const float *beta, int c, size_t per_channel, gboolean silu);
void vdit_cuda_vae_upsample_op (void *ctx, float *out, const float *in, int C, int T, int H,
                                int W, gboolean temporal);
void vdit_cuda_vae_frame_attention_op (void *ctx, float *out, const float *q, const float *k,
                                       const float *v, int C, int T, int HW);

G_END_DECLS

#endif
