/* The backend interface: one table of function pointers plus an opaque context.
 *
 * The engine never touches activation memory directly: it allocates buffers through
 * the backend, moves f32 data in and out with upload/download, and runs the ops below.
 * Buffers hold the backend's activation type (f32 on the CPU, may be bf16 on a GPU);
 * `act_size` is its size in bytes, used for offsets (vdit_buf_at).
 *
 * Kernels are flat: outputs first, shapes last. Matrices are row-major; `ld*` are row
 * strides in elements. Ops do not return errors: a backend records its first failure
 * and reports it from `sync` (as CUDA reports asynchronous errors).
 *
 * Every GPU op has a CPU op of the same contract in engine/cpu, which is the reference
 * the GPU tests compare against.
 */
#ifndef VDIT_BACKEND_H
#define VDIT_BACKEND_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  VDIT_ELEM_ACT, /* the backend's activation type */
  VDIT_ELEM_F32,
  VDIT_ELEM_I32,
  VDIT_ELEM_BF16, /* upload only: host bf16 bits (a model's stored weights) into an ACT
                   * buffer, copied as they are where ACT is bf16 */
} VditElem;

typedef enum {
  VDIT_ACT_NONE,
  VDIT_ACT_GELU_TANH,
  VDIT_ACT_SILU,
} VditActivation;

/* Block-sparse attention layout, host side (CSR over query blocks).
 * For head h and query block i, the kept key blocks are
 * cols[row_ptr[h·(n_qblocks+1) + i] .. row_ptr[h·(n_qblocks+1) + i + 1]), ascending.
 * n_heads == 1 means the same layout for every head. The last query/key block may be
 * shorter than the block size (ragged). */
typedef struct {
  int block_q, block_k;   /* tokens per block */
  int n_q, n_k;           /* tokens */
  int n_qblocks, n_kblocks;
  int n_heads;            /* 1 or the attention's head count */
  const int32_t *row_ptr; /* (n_heads, n_qblocks + 1) */
  const int32_t *cols;    /* (row_ptr[last]) */
} vdit_block_layout;

/* One sampler step as per-element arithmetic on f32 with scalars computed on the host
 * (engine/sampler_update.h holds the expressions; vdit_sampler_get_update fills this).
 * c[] by kind:
 *   FLOW:          x + c0·m                                       (c0 = dt)
 *   DDIM_V:        x0 = c0·x − c1·m, ε = c0·m + c1·x; c2·x0 + c3·ε  (√ᾱ, √(1−ᾱ), prev)
 *   DDIM_EPS:      x0 = (x − c1·m)/c0;               c2·x0 + c3·m
 *   ANCESTRAL_V:   x0 = m·c0 + x·c1; x + (x − x0)/c2·c3 [+ noise·c4]
 *   ANCESTRAL_EPS: x0 = x − c2·m;    x + (x − x0)/c2·c3 [+ noise·c4] */
typedef enum {
  VDIT_UPDATE_FLOW,
  VDIT_UPDATE_DDIM_V,
  VDIT_UPDATE_DDIM_EPS,
  VDIT_UPDATE_ANCESTRAL_V,
  VDIT_UPDATE_ANCESTRAL_EPS,
} VditUpdateKind;

typedef struct {
  VditUpdateKind kind;
  float c[5];
} vdit_sampler_update;

typedef struct vdit_backend_i vdit_backend_i;

typedef struct {
  const vdit_backend_i *iface;
  void *context;
  size_t act_size; /* bytes per VDIT_ELEM_ACT element */
} vdit_backend;

struct vdit_backend_i {
  const char *name; /* "cpu", "cuda" */
  void (*free) (void *ctx);

  /* memory ----------------------------------------------------------------------- */
  /* n elements of type elem; NULL with VDIT_ERROR_OUT_OF_MEMORY (numbers in message). */
  void *(*alloc) (void *ctx, size_t n, VditElem elem, GError **error);
  void (*release) (void *ctx, void *buf);
  /* host f32/i32 <-> buffer (converting to/from the activation type for ACT; upload also
   * takes BF16 into an ACT buffer). */
  gboolean (*upload) (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error);
  gboolean (*download) (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error);
  /* waits for queued work; returns the first recorded failure. */
  gboolean (*sync) (void *ctx, GError **error);

  /* linear algebra ---------------------------------------------------------------- */
  /* out(m, n) = act(in(m, k) · w(n, k)ᵀ + bias(n)); bias may be NULL. If accumulate,
   * out += result (then act must be NONE). ldo/ldi are row strides of out and in. */
  void (*matmul) (void *ctx, void *out, int ldo, const void *in, int ldi, const void *w,
                  const void *bias, int m, int n, int k, VditActivation act, gboolean accumulate);

  /* normalisation ----------------------------------------------------------------- */
  /* out = x / sqrt(mean(x²) + eps) · w, per row of d. */
  void (*rmsnorm) (void *ctx, void *out, const void *x, const void *w, int m, int d, float eps);
  /* out = LN(x)·(1 + scale) + shift, LN without affine; shift/scale are (d) vectors
   * shared by all rows. */
  void (*layernorm_modulate) (void *ctx, void *out, const void *x, const void *shift,
                              const void *scale, int m, int d, float eps);

  /* elementwise ------------------------------------------------------------------- */
  /* x(m, d) += gate(d) ⊙ h(m, d); gate NULL = plain add, h NULL = gate added to each row. */
  void (*add_gated) (void *ctx, void *x, const void *h, const void *gate, int m, int d);
  /* out(n) = a(n) ⊙ b(n) */
  void (*mul) (void *ctx, void *out, const void *a, const void *b, size_t n);
  /* out(n) = a(n) + b(n) */
  void (*add) (void *ctx, void *out, const void *a, const void *b, size_t n);
  /* out(n) = act(in(n)); in-place allowed */
  void (*activate) (void *ctx, void *out, const void *in, size_t n, VditActivation act);
  /* Rotate-half RoPE in place on x(n, ld) for `heads` heads of head_dim, each head
   * split into n_chunks chunks rotated independently; cos/sin (n, head_dim/2) f32
   * buffers give the angle of pair j (chunk j / (chunk/2), pair within chunk). */
  void (*rope) (void *ctx, void *x, int ld, const float *cos_t, const float *sin_t, int n,
                int heads, int head_dim, int n_chunks);

  /* attention --------------------------------------------------------------------- */
  /* out(nq, heads·hd) = softmax(q·kᵀ·scale + bias) · v, per head; q(nq, ·) rows of
   * stride ldq with head h at columns [h·hd, (h+1)·hd), likewise k, v (nk rows), out.
   * bias: NULL or an ACT buffer (heads, nq, nk) added to the scores.
   * layout: NULL = dense, else a layout made by layout_new; skipped blocks cost nothing.
   * lse: NULL or an F32 buffer (heads, nq) receiving each row's log-sum-exp of the
   * (scaled, biased, kept) scores. Query rows with no kept key get zeros and lse -inf. */
  void (*attention) (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k,
                     int ldk, const void *v, int ldv, int nq, int nk, int heads, int head_dim,
                     float scale, const void *bias, const void *layout, float *lse);
  /* Copies a host layout into whatever form the backend's kernel reads. */
  void *(*layout_new) (void *ctx, const vdit_block_layout *layout, GError **error);
  void (*layout_free) (void *ctx, void *layout);
  /* Optional (NULL-checked): AdaSpa block scores. scores(heads, n_qblocks, n_kblocks)
   * F32 = Σ over the block's rows and columns of exp(q·kᵀ·scale − lse[row]), i.e. the
   * attention mass of each block under the cached LSE. */
  void (*block_scores) (void *ctx, float *scores, const void *q, int ldq, const void *k,
                        int ldk, const float *lse, int nq, int nk, int heads, int head_dim,
                        float scale, int block_q, int block_k);
  /* Optional (NULL-checked): dense attention (no bias, no layout; lse required) that
   * also leaves block_scores' scores (heads, ceil(n/block), ceil(n/block)) for square
   * blocks under that lse: attention followed by block_scores, which the backend may do
   * in one pass over the keys. */
  void (*attention_scored) (void *ctx, void *out, int ldo, const void *q, int ldq,
                            const void *k, int ldk, const void *v, int ldv, int n, int heads,
                            int head_dim, float scale, float *lse, float *scores, int block);
  /* Optional (NULL-checked): AdaSpa's pattern, chosen as vdit_adaptive_select chooses it,
   * from scores (heads, n_qblocks, n_kblocks) F32 that block_scores left on the backend,
   * straight into a layout for attention (free with layout_free). keep (heads) and the
   * kept fraction (*density) come back on the host. Returns NULL with error unset when
   * the backend does not handle these sizes; the caller then chooses on the host. */
  void *(*adaptive_layout) (void *ctx, const float *scores, int heads, int n_q, int n_k,
                            int block_q, int block_k, float sparsity, int *keep,
                            double *density, GError **error);

  /* the ends of a forward ---------------------------------------------------------- */
  /* Sinusoidal timestep embedding into out(n, freq_dim) ACT: row r is [cos(τ_r·f_i),
   * sin(τ_r·f_i)] for i < half = freq_dim/2, f_i = exp(−ln(10000)·i/half), computed in
   * double and rounded once (docs/model-format.md). timesteps: n host values, read
   * before the call returns, like the scalar arguments (no upload). */
  void (*timestep_embedding) (void *ctx, void *out, const float *timesteps, int n,
                              int freq_dim);
  /* 8-bit RGB of video frames [frame0, frame0 + frames) into rgb (frames, height, width,
   * 3): host memory, written asynchronously (valid after sync; keep it until then).
   * src (F32 or ACT) holds the 3-channel latent as tokens in unpatchify order (grid
   * t, y, x of patch cells; a token's values ordered dt, dy, dx, c); patch {1, 1, 1} is
   * the plain latent (T, H, W, 3). Bytes are vdit_rgb_byte's (decoder.h). */
  void (*decode_rgb) (void *ctx, uint8_t *rgb, const void *src, VditElem elem, int frame0,
                      int frames, int height, int width, const int patch[3]);
  /* Optional (NULL-checked): page-locked host memory, which device-to-host copies fill
   * asynchronously at full speed (decode_rgb's destination for a latent that lives on
   * the device). NULL where buffers already are host memory (CPU). */
  void *(*host_alloc) (void *ctx, size_t bytes, GError **error);
  void (*host_free) (void *ctx, void *p);

  /* Optional (NULL-checked): bytes the backend could still allocate (free device memory
   * plus blocks its memory pool holds unused) and its total; FALSE when unknown. NULL
   * where buffers are host memory. */
  gboolean (*mem_info) (void *ctx, size_t *available, size_t *total);

  /* Optional (NULL-checked): marks in the backend's queue, to time ops that finish after
   * they return (backend_timing.h). mark_new queues one behind the work queued so far
   * (NULL when it cannot); mark_elapsed_ms gives the milliseconds between two marks once
   * both have passed (after sync), negative when unknown; mark_free releases one. NULL
   * where an op is done when it returns: the host clock times it. */
  void *(*mark_new) (void *ctx);
  double (*mark_elapsed_ms) (void *ctx, void *start, void *end);
  void (*mark_free) (void *ctx, void *mark);
  /* Optional (NULL-checked): the most bytes of backend memory in use at one time since
   * the backend was made or last reset; reset starts again from what is in use now. */
  gboolean (*mem_peak) (void *ctx, gboolean reset, size_t *peak);

  /* Optional (NULL-checked): the CausalVideoVAE decoder's layers on F32 buffers holding
   * one clip as (C, T, H, W), weights F32 buffers too; the host ops of engine/vae_ops.h
   * are their reference. NULL: the VAE decodes with those host ops (vae_decoder.h). */
  /* out (cout, T, H, W) = causal conv3d(in (cin, T, H, W)) + b, w (cout, cin, kt, kh,
   * kw), stride 1; out += that when accumulate (a residual). */
  void (*vae_conv3d) (void *ctx, float *out, const float *in, const float *w, const float *b,
                      int cout, int cin, int kt, int kh, int kw, int T, int H, int W,
                      gboolean accumulate);
  /* out = GroupNorm(32 groups, eps 1e-6)(x)·gamma + beta over c channels of per_channel
   * values each, then SiLU when silu; out may be x. */
  void (*vae_group_norm) (void *ctx, float *out, const float *x, const float *gamma,
                          const float *beta, int c, size_t per_channel, gboolean silu);
  /* out (C, T', 2H, 2W): nearest ×2 in space (T' = T), or when temporal the trilinear
   * ×(1, 2, 2) / ×(2, 2, 2) of vdit_vae_upsample_s2t2 (T' = 1 + 2(T − 1)). */
  void (*vae_upsample) (void *ctx, float *out, const float *in, int C, int T, int H, int W,
                        gboolean temporal);
  /* vdit_vae_frame_attention: single-head attention within each of T frames of HW pixels. */
  void (*vae_frame_attention) (void *ctx, float *out, const float *q, const float *k,
                               const float *v, int C, int T, int HW);

  /* Optional (NULL-checked, all four or none): the sampler on the backend, so the latent
   * (T, H, W, C), an F32 buffer, stays there from noise to decoded frames. NULL: the
   * latent lives on the host and the sampler runs there (generate.c). */
  /* tokens (ACT, (tokens, C·P), patchify order) = the patches of scale · latent
   * (vdit_patchify's layout), each product rounded to f32 before the conversion to ACT. */
  void (*patchify) (void *ctx, void *tokens, const float *latent, float scale, int T, int H,
                    int W, int C, const int patch[3]);
  /* latent F32 (T, H, W, C) = tokens ACT (tokens, P·C) in unpatchify order. */
  void (*unpatchify) (void *ctx, float *latent, const void *tokens, int T, int H, int W,
                      int C, const int patch[3]);
  /* x(n) ← u's update of x by the model output m, F32 buffers; m = uncond + guidance ·
   * (cond − uncond), rounded to f32, or cond itself when uncond is NULL; noise NULL or
   * F32 (n). The host sampler's results bit for bit. */
  void (*sampler_update) (void *ctx, float *x, const float *cond, const float *uncond,
                          float guidance, const float *noise, const vdit_sampler_update *u,
                          size_t n);
  /* *finite = no NaN or ±inf in x(n) F32; waits for the queued work first. */
  gboolean (*all_finite) (void *ctx, const float *x, size_t n, gboolean *finite,
                          GError **error);
  /* Optional (NULL-checked): timestep_embedding reading its n timesteps from an F32
   * buffer on the backend instead of host values, so a replayed graph sees new ones. */
  void (*timestep_embedding_buf) (void *ctx, void *out, const float *timesteps, int n,
                                  int freq_dim);

  /* Optional (NULL-checked, all three or none): work queued on the backend recorded once
   * and replayed (CUDA graphs). graph_begin starts recording (FALSE: cannot, nothing
   * changed); until graph_end, ops are recorded, not run, and must not wait for the
   * device, allocate or be new to the backend (first runs may tune or allocate).
   * graph_end stops recording and returns the replayable graph, or NULL when recording
   * failed (a debug message says why; nothing was run, no error is kept): the caller
   * then queues the same work again normally. graph_launch queues a replay. */
  gboolean (*graph_begin) (void *ctx);
  void *(*graph_end) (void *ctx);
  void (*graph_launch) (void *ctx, void *graph);
  void (*graph_free) (void *ctx, void *graph);

  /* Optional (NULL-checked): rows × cols ACT elements from src (row stride lds) into dst
   * (row stride ldd), queued as any op. Sequence parallelism packs and unpacks each
   * rank's heads with it where the communicator takes the backend's buffers directly. */
  void (*copy_rows) (void *ctx, void *dst, int ldd, const void *src, int lds, int rows,
                     int cols);

  /* Optional (NULL-checked): which methods vae_conv3d ran on since the last reset, one bit
   * (1 << VditVaeConvMethod) each: what a benchmark reports, since a method that cannot
   * run (cuDNN not found) falls back to another. */
  unsigned (*vae_conv_ran) (void *ctx, gboolean reset);
};

static inline void *
vdit_buf_at (const vdit_backend *be, void *buf, size_t offset)
{
  return (char *) buf + offset * be->act_size;
}

/* Backend constructors. vdit_backend_cuda_new fails with VDIT_ERROR_NO_DEVICE when the
 * engine was built without CUDA or no GPU is present. */
/* threads: 0 = the CPUs this process may use (affinity, cgroup quota, physical cores);
 * otherwise 1 to 4 per such CPU (vdit_cpu_threads_check). */
gboolean vdit_backend_cpu_init (vdit_backend *be, int threads, GError **error);
gboolean vdit_cpu_threads_check (int threads, GError **error);
/* Once *flag is non-zero, the CPU backend's ops skip the parts of their work not yet
 * begun (a long op then ends within one task, milliseconds) and leave their outputs
 * undefined: the caller looks at the flag after them and throws the results away. The
 * model's ops (GEMMs, norms, elementwise, attention) issued after that do nothing, small
 * ones on the caller's thread included, so none reads what a skipped one never wrote. */
void vdit_backend_cpu_set_cancel (vdit_backend *be, const gint *flag);
gboolean vdit_backend_cuda_init (vdit_backend *be, int device_id, GError **error);

/* A size for a message about memory: "512 bytes", "10.8 MiB", "3.2 GiB" (binary units,
 * GiB from 1 GiB up, plain spaces). Free with g_free. */
char *vdit_size_text (double bytes);

/* Fault injection for tests, process-wide and for every backend: the n-th allocation
 * from now (alloc, and the CUDA backend's own scratch) fails as out of memory, once;
 * n = 0 disarms. Returns the count left from the previous call (so arming with a large
 * n, running, and disarming tells how many allocations were made). */
int vdit_fault_alloc_fail_in (int n);
/* For backends: TRUE when the allocation being made is the one to fail. */
gboolean vdit_fault_alloc_now (void);
/* Test limit of the CUDA backends: their allocations fail as cudaErrorMemoryAllocation
 * once the process's CUDA backends would hold more than `bytes` in all (0: no limit).
 * Unlike a smaller device, the limit is not seen by mem_info, so requests pass the check
 * before a generation and fail part-way, as when another process takes the memory in
 * between. The environment's VDIT_CUDA_ALLOC_LIMIT=<bytes> sets it at the first
 * allocation. No effect without CUDA. */
void vdit_cuda_set_alloc_limit (guint64 bytes);

static inline void
vdit_backend_free (vdit_backend *be)
{
  if (be->iface && be->iface->free)
    be->iface->free (be->context);
  be->iface = NULL;
  be->context = NULL;
}

G_END_DECLS

#endif /* VDIT_BACKEND_H */
