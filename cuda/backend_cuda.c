/* The CUDA backend: context, memory, transfers, errors and the backend table.
 * Activations are bf16 (act_size 2) with f32 arithmetic inside every kernel; LSE and
 * RoPE tables are f32. Everything is queued on one stream per context; `sync` waits for
 * it and reports the first failure recorded since the last sync. */
#include <string.h>

#include "attention.h"
#include "cuda_ctx.h"
#include "cuda_io.h"
#include "ops.h"
#include "vdit.h"
#ifdef VDIT_HAVE_CUDNN
#include "vae_conv_cudnn.h"
#endif

#define LT_WORKSPACE_BYTES ((size_t) 32 << 20)
#define STAGING_ELEMS ((size_t) 8 << 20) /* f32 elements per upload/download chunk */

/* errors ------------------------------------------------------------------------------ */

void
vdit_cuda_record (vdit_cuda_ctx *c, const char *file, int line, const char *call,
                  const char *what)
{
  g_mutex_lock (&c->error_lock);
  if (c->capturing) { /* it spoils the recording only: the work is queued again */
    c->capture_failed = TRUE;
    g_mutex_unlock (&c->error_lock);
    g_debug ("CUDA graphs: %s:%d: %s failed while recording: %s", file, line, call, what);
    return;
  }
  g_mutex_unlock (&c->error_lock);
  g_warning ("CUDA: %s:%d: %s failed: %s", file, line, call, what);
  g_mutex_lock (&c->error_lock);
  if (c->first_error == NULL)
    c->first_error = g_error_new (VDIT_ERROR, VDIT_ERROR_BACKEND,
                                  "CUDA device %d: %s failed: %s (%s:%d)", c->device, call,
                                  what, file, line);
  g_mutex_unlock (&c->error_lock);
}

gboolean
vdit_cuda_enter (vdit_cuda_ctx *c)
{
  int cur = -1;
  if (cudaGetDevice (&cur) == cudaSuccess && cur == c->device)
    return TRUE;
  return VDIT_CUDA_CHECK (c, cudaSetDevice (c->device));
}

void
vdit_cuda_record_error (vdit_cuda_ctx *c, GError *e)
{
  g_mutex_lock (&c->error_lock);
  if (c->capturing) { /* as vdit_cuda_record: the recording is spoiled, the work queued again */
    c->capture_failed = TRUE;
    g_mutex_unlock (&c->error_lock);
    g_debug ("CUDA graphs: failed while recording: %s", e->message);
    g_error_free (e);
    return;
  }
  g_mutex_unlock (&c->error_lock);
  /* a debug line, not a warning: the error itself reaches the caller through sync (an
   * element posts it), and out of memory is an outcome a caller may plan for */
  g_debug ("CUDA: %s", e->message);
  g_mutex_lock (&c->error_lock);
  if (c->first_error == NULL)
    c->first_error = e;
  else
    g_error_free (e);
  g_mutex_unlock (&c->error_lock);
}

/* Moves the first recorded failure into error (and clears it). */
gboolean
vdit_cuda_take_error (vdit_cuda_ctx *c, GError **error)
{
  g_mutex_lock (&c->error_lock);
  GError *e = c->first_error;
  c->first_error = NULL;
  g_mutex_unlock (&c->error_lock);
  if (e == NULL)
    return TRUE;
  g_propagate_error (error, e);
  return FALSE;
}

#define take_error vdit_cuda_take_error

static gboolean
cuda_sync (void *ctx, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  /* while recording a graph nothing runs: there is nothing to wait for (a cancel looks
   * here between blocks), and waiting would spoil the recording */
  g_mutex_lock (&c->error_lock);
  const gboolean capturing = c->capturing;
  g_mutex_unlock (&c->error_lock);
  if (!capturing && vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream));
  return take_error (c, error);
}

/* memory ------------------------------------------------------------------------------ */

static size_t
elem_size (vdit_cuda_ctx *c, VditElem elem)
{
  return elem == VDIT_ELEM_ACT || elem == VDIT_ELEM_BF16 ? 2 : 4;
}

static void *
cuda_alloc (void *ctx, size_t n, VditElem elem, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  return vdit_cuda_mem_alloc (c, MAX (n, 1) * elem_size (c, elem), "a buffer", error);
}

/* Free device memory, plus what the stream-ordered pool keeps unused (freed blocks stay
 * reserved for the next generation, so cudaMemGetInfo alone would under-count). */
static gboolean
cuda_mem_info (void *ctx, size_t *available, size_t *total)
{
  vdit_cuda_ctx *c = ctx;
  size_t free_b = 0, total_b = 0;
  if (!vdit_cuda_enter (c) || cudaMemGetInfo (&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError ();
    return FALSE;
  }
  cudaMemPool_t pool;
  uint64_t reserved = 0, used = 0;
  if (cudaDeviceGetDefaultMemPool (&pool, c->device) == cudaSuccess &&
      cudaMemPoolGetAttribute (pool, cudaMemPoolAttrReservedMemCurrent, &reserved) == cudaSuccess &&
      cudaMemPoolGetAttribute (pool, cudaMemPoolAttrUsedMemCurrent, &used) == cudaSuccess &&
      reserved > used)
    free_b += (size_t) (reserved - used);
  cudaGetLastError ();
  *available = free_b;
  *total = total_b;
  return TRUE;
}

/* Timing marks (backend_timing.h): events recorded on the stream. */
static void *
cuda_mark_new (void *ctx)
{
  vdit_cuda_ctx *c = ctx;
  cudaEvent_t e = NULL;
  if (!vdit_cuda_enter (c) || cudaEventCreate (&e) != cudaSuccess) {
    cudaGetLastError ();
    return NULL;
  }
  if (cudaEventRecord (e, c->stream) != cudaSuccess) {
    cudaGetLastError ();
    cudaEventDestroy (e);
    return NULL;
  }
  return e;
}

static double
cuda_mark_elapsed_ms (void *ctx, void *start, void *end)
{
  float ms = -1.0f;
  if (!vdit_cuda_enter (ctx) ||
      cudaEventElapsedTime (&ms, (cudaEvent_t) start, (cudaEvent_t) end) != cudaSuccess) {
    cudaGetLastError ();
    return -1.0;
  }
  return ms;
}

static void
cuda_mark_free (void *ctx, void *mark)
{
  if (mark)
    cudaEventDestroy ((cudaEvent_t) mark);
}

static unsigned
cuda_vae_conv_ran (void *ctx, gboolean reset)
{
  vdit_cuda_ctx *c = ctx;
  return reset ? g_atomic_int_and (&c->vae_conv_ran, 0) : g_atomic_int_or (&c->vae_conv_ran, 0);
}

/* The stream-ordered pool's high-water mark of memory in use (weights, activations and
 * layouts all come from it) plus the two buffers made outside it (cuBLASLt workspace,
 * f32 staging): what PyTorch's max_memory_allocated counts on its side. */
static gboolean
cuda_mem_peak (void *ctx, gboolean reset, size_t *peak)
{
  vdit_cuda_ctx *c = ctx;
  cudaMemPool_t pool;
  uint64_t high = 0;
  if (!vdit_cuda_enter (c) || cudaDeviceGetDefaultMemPool (&pool, c->device) != cudaSuccess) {
    cudaGetLastError ();
    return FALSE;
  }
  if (reset) { /* the only value it takes: the mark restarts from what is in use */
    cudaStreamSynchronize (c->stream);
    cudaMemPoolSetAttribute (pool, cudaMemPoolAttrUsedMemHigh, &high);
  }
  if (cudaMemPoolGetAttribute (pool, cudaMemPoolAttrUsedMemHigh, &high) != cudaSuccess) {
    cudaGetLastError ();
    return FALSE;
  }
  *peak = (size_t) high + c->lt_workspace_size + c->staging_n * sizeof (float);
  return TRUE;
}

static void
cuda_release (void *ctx, void *buf)
{
  vdit_cuda_mem_free (ctx, buf);
}

/* Host <-> device. ACT goes through the f32 staging buffer and a conversion kernel,
 * in chunks; both directions return once the host memory may be reused. */
static gboolean
cuda_upload (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  if (n == 0)
    return TRUE;
  if (!vdit_cuda_enter (c))
    return take_error (c, error);
  if (elem != VDIT_ELEM_ACT) { /* F32, I32, or BF16 bits into a bf16 ACT buffer */
    VDIT_CUDA_CHECK (c, cudaMemcpyAsync (dst, src, n * (elem == VDIT_ELEM_BF16 ? 2 : 4),
                                         cudaMemcpyHostToDevice, c->stream));
  } else {
    g_mutex_lock (&c->io_lock);
    for (size_t off = 0; off < n; off += c->staging_n) {
      const size_t len = MIN (c->staging_n, n - off);
      if (!VDIT_CUDA_CHECK (c, cudaMemcpyAsync (c->staging, (const float *) src + off, len * 4,
                                                cudaMemcpyHostToDevice, c->stream)) ||
          !VDIT_CUDA_CHECK (c, vdit_cuda_f32_to_bf16 ((uint16_t *) dst + off, c->staging, len,
                                                      c->stream)))
        break;
    }
    g_mutex_unlock (&c->io_lock);
  }
  /* pageable copies may return before the DMA ends; the caller may free src next */
  VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream));
  return take_error (c, error);
}

static gboolean
cuda_download (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  if (n == 0)
    return TRUE;
  if (!vdit_cuda_enter (c))
    return take_error (c, error);
  if (elem != VDIT_ELEM_ACT) {
    VDIT_CUDA_CHECK (c, cudaMemcpyAsync (dst, src, n * 4, cudaMemcpyDeviceToHost, c->stream));
    VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream));
  } else {
    g_mutex_lock (&c->io_lock);
    for (size_t off = 0; off < n; off += c->staging_n) {
      const size_t len = MIN (c->staging_n, n - off);
      if (!VDIT_CUDA_CHECK (c, vdit_cuda_bf16_to_f32 (c->staging, (const uint16_t *) src + off,
                                                      len, c->stream)) ||
          !VDIT_CUDA_CHECK (c, cudaMemcpyAsync ((float *) dst + off, c->staging, len * 4,
                                                cudaMemcpyDeviceToHost, c->stream)) ||
          !VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream)))
        break;
    }
    g_mutex_unlock (&c->io_lock);
  }
  return take_error (c, error);
}

/* ops --------------------------------------------------------------------------------- */

#define ENTER(c)                                                                            \
  vdit_cuda_ctx *c = ctx;                                                                   \
  if (!vdit_cuda_enter (c))                                                                 \
  return

static void
cuda_rmsnorm (void *ctx, void *out, const void *x, const void *w, int m, int d, float eps)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_rmsnorm (out, x, w, m, d, eps, c->stream));
}

static void
cuda_layernorm_modulate (void *ctx, void *out, const void *x, const void *shift,
                         const void *scale, int m, int d, float eps)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_layernorm_modulate (out, x, shift, scale, m, d, eps, c->stream));
}

static void
cuda_add_gated (void *ctx, void *x, const void *h, const void *gate, int m, int d)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_add_gated (x, h, gate, m, d, c->stream));
}

static void
cuda_mul (void *ctx, void *out, const void *a, const void *b, size_t n)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_mul (out, a, b, n, c->stream));
}

static void
cuda_add (void *ctx, void *out, const void *a, const void *b, size_t n)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_add (out, a, b, n, c->stream));
}

/* bf16 rows: one 2D copy on the stream */
static void
cuda_copy_rows (void *ctx, void *dst, int ldd, const void *src, int lds, int rows, int cols)
{
  ENTER (c);
  if (rows > 0 && cols > 0)
    VDIT_CUDA_CHECK (c, cudaMemcpy2DAsync (dst, (size_t) ldd * 2, src, (size_t) lds * 2,
                                           (size_t) cols * 2, rows, cudaMemcpyDeviceToDevice,
                                           c->stream));
}

static void
cuda_activate (void *ctx, void *out, const void *in, size_t n, VditActivation act)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_activate (out, in, n, (int) act, c->stream));
}

static void
cuda_rope (void *ctx, void *x, int ld, const float *cos_t, const float *sin_t, int n, int heads,
           int head_dim, int n_chunks)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_rope (x, ld, cos_t, sin_t, n, heads, head_dim, n_chunks,
                                      c->stream));
}

void
vdit_cuda_attention (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k,
                     int ldk, const void *v, int ldv, int nq, int nk, int heads, int head_dim,
                     float scale, const void *bias, const void *layout, float *lse)
{
  ENTER (c);
  const vdit_cuda_attn_args a = {
    .out = out, .q = q, .k = k, .v = v, .bias = bias, .lse = lse,
    .ldo = ldo, .ldq = ldq, .ldk = ldk, .ldv = ldv,
    .nq = nq, .nk = nk, .heads = heads, .head_dim = head_dim, .scale = scale,
    .layout = layout,
  };
  VDIT_CUDA_CHECK (c, vdit_cuda_attention_launch (&a, c->stream));
}

void
vdit_cuda_block_scores (void *ctx, float *scores, const void *q, int ldq, const void *k,
                        int ldk, const float *lse, int nq, int nk, int heads, int head_dim,
                        float scale, int block_q, int block_k)
{
  ENTER (c);
  VDIT_CUDA_CHECK (c, vdit_cuda_block_scores_launch (scores, q, ldq, k, ldk, lse, nq, nk, heads,
                                                     head_dim, scale, block_q, block_k,
                                                     c->stream));
}

/* The per-row block sums' scratch: 4 GiB, or VDIT_CUDA_SCORE_SCRATCH_BYTES (heads go
 * in groups when all of theirs would not fit; one head's always does). */
static size_t
score_scratch_cap (void)
{
  const char *e = g_getenv ("VDIT_CUDA_SCORE_SCRATCH_BYTES");
  const guint64 v = e ? g_ascii_strtoull (e, NULL, 10) : 0;
  return v > 0 ? (size_t) v : (size_t) 4 << 30;
}

/* The scores from the attention's own exponentials where the fa3 kernel runs (64 × 64
 * blocks); elsewhere the two calls. */
static void
cuda_attention_scored (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k,
                       int ldk, const void *v, int ldv, int n, int heads, int head_dim,
                       float scale, float *lse, float *scores, int block)
{
  ENTER (c);
  const vdit_cuda_attn_args a = {
    .out = out, .q = q, .k = k, .v = v, .lse = lse,
    .ldo = ldo, .ldq = ldq, .ldk = ldk, .ldv = ldv,
    .nq = n, .nk = n, .heads = heads, .head_dim = head_dim, .scale = scale,
  };
  if (block == 64 && vdit_cuda_attention_scored_usable (&a)) {
    const size_t cap = score_scratch_cap () / sizeof (float);
    const size_t one = vdit_cuda_attention_scored_elems (&a, 1);
    const size_t elems = MAX (one, MIN (cap, vdit_cuda_attention_scored_elems (&a, heads)));
    GError *error = NULL;
    float *row_lse = vdit_cuda_mem_alloc (c, elems * sizeof (float),
                                          "the attention's per-row block sums", &error);
    if (row_lse) {
      const cudaError_t err = vdit_cuda_attention_scored_launch (&a, scores, row_lse, elems,
                                                                 c->stream);
      vdit_cuda_mem_free (c, row_lse);
      VDIT_CUDA_CHECK (c, err);
      return;
    }
    g_clear_error (&error); /* no room for the sums: the two calls below need none */
  }
  vdit_cuda_attention (ctx, out, ldo, q, ldq, k, ldk, v, ldv, n, n, heads, head_dim, scale,
                       NULL, NULL, lse);
  vdit_cuda_block_scores (ctx, scores, q, ldq, k, ldk, lse, n, n, heads, head_dim, scale,
                          block, block);
}

/* context ----------------------------------------------------------------------------- */

static void
cuda_free (void *ctx)
{
  vdit_cuda_ctx *c = ctx;
  if (c == NULL)
    return;
  if (cudaSetDevice (c->device) == cudaSuccess && c->stream)
    cudaStreamSynchronize (c->stream);
#ifdef VDIT_HAVE_CUDNN
  vdit_cuda_dnn_free (c);
#endif
  if (c->blas)
    cublasDestroy (c->blas);
  if (c->lt)
    cublasLtDestroy (c->lt);
  vdit_cuda_mem_free_fixed (c, c->lt_workspace);
  vdit_cuda_mem_free_fixed (c, c->staging);
  if (c->stream)
    cudaStreamDestroy (c->stream);
  cudaGetLastError ();
  if (c->first_error) {
    g_warning ("CUDA backend freed with an unreported error: %s", c->first_error->message);
    g_error_free (c->first_error);
  }
  g_mutex_clear (&c->error_lock);
  g_mutex_clear (&c->io_lock);
  g_mutex_clear (&c->lt_lock);
  g_mutex_clear (&c->dnn_lock);
  g_hash_table_unref (c->lt_algos);
  g_free (c);
}

static const vdit_backend_i cuda_iface = {
  /* .name = */ "cuda",
  /* .free = */ cuda_free,
  /* .alloc = */ cuda_alloc,
  /* .release = */ cuda_release,
  /* .upload = */ cuda_upload,
  /* .download = */ cuda_download,
  /* .sync = */ cuda_sync,
  /* .matmul = */ vdit_cuda_matmul,
  /* .rmsnorm = */ cuda_rmsnorm,
  /* .layernorm_modulate = */ cuda_layernorm_modulate,
  /* .add_gated = */ cuda_add_gated,
  /* .mul = */ cuda_mul,
  /* .add = */ cuda_add,
  /* .activate = */ cuda_activate,
  /* .rope = */ cuda_rope,
  /* .attention = */ vdit_cuda_attention,
  /* .layout_new = */ vdit_cuda_layout_new,
  /* .layout_free = */ vdit_cuda_layout_free,
  /* .block_scores = */ vdit_cuda_block_scores,
  /* .attention_scored = */ cuda_attention_scored,
  /* .adaptive_layout = */ vdit_cuda_adaptive_layout,
  /* .timestep_embedding = */ vdit_cuda_timestep_embedding_op,
  /* .decode_rgb = */ vdit_cuda_decode_rgb_op,
  /* .host_alloc = */ vdit_cuda_host_alloc,
  /* .host_free = */ vdit_cuda_host_free,
  /* .mem_info = */ cuda_mem_info,
  /* .mark_new = */ cuda_mark_new,
  /* .mark_elapsed_ms = */ cuda_mark_elapsed_ms,
  /* .mark_free = */ cuda_mark_free,
  /* .mem_peak = */ cuda_mem_peak,
  /* .vae_conv3d = */ vdit_cuda_vae_conv3d_op,
  /* .vae_group_norm = */ vdit_cuda_vae_group_norm_op,
  /* .vae_upsample = */ vdit_cuda_vae_upsample_op,
  /* .vae_frame_attention = */ vdit_cuda_vae_frame_attention_op,
  /* .patchify = */ vdit_cuda_patchify_op,
  /* .unpatchify = */ vdit_cuda_unpatchify_op,
  /* .sampler_update = */ vdit_cuda_sampler_update_op,
  /* .all_finite = */ vdit_cuda_all_finite_op,
  /* .timestep_embedding_buf = */ vdit_cuda_timestep_embedding_buf_op,
  /* .graph_begin = */ vdit_cuda_graph_begin,
  /* .graph_end = */ vdit_cuda_graph_end,
  /* .graph_launch = */ vdit_cuda_graph_launch,
  /* .graph_free = */ vdit_cuda_graph_free,
  /* .copy_rows = */ cuda_copy_rows,
  /* .vae_conv_ran = */ cuda_vae_conv_ran,
};

typedef struct {
  int n_devices;
  gboolean usable; /* device 0 is sm_80 or newer */
} probe_result;

static gpointer
probe (gpointer data)
{
  static probe_result r;
  int n = 0;
  /* without a driver this fails (insufficient driver / no device): not an error here */
  cudaError_t err = cudaGetDeviceCount (&n);
  if (err != cudaSuccess) {
    g_debug ("no CUDA device: %s", cudaGetErrorString (err));
    cudaGetLastError ();
    n = 0;
  }
  r.n_devices = n;
  if (n > 0) {
    int major = 0;
    cudaDeviceGetAttribute (&major, cudaDevAttrComputeCapabilityMajor, 0);
    r.usable = major >= 8;
  }
  return &r;
}

gboolean
vdit_cuda_available (int *n_devices)
{
  static GOnce once = G_ONCE_INIT;
  const probe_result *r = g_once (&once, probe, NULL);
  if (n_devices)
    *n_devices = r->n_devices;
  return r->usable;
}

gboolean
vdit_backend_cuda_init (vdit_backend *be, int device_id, GError **error)
{
  int n = 0;
  vdit_cuda_available (&n);
  if (device_id < 0)
    device_id = 0;
  if (n == 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "no CUDA device present (is the NVIDIA driver installed?)");
    return FALSE;
  }
  if (device_id >= n) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "CUDA device %d requested, but only %d present", device_id, n);
    return FALSE;
  }
  struct cudaDeviceProp prop;
  const cudaError_t perr = cudaGetDeviceProperties (&prop, device_id);
  if (perr != cudaSuccess) {
    cudaGetLastError ();
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE, "CUDA device %d: %s", device_id,
                 cudaGetErrorString (perr));
    return FALSE;
  }
  if (prop.major < 8) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "CUDA device %d (%s, compute capability %d.%d) is not supported: vdit needs "
                 "8.0 (Ampere) or newer",
                 device_id, prop.name, prop.major, prop.minor);
    return FALSE;
  }
  if (!vdit_cublas_load (error))
    return FALSE;

  vdit_cuda_ctx *c = g_new0 (vdit_cuda_ctx, 1);
  g_mutex_init (&c->error_lock);
  g_mutex_init (&c->io_lock);
  g_mutex_init (&c->lt_lock);
  g_mutex_init (&c->dnn_lock);
  c->lt_algos = vdit_cuda_matmul_plans_new ();
  c->device = device_id;
  c->n_sm = prop.multiProcessorCount;
  c->lt_workspace_size = LT_WORKSPACE_BYTES;
  c->staging_n = STAGING_ELEMS;
  gboolean ok = VDIT_CUDA_CHECK (c, cudaSetDevice (device_id)) &&
                VDIT_CUDA_CHECK (c, cudaStreamCreateWithFlags (&c->stream,
                                                               cudaStreamNonBlocking)) &&
                VDIT_CUBLAS_CHECK (c, cublasLtCreate (&c->lt)) &&
                VDIT_CUBLAS_CHECK (c, cublasCreate (&c->blas)) &&
                VDIT_CUBLAS_CHECK (c, cublasSetStream (c->blas, c->stream));
  GError *mem_error = NULL;
  ok = ok &&
       (c->lt_workspace = vdit_cuda_mem_alloc_fixed (c, c->lt_workspace_size,
                                                     "the cuBLASLt workspace", &mem_error)) &&
       (c->staging = vdit_cuda_mem_alloc_fixed (c, c->staging_n * sizeof (float),
                                                "the transfer buffer", &mem_error));
  if (mem_error)
    vdit_cuda_record_error (c, mem_error);
  if (ok) {
    /* keep freed blocks in the pool: the engine allocates per generation */
    cudaMemPool_t pool;
    uint64_t keep = UINT64_MAX;
    ok = VDIT_CUDA_CHECK (c, cudaDeviceGetDefaultMemPool (&pool, device_id)) &&
         VDIT_CUDA_CHECK (c, cudaMemPoolSetAttribute (pool, cudaMemPoolAttrReleaseThreshold,
                                                      &keep));
  }
  if (!ok) {
    take_error (c, error);
    cuda_free (c);
    return FALSE;
  }
  g_debug ("CUDA backend on device %d: %s, %d SMs, compute capability %d.%d", device_id,
           prop.name, prop.multiProcessorCount, prop.major, prop.minor);
  be->iface = &cuda_iface;
  be->context = c;
  be->act_size = 2;
  return TRUE;
}
