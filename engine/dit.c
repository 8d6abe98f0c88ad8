/* Video DiT forward: patch embedding, adaLN-single, blocks of RoPE self-attention,
 * cross-attention and GELU FFN, final layer. Weights live on the backend; the host only
 * prepares the patches and the RoPE tables. */
#include "dit.h"

#include "backend_util.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
  void *table; /* (6, D) */
  void *qkv_w, *qkv_b, *o_w, *o_b;
  void *cq_w, *cq_b, *ckv_w, *ckv_b, *co_w, *co_b;
  void *ff1_w, *ff1_b, *ff2_w, *ff2_b;
} dit_block;

struct vdit_dit {
  vdit_backend *be;
  gboolean view; /* vdit_dit_new_view: the weights belong to another vdit_dit */
  const vdit_dit_config *cfg;
  int text_dim;
  void *pe_w, *pe_b, *t1_w, *t1_b, *t2_w, *t2_b, *ada_w, *ada_b;
  void *cap1_w, *cap1_b, *cap2_w, *cap2_b, *final_table, *proj_w, *proj_b;
  dit_block *blocks;
};

struct vdit_dit_text {
  int n;
  void **kv;  /* per block: (n, 2D) cross-attention keys and values */
  void **row; /* n == 1: per block, the (D) row cross-attention adds to every token */
};

struct vdit_dit_ws {
  int n, gt, gh, gw; /* n: this workspace's tokens (all of the grid's without sp) */
  int first;         /* its first token in the grid */
  vdit_ulysses *sp;  /* NULL: one process runs every token */
  void *in, *x, *h, *qkv, *att, *ff, *temb, *t1, *e, *se, *mod, *mods, *fin, *out;
  float *rope_cos, *rope_sin; /* F32 (n, head_dim/2) */
  float *cos_host, *sin_host;
  void *abs_pos; /* (n, D) fixed positions, NULL without dit.abs_pos */
  float *tau;    /* F32 (1): the timestep a queued forward reads, where the backend can */
  float tau_host; /* the same on the host, for backends without timestep_embedding_buf */
  void *prefix_x; /* (n, D): pass 0's x after block 0's self-attention, for pass 1 */
};

/* What a forward does with the prefix both guidance passes share (vdit_dit_ws_share_prefix) */
typedef enum { PREFIX_RUN, PREFIX_KEEP, PREFIX_REUSE } dit_prefix;

/* Pass 1 of a guided step starts from pass 0's x after block 0's self-attention; pass 0
 * keeps it. */
static dit_prefix
dit_prefix_of (const vdit_dit_ws *ws, int pass)
{
  return ws->prefix_x == NULL ? PREFIX_RUN : pass == 0 ? PREFIX_KEEP : PREFIX_REUSE;
}

/* ---- weights ------------------------------------------------------------------- */

static gboolean
up (vdit_dit *dit, const vdit_weights *w, void **dst, GError **error, const char *fmt, ...)
  G_GNUC_PRINTF (5, 6);

static gboolean
up (vdit_dit *dit, const vdit_weights *w, void **dst, GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return (*dst = vdit_be_upload_weight (dit->be, w, name, error)) != NULL;
}

static gboolean
up_fused (vdit_dit *dit, const vdit_weights *w, void **dst, int block, const char *attn,
          const char *const *parts, int n_parts, const char *suffix, GError **error)
{
  char *names[3];
  for (int i = 0; i < n_parts; i++)
    names[i] = g_strdup_printf ("transformer_blocks.%d.%s.%s.%s", block, attn, parts[i], suffix);
  *dst = vdit_be_upload_concat (dit->be, w, (const char *const *) names, n_parts, error);
  for (int i = 0; i < n_parts; i++)
    g_free (names[i]);
  return *dst != NULL;
}

static gboolean
dit_block_upload (vdit_dit *dit, const vdit_weights *w, int i, dit_block *b, GError **error)
{
  static const char *const qkv[] = { "to_q", "to_k", "to_v" };
  static const char *const kv[] = { "to_k", "to_v" };
#define B "transformer_blocks.%d."
  return up (dit, w, &b->table, error, B "scale_shift_table", i) &&
         up_fused (dit, w, &b->qkv_w, i, "attn1", qkv, 3, "weight", error) &&
         up_fused (dit, w, &b->qkv_b, i, "attn1", qkv, 3, "bias", error) &&
         up (dit, w, &b->o_w, error, B "attn1.to_out.0.weight", i) &&
         up (dit, w, &b->o_b, error, B "attn1.to_out.0.bias", i) &&
         up (dit, w, &b->cq_w, error, B "attn2.to_q.weight", i) &&
         up (dit, w, &b->cq_b, error, B "attn2.to_q.bias", i) &&
         up_fused (dit, w, &b->ckv_w, i, "attn2", kv, 2, "weight", error) &&
         up_fused (dit, w, &b->ckv_b, i, "attn2", kv, 2, "bias", error) &&
         up (dit, w, &b->co_w, error, B "attn2.to_out.0.weight", i) &&
         up (dit, w, &b->co_b, error, B "attn2.to_out.0.bias", i) &&
         up (dit, w, &b->ff1_w, error, B "ff.net.0.proj.weight", i) &&
         up (dit, w, &b->ff1_b, error, B "ff.net.0.proj.bias", i) &&
         up (dit, w, &b->ff2_w, error, B "ff.net.2.weight", i) &&
         up (dit, w, &b->ff2_b, error, B "ff.net.2.bias", i);
#undef B
}

vdit_dit *
vdit_dit_new (vdit_backend *be, const vdit_config *cfg, const vdit_weights *w, GError **error)
{
  vdit_dit *dit = g_new0 (vdit_dit, 1);
  dit->be = be;
  dit->cfg = &cfg->dit;
  dit->text_dim = cfg->text.d_model;
  dit->blocks = g_new0 (dit_block, cfg->dit.depth);
#define TS "adaln_single.emb.timestep_embedder."
  gboolean ok = up (dit, w, &dit->pe_w, error, "pos_embed.proj.weight") &&
                up (dit, w, &dit->pe_b, error, "pos_embed.proj.bias") &&
                up (dit, w, &dit->t1_w, error, TS "linear_1.weight") &&
                up (dit, w, &dit->t1_b, error, TS "linear_1.bias") &&
                up (dit, w, &dit->t2_w, error, TS "linear_2.weight") &&
                up (dit, w, &dit->t2_b, error, TS "linear_2.bias") &&
                up (dit, w, &dit->ada_w, error, "adaln_single.linear.weight") &&
                up (dit, w, &dit->ada_b, error, "adaln_single.linear.bias") &&
                up (dit, w, &dit->cap1_w, error, "caption_projection.linear_1.weight") &&
                up (dit, w, &dit->cap1_b, error, "caption_projection.linear_1.bias") &&
                up (dit, w, &dit->cap2_w, error, "caption_projection.linear_2.weight") &&
                up (dit, w, &dit->cap2_b, error, "caption_projection.linear_2.bias") &&
                up (dit, w, &dit->final_table, error, "scale_shift_table") &&
                up (dit, w, &dit->proj_w, error, "proj_out.weight") &&
                up (dit, w, &dit->proj_b, error, "proj_out.bias");
#undef TS
  for (int i = 0; ok && i < cfg->dit.depth; i++)
    ok = dit_block_upload (dit, w, i, &dit->blocks[i], error);
  if (!ok) {
    vdit_dit_free (dit);
    return NULL;
  }
  return dit;
}

vdit_dit *
vdit_dit_new_view (const vdit_dit *dit, vdit_backend *be)
{
  vdit_dit *view = g_memdup2 (dit, sizeof *dit);
  view->be = be;
  view->view = TRUE;
  return view;
}

void
vdit_dit_free (vdit_dit *dit)
{
  if (dit == NULL)
    return;
  if (dit->view) {
    g_free (dit);
    return;
  }
  vdit_backend *be = dit->be;
  for (int i = 0; dit->blocks && i < dit->cfg->depth; i++) {
    dit_block *b = &dit->blocks[i];
    void **bufs[] = { &b->table, &b->qkv_w, &b->qkv_b, &b->o_w, &b->o_b, &b->cq_w, &b->cq_b,
                      &b->ckv_w, &b->ckv_b, &b->co_w, &b->co_b, &b->ff1_w, &b->ff1_b,
                      &b->ff2_w, &b->ff2_b };
    for (guint j = 0; j < G_N_ELEMENTS (bufs); j++)
      vdit_be_clear (be, bufs[j]);
  }
  void **top[] = { &dit->pe_w, &dit->pe_b, &dit->t1_w, &dit->t1_b, &dit->t2_w, &dit->t2_b,
                   &dit->ada_w, &dit->ada_b, &dit->cap1_w, &dit->cap1_b, &dit->cap2_w,
                   &dit->cap2_b, &dit->final_table, &dit->proj_w, &dit->proj_b };
  for (guint j = 0; j < G_N_ELEMENTS (top); j++)
    vdit_be_clear (be, top[j]);
  g_free (dit->blocks);
  g_free (dit);
}

/* ---- text conditioning ------------------------------------------------------------ */

vdit_dit_text *
vdit_dit_text_new (vdit_dit *dit, const void *text, int n, GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  const int d = dit->cfg->hidden;
  vdit_dit_text *t = g_new0 (vdit_dit_text, 1);
  t->n = n;
  t->kv = g_new0 (void *, dit->cfg->depth);
  void *hid = vdit_be_alloc (be, (size_t) n * d, error);
  void *cap = hid ? vdit_be_alloc (be, (size_t) n * d, error) : NULL;
  gboolean ok = cap != NULL;
  if (ok) {
    /* caption projection: Linear, GELU-tanh, Linear */
    f->matmul (be->context, hid, d, text, dit->text_dim, dit->cap1_w, dit->cap1_b, n, d,
               dit->text_dim, VDIT_ACT_GELU_TANH, FALSE);
    f->matmul (be->context, cap, d, hid, d, dit->cap2_w, dit->cap2_b, n, d, d, VDIT_ACT_NONE, FALSE);
  }
  for (int i = 0; ok && i < dit->cfg->depth; i++) {
    ok = (t->kv[i] = vdit_be_alloc (be, (size_t) n * 2 * d, error)) != NULL;
    if (ok)
      f->matmul (be->context, t->kv[i], 2 * d, cap, d, dit->blocks[i].ckv_w,
                 dit->blocks[i].ckv_b, n, 2 * d, d, VDIT_ACT_NONE, FALSE);
  }
  /* one key (dit.h): cross-attention adds W_o·v + b to every token, made once here */
  if (ok && n == 1) {
    t->row = g_new0 (void *, dit->cfg->depth);
    for (int i = 0; ok && i < dit->cfg->depth; i++) {
      ok = (t->row[i] = vdit_be_alloc (be, d, error)) != NULL;
      if (ok)
        f->matmul (be->context, t->row[i], d, vdit_buf_at (be, t->kv[i], d), 2 * d,
                   dit->blocks[i].co_w, dit->blocks[i].co_b, 1, d, d, VDIT_ACT_NONE, FALSE);
    }
  }
  ok = ok && f->sync (be->context, error);
  vdit_be_clear (be, &hid);
  vdit_be_clear (be, &cap);
  if (!ok) {
    vdit_dit_text_free (dit, t);
    return NULL;
  }
  return t;
}

int
vdit_dit_text_tokens (const vdit_dit_text *t)
{
  return t->n;
}

void
vdit_dit_text_free (vdit_dit *dit, vdit_dit_text *t)
{
  if (t == NULL)
    return;
  for (int i = 0; i < dit->cfg->depth; i++) {
    vdit_be_clear (dit->be, &t->kv[i]);
    if (t->row)
      vdit_be_clear (dit->be, &t->row[i]);
  }
  g_free (t->kv);
  g_free (t->row);
  g_free (t);
}

/* ---- workspace ------------------------------------------------------------------- */

/* cos/sin of the rotate-half angles: pair (chunk, j) of token (t, y, x), for the tokens
 * [first, first + count) of the grid. */
static void
dit_rope_tables (const vdit_dit_config *cfg, int gt, int gh, int gw, int first, int count,
                 float *cos_t, float *sin_t)
{
  const int chunk = cfg->head_dim / 3, half = chunk / 2, pairs = cfg->head_dim / 2;
  size_t token = 0;
  for (int t = 0; t < gt; t++)
    for (int y = 0; y < gh; y++)
      for (int x = 0; x < gw; x++, token++) {
        if (token < (size_t) first || token >= (size_t) first + count)
          continue;
        const size_t n = token - first;
        const int pos[3] = { t, y, x };
        for (int axis = 0; axis < 3; axis++) {
          double p = pos[axis] / (double) cfg->rope_scale[axis];
          for (int j = 0; j < half; j++) {
            double angle = p * pow (cfg->rope_theta, -2.0 * j / chunk);
            cos_t[n * pairs + axis * half + j] = (float) cos (angle);
            sin_t[n * pairs + axis * half + j] = (float) sin (angle);
          }
        }
      }
}

/* Fixed 3D sine-cosine positions (n, D): a third c = D/3 per axis (t, y, x) of the
 * token's grid coordinate p, sin(p·w_i) in its first half and cos(p·w_i) in its second,
 * w_i = 100^(−2i/c). RoPE only says where tokens are relative to each other; with these
 * a small model learns where in the frame and the clip an object belongs. */
static float *
dit_abs_pos_table (int d, int gt, int gh, int gw, int first, int count)
{
  const int c = d / 3, half = c / 2;
  float *table = g_new (float, (size_t) count * d);
  size_t token = 0;
  for (int t = 0; t < gt; t++)
    for (int y = 0; y < gh; y++)
      for (int x = 0; x < gw; x++, token++) {
        if (token < (size_t) first || token >= (size_t) first + count)
          continue;
        const size_t n = token - first;
        const int pos[3] = { t, y, x };
        float *row = table + n * d;
        for (int axis = 0; axis < 3; axis++)
          for (int i = 0; i < half; i++) {
            double angle = pos[axis] * pow (VDIT_ABS_POS_BASE, -(double) i / half);
            row[axis * c + i] = (float) sin (angle);
            row[axis * c + half + i] = (float) cos (angle);
          }
      }
  return table;
}

static vdit_dit_ws *
dit_ws_new (vdit_dit *dit, int gt, int gh, int gw, int first, int count, GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_dit_config *cfg = dit->cfg;
  const size_t n = count, d = cfg->hidden;
  const size_t patch = (size_t) cfg->patch[0] * cfg->patch[1] * cfg->patch[2] * cfg->in_channels;
  const size_t pairs = cfg->head_dim / 2;
  vdit_dit_ws *ws = g_new0 (vdit_dit_ws, 1);
  ws->n = n;
  ws->first = first;
  ws->gt = gt;
  ws->gh = gh;
  ws->gw = gw;
  struct { void **buf; size_t n; } acts[] = {
    { &ws->in, n * patch }, { &ws->x, n * d }, { &ws->h, n * d }, { &ws->qkv, n * 3 * d },
    { &ws->att, n * d }, { &ws->ff, n * cfg->ffn_hidden }, { &ws->temb, cfg->freq_dim },
    { &ws->t1, d }, { &ws->e, d }, { &ws->se, d }, { &ws->mod, 6 * d },
    { &ws->mods, 6 * d }, { &ws->fin, 2 * d }, { &ws->out, n * patch },
  };
  for (guint i = 0; i < G_N_ELEMENTS (acts); i++)
    if (!(*acts[i].buf = vdit_be_alloc (be, acts[i].n, error)))
      goto fail;
  ws->cos_host = g_new (float, n * pairs);
  ws->sin_host = g_new (float, n * pairs);
  dit_rope_tables (cfg, gt, gh, gw, first, count, ws->cos_host, ws->sin_host);
  if (!(ws->rope_cos = be->iface->alloc (be->context, n * pairs, VDIT_ELEM_F32, error)) ||
      !(ws->rope_sin = be->iface->alloc (be->context, n * pairs, VDIT_ELEM_F32, error)) ||
      !be->iface->upload (be->context, ws->rope_cos, ws->cos_host, n * pairs, VDIT_ELEM_F32, error) ||
      !be->iface->upload (be->context, ws->rope_sin, ws->sin_host, n * pairs, VDIT_ELEM_F32, error))
    goto fail;
  if (be->iface->timestep_embedding_buf &&
      !(ws->tau = be->iface->alloc (be->context, 1, VDIT_ELEM_F32, error)))
    goto fail;
  if (cfg->abs_pos) {
    float *table = dit_abs_pos_table (d, gt, gh, gw, first, count);
    ws->abs_pos = vdit_be_upload_f32 (be, table, n * d, error);
    g_free (table);
    if (!ws->abs_pos)
      goto fail;
  }
  return ws;
fail:
  vdit_dit_ws_free (dit, ws);
  return NULL;
}

vdit_dit_ws *
vdit_dit_ws_new (vdit_dit *dit, int gt, int gh, int gw, GError **error)
{
  return dit_ws_new (dit, gt, gh, gw, 0, gt * gh * gw, error);
}

vdit_dit_ws *
vdit_dit_ws_new_shared (vdit_dit *dit, int gt, int gh, int gw, vdit_ulysses *sp,
                        GError **error)
{
  vdit_dit_ws *ws = dit_ws_new (dit, gt, gh, gw, vdit_ulysses_token0 (sp),
                                vdit_ulysses_tokens (sp), error);
  if (ws)
    ws->sp = sp;
  return ws;
}

void
vdit_dit_ws_free (vdit_dit *dit, vdit_dit_ws *ws)
{
  if (ws == NULL)
    return;
  void **bufs[] = { &ws->in, &ws->x, &ws->h, &ws->qkv, &ws->att, &ws->ff, &ws->temb, &ws->t1,
                    &ws->e, &ws->se, &ws->mod, &ws->mods, &ws->fin, &ws->out,
                    (void **) &ws->rope_cos, (void **) &ws->rope_sin, &ws->abs_pos,
                    (void **) &ws->tau, &ws->prefix_x };
  for (guint i = 0; i < G_N_ELEMENTS (bufs); i++)
    vdit_be_clear (dit->be, bufs[i]);
  g_free (ws->cos_host);
  g_free (ws->sin_host);
  g_free (ws);
}

gboolean
vdit_dit_ws_share_prefix (vdit_dit *dit, vdit_dit_ws *ws, GError **error)
{
  if (ws->prefix_x || dit->be->iface->copy_rows == NULL)
    return TRUE;
  return (ws->prefix_x = vdit_be_alloc (dit->be, (size_t) ws->n * dit->cfg->hidden, error)) != NULL;
}

gboolean
vdit_dit_ws_shares_prefix (const vdit_dit_ws *ws)
{
  return ws->prefix_x != NULL;
}

int
vdit_dit_ws_tokens (const vdit_dit_ws *ws)
{
  return ws->n;
}

void *
vdit_dit_ws_input (vdit_dit_ws *ws)
{
  return ws->in;
}

const void *
vdit_dit_ws_output (const vdit_dit_ws *ws)
{
  return ws->out;
}

/* ---- forward ----------------------------------------------------------------------- */

/* Time the CPU spends in dense attention between two looks at the cancel flag. */
#define CANCEL_CHUNK_US 30000

static gboolean
cancelled (const vdit_backend *be, const gint *cancel, GError **error)
{
  if (cancel == NULL || !g_atomic_int_get (cancel))
    return FALSE;
  be->iface->sync (be->context, NULL);
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED, "generation cancelled");
  return TRUE;
}

/* Dense self-attention of n tokens. The CPU backend computes an op before it returns, so
 * a long one (seconds at tens of thousands of tokens) runs in chunks of query rows with a
 * look at the cancel flag before each. A chunk's size follows its measured time (about
 * CANCEL_CHUNK_US whatever the threads, cores and shapes), never below four tasks (a
 * head's 64 rows) a thread so the threads stay balanced. Rows are independent and chunks
 * start on the kernel's 64-row tiles, so the result is the same bit for bit. A GPU queues
 * its ops: a check between launches would not stop anything sooner, so it gets one call. */
static gboolean
dit_self_attention (vdit_dit *dit, vdit_dit_ws *ws, void *q, void *k, void *v, float scale,
                    const gint *cancel, GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  const int n = ws->n, d = dit->cfg->hidden, heads = dit->cfg->heads, hd = dit->cfg->head_dim;
  int rows = n, min_rows = n;
  if (cancel && g_str_equal (f->name, "cpu")) {
#ifdef _OPENMP
    const int threads = omp_get_max_threads ();
#else
    const int threads = 1;
#endif
    min_rows = rows = (int) MIN ((int64_t) n, 64 * (((int64_t) 4 * threads + heads - 1) / heads));
  }
  for (int r0 = 0, nr; r0 < n; r0 += nr) {
    if (cancelled (be, cancel, error))
      return FALSE;
    nr = MIN (rows, n - r0);
    const size_t qo = (size_t) r0 * 3 * d, oo = (size_t) r0 * d;
    const gint64 t0 = g_get_monotonic_time ();
    f->attention (be->context, vdit_buf_at (be, ws->att, oo), d, vdit_buf_at (be, q, qo), 3 * d,
                  k, 3 * d, v, 3 * d, nr, n, heads, hd, scale, NULL, NULL, NULL);
    const gint64 us = g_get_monotonic_time () - t0;
    if (rows < n && us < CANCEL_CHUNK_US / 2 && nr == rows)
      rows = (int) MIN ((int64_t) n, 2 * (int64_t) rows);
    else if (us > 2 * CANCEL_CHUNK_US && rows / 2 >= min_rows)
      rows = rows / 2 / 64 * 64;
  }
  return !cancelled (be, cancel, error);
}

/* The self-attention branch of a block with 3D RoPE, added into ws->x through its gate
 * (ws->mods holds the block's modulation). */
static gboolean
dit_block_self_attention (vdit_dit *dit, vdit_dit_ws *ws, const dit_block *b, int layer,
                          vdit_attn_policy *policy, int step, int pass, const gint *cancel,
                          GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  void *c = be->context;
  const vdit_dit_config *cfg = dit->cfg;
  const int n = ws->n, d = cfg->hidden, heads = cfg->heads, hd = cfg->head_dim;
  const float scale = 1.0f / sqrtf ((float) hd);
  void *shift_msa = vdit_buf_at (be, ws->mods, 0), *scale_msa = vdit_buf_at (be, ws->mods, d);
  void *gate_msa = vdit_buf_at (be, ws->mods, 2 * d);
  void *q = ws->qkv, *k = vdit_buf_at (be, ws->qkv, d), *v = vdit_buf_at (be, ws->qkv, 2 * d);

  f->layernorm_modulate (c, ws->h, ws->x, shift_msa, scale_msa, n, d, cfg->eps);
  f->matmul (c, ws->qkv, 3 * d, ws->h, d, b->qkv_w, b->qkv_b, n, 3 * d, d, VDIT_ACT_NONE, FALSE);
  /* q and k side by side in a row of qkv: one pass over 2·heads heads rotates both */
  f->rope (c, q, 3 * d, ws->rope_cos, ws->rope_sin, n, 2 * heads, hd, 3);
  if (ws->sp) {
    if (cancelled (be, cancel, error) ||
        !vdit_ulysses_attention (ws->sp, ws->att, ws->qkv, policy, step, layer, pass, scale,
                                 error))
      return FALSE;
  } else if (policy && !vdit_attn_policy_take_dense (policy, step, layer, pass)) {
    if (cancelled (be, cancel, error) ||
        !vdit_attn_policy_run (policy, step, layer, pass, ws->att, d, q, 3 * d, k, 3 * d, v,
                               3 * d, scale, error))
      return FALSE;
  } else if (!dit_self_attention (dit, ws, q, k, v, scale, cancel, error)) {
    return FALSE;
  }
  f->matmul (c, ws->h, d, ws->att, d, b->o_w, b->o_b, n, d, d, VDIT_ACT_NONE, FALSE);
  f->add_gated (c, ws->x, ws->h, gate_msa, n, d);
  return TRUE;
}

/* Self-attention, cross-attention and FFN of one block, updating ws->x; on the CPU a
 * cancel is seen between its parts and inside the self-attention. prefix: block 0's
 * self-attention runs, or runs and keeps its x, or is taken from the kept x. */
static gboolean
dit_block_forward (vdit_dit *dit, vdit_dit_ws *ws, const dit_block *b, int layer,
                   const vdit_dit_text *text, vdit_attn_policy *policy, int step, int pass,
                   dit_prefix prefix, const gint *cancel, GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  void *c = be->context;
  const vdit_dit_config *cfg = dit->cfg;
  const int n = ws->n, d = cfg->hidden, ffn = cfg->ffn_hidden, heads = cfg->heads, hd = cfg->head_dim;
  const float scale = 1.0f / sqrtf ((float) hd);
  void *shift_mlp = vdit_buf_at (be, ws->mods, 3 * d), *scale_mlp = vdit_buf_at (be, ws->mods, 4 * d);
  void *gate_mlp = vdit_buf_at (be, ws->mods, 5 * d);

  f->add (c, ws->mods, b->table, ws->mod, 6 * (size_t) d);
  if (prefix == PREFIX_REUSE) {
    f->copy_rows (c, ws->x, d, ws->prefix_x, d, n, d);
  } else {
    if (!dit_block_self_attention (dit, ws, b, layer, policy, step, pass, cancel, error))
      return FALSE;
    if (prefix == PREFIX_KEEP)
      f->copy_rows (c, ws->prefix_x, d, ws->x, d, n, d);
  }
  if (cancelled (be, cancel, error))
    return FALSE;

  /* cross-attention to the caption: no norm, no gate */
  if (text->row) {
    f->add_gated (c, ws->x, NULL, text->row[layer], n, d);
  } else {
    void *kv = text->kv[layer], *q = ws->qkv;
    f->matmul (c, q, d, ws->x, d, b->cq_w, b->cq_b, n, d, d, VDIT_ACT_NONE, FALSE);
    f->attention (c, ws->att, d, q, d, kv, 2 * d, vdit_buf_at (be, kv, d), 2 * d, n, text->n,
                  heads, hd, scale, NULL, NULL, NULL);
    f->matmul (c, ws->x, d, ws->att, d, b->co_w, b->co_b, n, d, d, VDIT_ACT_NONE, TRUE);
  }
  if (cancelled (be, cancel, error))
    return FALSE;

  /* feed-forward */
  f->layernorm_modulate (c, ws->h, ws->x, shift_mlp, scale_mlp, n, d, cfg->eps);
  f->matmul (c, ws->ff, ffn, ws->h, d, b->ff1_w, b->ff1_b, n, ffn, d, VDIT_ACT_GELU_TANH, FALSE);
  f->matmul (c, ws->h, d, ws->ff, ffn, b->ff2_w, b->ff2_b, n, d, ffn, VDIT_ACT_NONE, FALSE);
  f->add_gated (c, ws->x, ws->h, gate_mlp, n, d);
  return TRUE;
}

/* Patch embedding and adaLN-single into ws->x, ws->e and ws->mod; the timestep's
 * frequencies are made on the backend, so no upload waits for them. */
static void
dit_embed (vdit_dit *dit, vdit_dit_ws *ws, const float *tau)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  void *c = be->context;
  const vdit_dit_config *cfg = dit->cfg;
  const int n = ws->n, d = cfg->hidden;
  const int patch = cfg->patch[0] * cfg->patch[1] * cfg->patch[2] * cfg->in_channels;
  if (tau)
    f->timestep_embedding (c, ws->temb, tau, 1, cfg->freq_dim);
  else
    f->timestep_embedding_buf (c, ws->temb, ws->tau, 1, cfg->freq_dim);
  f->matmul (c, ws->x, d, ws->in, patch, dit->pe_w, dit->pe_b, n, d, patch, VDIT_ACT_NONE, FALSE);
  if (ws->abs_pos)
    f->add_gated (c, ws->x, ws->abs_pos, NULL, n, d);
  f->matmul (c, ws->t1, d, ws->temb, cfg->freq_dim, dit->t1_w, dit->t1_b, 1, d, cfg->freq_dim,
             VDIT_ACT_SILU, FALSE);
  f->matmul (c, ws->e, d, ws->t1, d, dit->t2_w, dit->t2_b, 1, d, d, VDIT_ACT_NONE, FALSE);
  f->activate (c, ws->se, ws->e, d, VDIT_ACT_SILU);
  f->matmul (c, ws->mod, 6 * d, ws->se, d, dit->ada_w, dit->ada_b, 1, 6 * d, d, VDIT_ACT_NONE, FALSE);
}

/* ws->in to ws->out, queued on the backend. tau: the timestep as a host value (read
 * when the embedding is queued), or NULL to read ws->tau on the backend. */
static gboolean
dit_forward_body (vdit_dit *dit, vdit_dit_ws *ws, const float *tau, const vdit_dit_text *text,
                  vdit_attn_policy *policy, int step, int pass, const gint *cancel,
                  GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  void *c = be->context;
  const vdit_dit_config *cfg = dit->cfg;
  const int n = ws->n, d = cfg->hidden;
  const int patch = cfg->patch[0] * cfg->patch[1] * cfg->patch[2] * cfg->in_channels;

  /* reusing, the timestep's embedding and modulation that pass 0 left in ws are this
   * step's */
  const dit_prefix prefix = dit_prefix_of (ws, pass);
  if (prefix != PREFIX_REUSE)
    dit_embed (dit, ws, tau);
  for (int i = 0; i < cfg->depth; i++) {
    if (cancelled (be, cancel, error) ||
        !dit_block_forward (dit, ws, &dit->blocks[i], i, text, policy, step, pass,
                            i == 0 ? prefix : PREFIX_RUN, cancel, error))
      return FALSE;
  }
  if (cancelled (be, cancel, error))
    return FALSE;

  /* final layer: shift, scale = table + embedded timestep */
  void *shift = ws->fin, *scale = vdit_buf_at (be, ws->fin, d);
  f->add (c, shift, dit->final_table, ws->e, d);
  f->add (c, scale, vdit_buf_at (be, dit->final_table, d), ws->e, d);
  f->layernorm_modulate (c, ws->h, ws->x, shift, scale, n, d, cfg->eps);
  f->matmul (c, ws->out, patch, ws->h, d, dit->proj_w, dit->proj_b, n, patch, d, VDIT_ACT_NONE, FALSE);
  return TRUE;
}

gboolean
vdit_dit_forward (vdit_dit *dit, vdit_dit_ws *ws, const float *patches, float timestep,
                  const vdit_dit_text *text, vdit_attn_policy *policy, int step, int pass,
                  float *out, const gint *cancel, GError **error)
{
  vdit_backend *be = dit->be;
  const vdit_backend_i *f = be->iface;
  void *c = be->context;
  const vdit_dit_config *cfg = dit->cfg;
  const int patch = cfg->patch[0] * cfg->patch[1] * cfg->patch[2] * cfg->in_channels;
  const size_t values = (size_t) ws->n * patch;

  /* a pass that starts from the shared prefix does not read its patches */
  const gboolean reads_patches = dit_prefix_of (ws, pass) != PREFIX_REUSE;
  if (cancelled (be, cancel, error) ||
      (reads_patches && !f->upload (c, ws->in, patches, values, VDIT_ELEM_ACT, error)) ||
      !dit_forward_body (dit, ws, &timestep, text, policy, step, pass, cancel, error))
    return FALSE;
  /* a cancel during the last ops leaves out undefined on the CPU: not a result */
  return f->download (c, out, ws->out, values, VDIT_ELEM_ACT, error) &&
         f->sync (c, error) && !cancelled (be, cancel, error);
}

gboolean
vdit_dit_set_timestep (vdit_dit *dit, vdit_dit_ws *ws, float timestep, GError **error)
{
  ws->tau_host = timestep;
  return ws->tau == NULL ||
         dit->be->iface->upload (dit->be->context, ws->tau, &timestep, 1, VDIT_ELEM_F32, error);
}

gboolean
vdit_dit_forward_queued (vdit_dit *dit, vdit_dit_ws *ws, const vdit_dit_text *text,
                         vdit_attn_policy *policy, int step, int pass, const gint *cancel,
                         GError **error)
{
  return dit_forward_body (dit, ws, ws->tau ? NULL : &ws->tau_host, text, policy, step, pass,
                           cancel, error);
}

/* ---- patch layout ---------------------------------------------------------------- */

/* Moves every value between a latent (T, H, W, C) and tokens. A token's values are
 * ordered (c, dt, dy, dx) on the way in (the conv weight's order) and (dt, dy, dx, c) on
 * the way out (the unpatchify order of Open-Sora-Plan). */
static void
patch_map (float *latent, float *tokens, float scale, int T, int H, int W, int C,
           const int patch[3], gboolean to_tokens)
{
  const int pt = patch[0], ph = patch[1], pw = patch[2];
  const int gh = H / ph, gw = W / pw, per = pt * ph * pw * C;
  size_t li = 0;
  for (int t = 0; t < T; t++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int ch = 0; ch < C; ch++, li++) {
          const size_t token = ((size_t) (t / pt) * gh + y / ph) * gw + x / pw;
          const int dt = t % pt, dy = y % ph, dx = x % pw;
          if (to_tokens)
            tokens[token * per + ((ch * pt + dt) * ph + dy) * pw + dx] = latent[li] * scale;
          else
            latent[li] = tokens[token * per + ((dt * ph + dy) * pw + dx) * C + ch];
        }
}

void
vdit_patchify (float *patches, const float *latent, int T, int H, int W, int C, const int patch[3])
{
  patch_map ((float *) latent, patches, 1.0f, T, H, W, C, patch, TRUE);
}

void
vdit_patchify_scaled (float *patches, const float *latent, float scale, int T, int H, int W,
                      int C, const int patch[3])
{
  patch_map ((float *) latent, patches, scale, T, H, W, C, patch, TRUE);
}

void
vdit_unpatchify (float *latent, const float *tokens, int T, int H, int W, int C, const int patch[3])
{
  patch_map (latent, (float *) tokens, 1.0f, T, H, W, C, patch, FALSE);
}
