/* A timing table in front of a backend (backend_timing.h). Each op of the table below
 * calls the backend underneath between two marks: the backend's queue marks when it has
 * them, else the host clock around the call. Queue marks are read only at collect time,
 * after a sync, so timing adds no waits to the step it measures. */
#include "backend_timing.h"

#include "vdit.h"

typedef struct {
  VditOpKind kind;
  void *start, *end; /* queue marks, or NULL: host_ms holds the time */
  double host_ms;
} op_mark;

struct vdit_backend_timing {
  vdit_backend_i iface; /* this wrapper's table; name and optional slots follow inner's */
  const vdit_backend_i *inner;
  void *inner_ctx;
  GArray *marks; /* op_mark, in queue order */
  vdit_op_times times;
};

/* A slot added to vdit_backend_i needs a wrapper below: an unwrapped slot would hand the
 * wrapper's context to the backend underneath. */
G_STATIC_ASSERT (sizeof (vdit_backend_i) == 45 * sizeof (void *));

const char *
vdit_op_kind_name (VditOpKind kind)
{
  static const char *const names[VDIT_OP_KINDS] = { "gemm", "attention", "norm",
                                                    "elementwise", "transfer" };
  return kind < VDIT_OP_KINDS ? names[kind] : "unknown";
}

typedef struct {
  vdit_backend_timing *t;
  void *start;
  gint64 t0;
} op_timer;

static op_timer
op_begin (void *ctx)
{
  vdit_backend_timing *t = ctx;
  op_timer o = { t, NULL, 0 };
  if (t->inner->mark_new)
    o.start = t->inner->mark_new (t->inner_ctx);
  if (o.start == NULL)
    o.t0 = g_get_monotonic_time ();
  return o;
}

static void
op_end (op_timer o, VditOpKind kind)
{
  vdit_backend_timing *t = o.t;
  op_mark m = { kind, o.start, NULL, 0.0 };
  if (o.start) {
    m.end = t->inner->mark_new (t->inner_ctx);
    if (m.end == NULL) { /* out of marks: this op goes untimed rather than wrong */
      t->inner->mark_free (t->inner_ctx, o.start);
      return;
    }
  } else {
    m.host_ms = (g_get_monotonic_time () - o.t0) / 1000.0;
  }
  g_array_append_val (t->marks, m);
}

#define INNER(ctx) (((vdit_backend_timing *) (ctx))->inner)
#define INNER_CTX(ctx) (((vdit_backend_timing *) (ctx))->inner_ctx)

/* ---- pass-through: memory and queue ------------------------------------------------ */

static void *
w_alloc (void *ctx, size_t n, VditElem elem, GError **error)
{
  return INNER (ctx)->alloc (INNER_CTX (ctx), n, elem, error);
}

static void
w_release (void *ctx, void *buf)
{
  INNER (ctx)->release (INNER_CTX (ctx), buf);
}

static gboolean
w_sync (void *ctx, GError **error)
{
  return INNER (ctx)->sync (INNER_CTX (ctx), error);
}

static void *
w_layout_new (void *ctx, const vdit_block_layout *layout, GError **error)
{
  return INNER (ctx)->layout_new (INNER_CTX (ctx), layout, error);
}

static void
w_layout_free (void *ctx, void *layout)
{
  INNER (ctx)->layout_free (INNER_CTX (ctx), layout);
}

static void *
w_host_alloc (void *ctx, size_t bytes, GError **error)
{
  return INNER (ctx)->host_alloc (INNER_CTX (ctx), bytes, error);
}

static void
w_host_free (void *ctx, void *p)
{
  INNER (ctx)->host_free (INNER_CTX (ctx), p);
}

static gboolean
w_mem_info (void *ctx, size_t *available, size_t *total)
{
  return INNER (ctx)->mem_info (INNER_CTX (ctx), available, total);
}

static gboolean
w_mem_peak (void *ctx, gboolean reset, size_t *peak)
{
  return INNER (ctx)->mem_peak (INNER_CTX (ctx), reset, peak);
}

/* ---- timed ops --------------------------------------------------------------------- */

static gboolean
w_upload (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  op_timer o = op_begin (ctx);
  gboolean ok = INNER (ctx)->upload (INNER_CTX (ctx), dst, src, n, elem, error);
  op_end (o, VDIT_OP_TRANSFER);
  return ok;
}

static gboolean
w_download (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  op_timer o = op_begin (ctx);
  gboolean ok = INNER (ctx)->download (INNER_CTX (ctx), dst, src, n, elem, error);
  op_end (o, VDIT_OP_TRANSFER);
  return ok;
}

static void
w_matmul (void *ctx, void *out, int ldo, const void *in, int ldi, const void *w,
          const void *bias, int m, int n, int k, VditActivation act, gboolean accumulate)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->matmul (INNER_CTX (ctx), out, ldo, in, ldi, w, bias, m, n, k, act, accumulate);
  op_end (o, VDIT_OP_GEMM);
}

static void
w_rmsnorm (void *ctx, void *out, const void *x, const void *w, int m, int d, float eps)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->rmsnorm (INNER_CTX (ctx), out, x, w, m, d, eps);
  op_end (o, VDIT_OP_NORM);
}

static void
w_layernorm_modulate (void *ctx, void *out, const void *x, const void *shift,
                      const void *scale, int m, int d, float eps)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->layernorm_modulate (INNER_CTX (ctx), out, x, shift, scale, m, d, eps);
  op_end (o, VDIT_OP_NORM);
}

static void
w_add_gated (void *ctx, void *x, const void *h, const void *gate, int m, int d)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->add_gated (INNER_CTX (ctx), x, h, gate, m, d);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_mul (void *ctx, void *out, const void *a, const void *b, size_t n)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->mul (INNER_CTX (ctx), out, a, b, n);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_add (void *ctx, void *out, const void *a, const void *b, size_t n)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->add (INNER_CTX (ctx), out, a, b, n);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_activate (void *ctx, void *out, const void *in, size_t n, VditActivation act)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->activate (INNER_CTX (ctx), out, in, n, act);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_rope (void *ctx, void *x, int ld, const float *cos_t, const float *sin_t, int n, int heads,
        int head_dim, int n_chunks)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->rope (INNER_CTX (ctx), x, ld, cos_t, sin_t, n, heads, head_dim, n_chunks);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_attention (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k, int ldk,
             const void *v, int ldv, int nq, int nk, int heads, int head_dim, float scale,
             const void *bias, const void *layout, float *lse)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->attention (INNER_CTX (ctx), out, ldo, q, ldq, k, ldk, v, ldv, nq, nk, heads,
                          head_dim, scale, bias, layout, lse);
  op_end (o, VDIT_OP_ATTENTION);
}

static void
w_block_scores (void *ctx, float *scores, const void *q, int ldq, const void *k, int ldk,
                const float *lse, int nq, int nk, int heads, int head_dim, float scale,
                int block_q, int block_k)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->block_scores (INNER_CTX (ctx), scores, q, ldq, k, ldk, lse, nq, nk, heads,
                             head_dim, scale, block_q, block_k);
  op_end (o, VDIT_OP_ATTENTION);
}

static void
w_attention_scored (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k,
                    int ldk, const void *v, int ldv, int n, int heads, int head_dim, float scale,
                    float *lse, float *scores, int block)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->attention_scored (INNER_CTX (ctx), out, ldo, q, ldq, k, ldk, v, ldv, n, heads,
                                 head_dim, scale, lse, scores, block);
  op_end (o, VDIT_OP_ATTENTION);
}

static void *
w_adaptive_layout (void *ctx, const float *scores, int heads, int n_q, int n_k, int block_q,
                   int block_k, float sparsity, int *keep, double *density, GError **error)
{
  op_timer o = op_begin (ctx);
  void *layout = INNER (ctx)->adaptive_layout (INNER_CTX (ctx), scores, heads, n_q, n_k,
                                               block_q, block_k, sparsity, keep, density,
                                               error);
  op_end (o, VDIT_OP_ATTENTION);
  return layout;
}

static void
w_timestep_embedding (void *ctx, void *out, const float *timesteps, int n, int freq_dim)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->timestep_embedding (INNER_CTX (ctx), out, timesteps, n, freq_dim);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_decode_rgb (void *ctx, uint8_t *rgb, const void *src, VditElem elem, int frame0, int frames,
              int height, int width, const int patch[3])
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->decode_rgb (INNER_CTX (ctx), rgb, src, elem, frame0, frames, height, width,
                           patch);
  op_end (o, VDIT_OP_TRANSFER);
}

static void
w_vae_conv3d (void *ctx, float *out, const float *in, const float *w, const float *b, int cout,
              int cin, int kt, int kh, int kw, int T, int H, int W, gboolean accumulate)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->vae_conv3d (INNER_CTX (ctx), out, in, w, b, cout, cin, kt, kh, kw, T, H, W,
                           accumulate);
  op_end (o, VDIT_OP_GEMM);
}

static void
w_vae_group_norm (void *ctx, float *out, const float *x, const float *gamma, const float *beta,
                  int c, size_t per_channel, gboolean silu)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->vae_group_norm (INNER_CTX (ctx), out, x, gamma, beta, c, per_channel, silu);
  op_end (o, VDIT_OP_NORM);
}

static void
w_vae_upsample (void *ctx, float *out, const float *in, int C, int T, int H, int W,
                gboolean temporal)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->vae_upsample (INNER_CTX (ctx), out, in, C, T, H, W, temporal);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_vae_frame_attention (void *ctx, float *out, const float *q, const float *k, const float *v,
                       int C, int T, int HW)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->vae_frame_attention (INNER_CTX (ctx), out, q, k, v, C, T, HW);
  op_end (o, VDIT_OP_ATTENTION);
}

static void
w_patchify (void *ctx, void *tokens, const float *latent, float scale, int T, int H, int W,
            int C, const int patch[3])
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->patchify (INNER_CTX (ctx), tokens, latent, scale, T, H, W, C, patch);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_unpatchify (void *ctx, float *latent, const void *tokens, int T, int H, int W, int C,
              const int patch[3])
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->unpatchify (INNER_CTX (ctx), latent, tokens, T, H, W, C, patch);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static void
w_sampler_update (void *ctx, float *x, const float *cond, const float *uncond, float guidance,
                  const float *noise, const vdit_sampler_update *u, size_t n)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->sampler_update (INNER_CTX (ctx), x, cond, uncond, guidance, noise, u, n);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static gboolean
w_all_finite (void *ctx, const float *x, size_t n, gboolean *finite, GError **error)
{
  return INNER (ctx)->all_finite (INNER_CTX (ctx), x, n, finite, error);
}

static void
w_timestep_embedding_buf (void *ctx, void *out, const float *timesteps, int n, int freq_dim)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->timestep_embedding_buf (INNER_CTX (ctx), out, timesteps, n, freq_dim);
  op_end (o, VDIT_OP_ELEMENTWISE);
}

static unsigned
w_vae_conv_ran (void *ctx, gboolean reset)
{
  return INNER (ctx)->vae_conv_ran (INNER_CTX (ctx), reset);
}

static void
w_copy_rows (void *ctx, void *dst, int ldd, const void *src, int lds, int rows, int cols)
{
  op_timer o = op_begin (ctx);
  INNER (ctx)->copy_rows (INNER_CTX (ctx), dst, ldd, src, lds, rows, cols);
  op_end (o, VDIT_OP_TRANSFER);
}

/* ---- the wrapper ------------------------------------------------------------------- */

/* An optional slot stays NULL when the backend underneath leaves it NULL. */
#define OPT(slot, fn) (inner->slot ? (fn) : NULL)

vdit_backend_timing *
vdit_backend_timing_wrap (vdit_backend *be)
{
  const vdit_backend_i *inner = be->iface;
  vdit_backend_timing *t = g_new0 (vdit_backend_timing, 1);
  t->inner = inner;
  t->inner_ctx = be->context;
  t->marks = g_array_new (FALSE, FALSE, sizeof (op_mark));
  t->iface = (vdit_backend_i) {
    .name = inner->name,
    .free = NULL, /* unwrap, then free the backend underneath */
    .alloc = w_alloc,
    .release = w_release,
    .upload = w_upload,
    .download = w_download,
    .sync = w_sync,
    .matmul = w_matmul,
    .rmsnorm = w_rmsnorm,
    .layernorm_modulate = w_layernorm_modulate,
    .add_gated = w_add_gated,
    .mul = w_mul,
    .add = w_add,
    .activate = w_activate,
    .rope = w_rope,
    .attention = w_attention,
    .layout_new = w_layout_new,
    .layout_free = w_layout_free,
    .block_scores = OPT (block_scores, w_block_scores),
    .attention_scored = OPT (attention_scored, w_attention_scored),
    .adaptive_layout = OPT (adaptive_layout, w_adaptive_layout),
    .timestep_embedding = w_timestep_embedding,
    .decode_rgb = w_decode_rgb,
    .host_alloc = OPT (host_alloc, w_host_alloc),
    .host_free = OPT (host_free, w_host_free),
    .mem_info = OPT (mem_info, w_mem_info),
    .mark_new = NULL, /* timing a timed backend is not supported */
    .mark_elapsed_ms = NULL,
    .mark_free = NULL,
    .mem_peak = OPT (mem_peak, w_mem_peak),
    .vae_conv3d = OPT (vae_conv3d, w_vae_conv3d),
    .vae_group_norm = OPT (vae_group_norm, w_vae_group_norm),
    .vae_upsample = OPT (vae_upsample, w_vae_upsample),
    .vae_frame_attention = OPT (vae_frame_attention, w_vae_frame_attention),
    .patchify = OPT (patchify, w_patchify),
    .unpatchify = OPT (unpatchify, w_unpatchify),
    .sampler_update = OPT (sampler_update, w_sampler_update),
    .all_finite = OPT (all_finite, w_all_finite),
    .timestep_embedding_buf = OPT (timestep_embedding_buf, w_timestep_embedding_buf),
    .graph_begin = NULL, /* marks between replayed ops would time nothing: ops run one by one */
    .graph_end = NULL,
    .graph_launch = NULL,
    .graph_free = NULL,
    .copy_rows = OPT (copy_rows, w_copy_rows),
    .vae_conv_ran = OPT (vae_conv_ran, w_vae_conv_ran),
  };
  be->iface = &t->iface;
  be->context = t;
  return t;
}

/* Adds the finished marks' times and frees the queue marks. */
static void
drain_marks (vdit_backend_timing *t)
{
  for (guint i = 0; i < t->marks->len; i++) {
    op_mark *m = &g_array_index (t->marks, op_mark, i);
    double ms = m->host_ms;
    if (m->start) {
      ms = t->inner->mark_elapsed_ms (t->inner_ctx, m->start, m->end);
      t->inner->mark_free (t->inner_ctx, m->start);
      t->inner->mark_free (t->inner_ctx, m->end);
    }
    if (ms >= 0.0) {
      t->times.ms[m->kind] += ms;
      t->times.calls[m->kind]++;
    }
  }
  g_array_set_size (t->marks, 0);
}

gboolean
vdit_backend_timing_collect (vdit_backend_timing *t, vdit_op_times *times, GError **error)
{
  gboolean ok = t->inner->sync (t->inner_ctx, error);
  drain_marks (t);
  for (int k = 0; k < VDIT_OP_KINDS; k++) {
    times->ms[k] += t->times.ms[k];
    times->calls[k] += t->times.calls[k];
  }
  t->times = (vdit_op_times) { 0 };
  return ok;
}

void
vdit_backend_timing_unwrap (vdit_backend *be, vdit_backend_timing *t)
{
  g_return_if_fail (be->context == t);
  t->inner->sync (t->inner_ctx, NULL);
  drain_marks (t);
  be->iface = t->inner;
  be->context = t->inner_ctx;
  g_array_unref (t->marks);
  g_free (t);
}
