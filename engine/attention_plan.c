/* Self-attention policies. full runs dense attention; tile runs the k:(T−k) frame mask
 * of each layer's plan; adaptive (AdaSpa) runs dense for the warm-up steps, then searches
 * a block pattern per (pass, layer) and reuses it until the next search step. The first
 * search of a (pass, layer) runs dense attention that also returns each row's LSE and
 * scores the blocks with it (in the same pass where the backend has attention_scored);
 * later searches score with that cached LSE in one pass
 * (the LSE changes little across steps) and then run the new pattern. A recorder runs
 * dense attention and measures every tile mask against it, for the mask search.
 *
 * Everything goes through the backend table, so the same code drives the CPU and the
 * GPU backends. The pattern choice runs where the block scores are: on the backend when
 * it has an adaptive_layout slot (the CUDA backend), else on the host (adaptive_select.c),
 * with the same result. */
#include "attention_plan.h"

#include "adaptive_select.h"

#include <math.h>
#include <string.h>

#define N_PASSES 2 /* conditional, unconditional */

typedef struct {
  vdit_block_layout host; /* row_ptr == NULL until the first search */
  void *layout;           /* the backend's copy of host */
  int *keep;              /* (heads) blocks per row */
  float *lse;             /* F32 backend buffer (heads, n) from the first search */
  double pattern_density; /* fraction of block pairs host keeps */
  double density;         /* of the latest call */
  int stamp;              /* step of the latest call */
  gboolean device_chosen; /* the backend chose the pattern: layout set, host empty */
} attn_slot;

struct vdit_attn_policy {
  vdit_backend *be;
  VditAttention mode;
  gboolean recorder;
  int frames, tpf, n, depth, heads, head_dim, steps;
  int last_step;
  const gint *cancel; /* params.cancel */
  attn_slot *slots; /* (N_PASSES, depth) */

  /* tile and recorder */
  int *layer_k;        /* (depth) */
  void **tile_layouts; /* (frames) backend layouts by k, made on first use */

  /* adaptive */
  int block;
  float sparsity;
  int warmup_steps;
  int *search_at; /* (n_search) step indices */
  int n_search;
  float *scores;  /* F32 backend buffer (heads, nqb, nkb) */
  float *scores_host;
  /* sequence parallelism: heads [head0, head0 + heads) of heads_total over comm */
  const vdit_comm *comm;
  int head0, heads_total;
  float *scores_all; /* (heads_total, nqb, nkb) host */

  /* recorder */
  void *scratch;     /* ACT (n, heads·head_dim) */
  float *full_host;  /* (n, heads·head_dim) */
  float *cand_host;
  double *err_num;   /* (depth, frames) Σ‖O_k − O‖² */
  double *err_den;   /* (depth) Σ‖O‖² */
};

static gboolean
check_params (const vdit_attn_policy_params *params, GError **error)
{
  if (params->frames < 1 || params->tokens_per_frame < 1 || params->depth < 1
      || params->heads < 1 || params->head_dim < 1 || params->steps < 1) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "attention policy: frames %d, tokens per frame %d, depth %d, heads %d, "
                 "head dim %d and steps %d must all be positive", params->frames,
                 params->tokens_per_frame, params->depth, params->heads, params->head_dim,
                 params->steps);
    return FALSE;
  }
  if ((int64_t) params->frames * params->tokens_per_frame > G_MAXINT / 2) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "attention policy: %d frames of %d tokens is too long a sequence",
                 params->frames, params->tokens_per_frame);
    return FALSE;
  }
  return TRUE;
}

static vdit_attn_policy *
policy_alloc (vdit_backend *be, const vdit_attn_policy_params *params)
{
  vdit_attn_policy *p = g_new0 (vdit_attn_policy, 1);
  p->be = be;
  p->mode = params->mode;
  p->frames = params->frames;
  p->tpf = params->tokens_per_frame;
  p->n = params->frames * params->tokens_per_frame;
  p->depth = params->depth;
  p->heads = params->heads;
  p->head_dim = params->head_dim;
  p->steps = params->steps;
  p->cancel = params->cancel;
  p->last_step = -1;
  p->slots = g_new0 (attn_slot, (size_t) N_PASSES * p->depth);
  for (int i = 0; i < N_PASSES * p->depth; i++) {
    p->slots[i].stamp = -1;
    p->slots[i].density = 1.0;
  }
  p->tile_layouts = g_new0 (void *, p->frames);
  return p;
}

vdit_attn_policy *
vdit_attn_policy_new (vdit_backend *be, const vdit_config *cfg,
                      const vdit_attn_policy_params *params, GError **error)
{
  if (!check_params (params, error))
    return NULL;
  const vdit_attention_config *a = &cfg->attention;
  if (params->mode != VDIT_ATTENTION_FULL && params->mode != VDIT_ATTENTION_TILE
      && params->mode != VDIT_ATTENTION_ADAPTIVE) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "attention policy: mode %d is not full, tile or adaptive", params->mode);
    return NULL;
  }
  const float sparsity = params->sparsity >= 0.0f ? params->sparsity : a->sparsity;
  if (params->mode == VDIT_ATTENTION_ADAPTIVE) {
    if (!(sparsity >= 0.0f && sparsity < 1.0f)) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "adaptive attention: sparsity %g must be at least 0 and below 1",
                   sparsity);
      return NULL;
    }
    if (a->block < 1) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                   "adaptive attention: block %d must be positive", a->block);
      return NULL;
    }
    if (be->iface->block_scores == NULL) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "adaptive attention: the %s backend cannot score blocks", be->iface->name);
      return NULL;
    }
  }

  vdit_attn_policy *p = policy_alloc (be, params);
  p->layer_k = g_new (int, p->depth);
  for (int l = 0; l < p->depth; l++)
    p->layer_k[l] = a->plan && l < cfg->dit.depth ? a->plan[l] : a->tile_k;
  p->block = a->block;
  p->sparsity = sparsity;
  p->warmup_steps = (int) lround (a->warmup * p->steps);
  p->n_search = a->n_search_steps;
  p->search_at = g_new0 (int, MAX (p->n_search, 1));
  for (int i = 0; i < p->n_search; i++)
    p->search_at[i] = MAX (p->warmup_steps, (int) lround (a->search_steps[i] * p->steps));
  return p;
}

vdit_attn_policy *
vdit_attn_policy_new_recorder (vdit_backend *be, const vdit_attn_policy_params *params,
                               GError **error)
{
  if (!check_params (params, error))
    return NULL;
  vdit_attn_policy *p = policy_alloc (be, params);
  p->mode = VDIT_ATTENTION_FULL;
  p->recorder = TRUE;
  const size_t elems = (size_t) p->n * p->heads * p->head_dim;
  p->scratch = be->iface->alloc (be->context, elems, VDIT_ELEM_ACT, error);
  if (p->scratch == NULL) {
    vdit_attn_policy_free (p);
    return NULL;
  }
  p->full_host = g_try_new (float, elems);
  p->cand_host = g_try_new (float, elems);
  if (p->full_host == NULL || p->cand_host == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "mask search: out of host memory for two %.1f MiB outputs",
                 elems * 4.0 / 1048576.0);
    vdit_attn_policy_free (p);
    return NULL;
  }
  p->err_num = g_new0 (double, (size_t) p->depth * p->frames);
  p->err_den = g_new0 (double, p->depth);
  return p;
}

static void
slot_clear_layout (vdit_attn_policy *p, attn_slot *s)
{
  if (s->layout)
    p->be->iface->layout_free (p->be->context, s->layout);
  s->layout = NULL;
  g_free ((int32_t *) s->host.row_ptr);
  g_free ((int32_t *) s->host.cols);
  memset (&s->host, 0, sizeof s->host);
  s->device_chosen = FALSE;
}

void
vdit_attn_policy_free (vdit_attn_policy *p)
{
  if (p == NULL)
    return;
  const vdit_backend *be = p->be;
  for (int i = 0; p->slots && i < N_PASSES * p->depth; i++) {
    attn_slot *s = &p->slots[i];
    slot_clear_layout (p, s);
    if (s->lse)
      be->iface->release (be->context, s->lse);
    g_free (s->keep);
  }
  for (int k = 0; k < p->frames; k++)
    if (p->tile_layouts[k])
      be->iface->layout_free (be->context, p->tile_layouts[k]);
  if (p->scores)
    be->iface->release (be->context, p->scores);
  if (p->scratch)
    be->iface->release (be->context, p->scratch);
  g_free (p->tile_layouts);
  g_free (p->slots);
  g_free (p->layer_k);
  g_free (p->search_at);
  g_free (p->scores_host);
  g_free (p->scores_all);
  g_free (p->full_host);
  g_free (p->cand_host);
  g_free (p->err_num);
  g_free (p->err_den);
  g_free (p);
}

/* The backend layout of the k:(T−k) mask, made once per k; NULL with k ≥ T (dense). */
static gboolean
tile_layout (vdit_attn_policy *p, int k, void **layout, GError **error)
{
  *layout = NULL;
  if (k >= p->frames)
    return TRUE;
  if (p->tile_layouts[k] == NULL) {
    vdit_block_layout l;
    vdit_tile_layout (&l, p->frames, p->tpf, k);
    p->tile_layouts[k] = p->be->iface->layout_new (p->be->context, &l, error);
    g_free ((int32_t *) l.row_ptr);
    g_free ((int32_t *) l.cols);
    if (p->tile_layouts[k] == NULL)
      return FALSE;
  }
  *layout = p->tile_layouts[k];
  return TRUE;
}

gboolean
vdit_attn_policy_share_heads (vdit_attn_policy *p, const vdit_comm *comm, int heads_total,
                              GError **error)
{
  const int size = vdit_comm_size (comm), rank = vdit_comm_rank (comm);
  int *counts = g_new (int, size), *displs = g_new (int, size);
  vdit_comm_split (heads_total, size, counts, displs);
  const int mine = counts[rank], head0 = displs[rank];
  g_free (counts);
  g_free (displs);
  if (mine != p->heads) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "attention policy: made for %d heads, but rank %d of %d runs %d of %d",
                 p->heads, rank, size, mine, heads_total);
    return FALSE;
  }
  p->comm = size > 1 ? comm : NULL;
  p->head0 = head0;
  p->heads_total = heads_total;
  return TRUE;
}

/* The pattern one process would choose for all heads (head-adaptive sparsity compares
 * heads), from every rank's scores; this rank keeps its heads' rows of it. */
static gboolean
shared_select (vdit_attn_policy *p, attn_slot *s, int nb, GError **error)
{
  const int size = vdit_comm_size (p->comm), per_head = nb * nb;
  int *counts = g_new (int, size), *displs = g_new (int, size);
  vdit_comm_split (p->heads_total, size, counts, displs);
  for (int r = 0; r < size; r++) {
    counts[r] *= per_head;
    displs[r] *= per_head;
  }
  if (p->scores_all == NULL)
    p->scores_all = g_new (float, (size_t) p->heads_total * per_head);
  gboolean ok = vdit_comm_allgatherv (p->comm, p->scores_host, p->scores_all, counts, displs,
                                      sizeof (float), error);
  g_free (counts);
  g_free (displs);
  if (!ok)
    return FALSE;
  vdit_block_layout all;
  int *keep = g_new (int, p->heads_total);
  vdit_adaptive_select (&all, keep, p->scores_all, p->heads_total, p->n, p->n, p->block,
                        p->block, p->sparsity);
  /* rows of heads [head0, head0 + heads), their column indices from 0 */
  const int rows = all.n_qblocks + 1;
  const int32_t *rp = all.row_ptr + (size_t) p->head0 * rows;
  const int32_t first = rp[0], last = rp[(size_t) (p->heads - 1) * rows + all.n_qblocks];
  int32_t *row_ptr = g_new (int32_t, (size_t) p->heads * rows);
  int32_t *cols = g_new (int32_t, MAX (last - first, 1));
  for (size_t i = 0; i < (size_t) p->heads * rows; i++)
    row_ptr[i] = rp[i] - first;
  memcpy (cols, all.cols + first, sizeof (int32_t) * (last - first));
  memcpy (s->keep, keep + p->head0, sizeof (int) * p->heads);
  s->host = all;
  s->host.n_heads = p->heads;
  s->host.row_ptr = row_ptr;
  s->host.cols = cols;
  s->pattern_density = (double) (last - first) / ((double) p->heads * all.n_qblocks * all.n_kblocks);
  g_free ((int32_t *) all.row_ptr);
  g_free ((int32_t *) all.cols);
  g_free (keep);
  return TRUE;
}

/* A search step's parts (dense pass, block scores, the choice, the sparse call) are
 * long single ops on the CPU: the cancel is looked at between them. */
static gboolean
policy_cancelled (vdit_attn_policy *p, GError **error)
{
  if (p->cancel == NULL || !g_atomic_int_get (p->cancel))
    return FALSE;
  p->be->iface->sync (p->be->context, NULL);
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED, "generation cancelled");
  return TRUE;
}

/* Adaptive blocks along the sequence. */
static int
n_blocks (const vdit_attn_policy *p)
{
  return (int) (((int64_t) p->n + p->block - 1) / p->block); /* no int overflow */
}

/* The policy's block-score buffer (heads, nb, nb), made on first use. */
static gboolean
scores_ready (vdit_attn_policy *p, GError **error)
{
  vdit_backend *be = p->be;
  const int nb = n_blocks (p);
  if (p->scores == NULL)
    p->scores = be->iface->alloc (be->context, (size_t) p->heads * nb * nb, VDIT_ELEM_F32,
                                  error);
  return p->scores != NULL;
}

/* Scores the blocks with the slot's LSE (unless `scored`: the dense pass left them), picks
 * a new pattern and hands it to the backend. */
static gboolean
adaptive_search (vdit_attn_policy *p, attn_slot *s, const void *q, int ldq, const void *k,
                 int ldk, float scale, gboolean scored, GError **error)
{
  vdit_backend *be = p->be;
  const int nb = n_blocks (p);
  const size_t n_scores = (size_t) p->heads * nb * nb;
  if (!scores_ready (p, error))
    return FALSE;
  if (!scored)
    be->iface->block_scores (be->context, p->scores, q, ldq, k, ldk, s->lse, p->n, p->n,
                             p->heads, p->head_dim, scale, p->block, p->block);
  if (policy_cancelled (p, error))
    return FALSE;
  if (s->keep == NULL)
    s->keep = g_new (int, p->heads);
  if (be->iface->adaptive_layout && p->comm == NULL) { /* the choice where the scores are */
    GError *err = NULL;
    double density = 0.0;
    void *layout = be->iface->adaptive_layout (be->context, p->scores, p->heads, p->n, p->n,
                                               p->block, p->block, p->sparsity, s->keep,
                                               &density, &err);
    if (err) {
      g_propagate_error (error, err);
      return FALSE;
    }
    if (layout) {
      slot_clear_layout (p, s);
      s->layout = layout;
      s->device_chosen = TRUE;
      s->pattern_density = s->density = density;
      return TRUE;
    }
  }
  if (p->scores_host == NULL)
    p->scores_host = g_new (float, n_scores);
  if (!be->iface->download (be->context, p->scores_host, p->scores, n_scores, VDIT_ELEM_F32,
                            error))
    return FALSE;

  slot_clear_layout (p, s);
  if (p->comm) {
    if (!shared_select (p, s, nb, error))
      return FALSE;
  } else {
    s->pattern_density = vdit_adaptive_select (&s->host, s->keep, p->scores_host, p->heads,
                                               p->n, p->n, p->block, p->block, p->sparsity);
  }
  s->density = s->pattern_density;
  s->layout = be->iface->layout_new (be->context, &s->host, error);
  return s->layout != NULL;
}

static gboolean
is_search_step (const vdit_attn_policy *p, int step)
{
  for (int i = 0; i < p->n_search; i++)
    if (p->search_at[i] == step)
      return TRUE;
  return FALSE;
}

static gboolean
adaptive_run (vdit_attn_policy *p, attn_slot *s, int step, void *out, int ldo, const void *q,
              int ldq, const void *k, int ldk, const void *v, int ldv, float scale,
              GError **error)
{
  vdit_backend *be = p->be;
  const vdit_backend_i *f = be->iface;
  if (step < p->warmup_steps) {
    f->attention (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->n, p->heads,
                  p->head_dim, scale, NULL, NULL, NULL);
    s->density = 1.0;
    return TRUE;
  }
  /* A search at a search step, and at the first step after the warm-up without one. */
  const gboolean search = s->layout == NULL || (is_search_step (p, step) && s->stamp != step);
  if (search && s->lse == NULL) {
    /* first search: dense attention (this step's exact output) that stores the LSE */
    s->lse = f->alloc (be->context, (size_t) p->heads * p->n, VDIT_ELEM_F32, error);
    if (s->lse == NULL)
      return FALSE;
    /* the scores from the dense pass itself where the backend can */
    const gboolean scored = f->attention_scored != NULL;
    if (scored) {
      if (!scores_ready (p, error))
        return FALSE;
      f->attention_scored (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->heads,
                           p->head_dim, scale, s->lse, p->scores, p->block);
    } else {
      f->attention (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->n, p->heads,
                    p->head_dim, scale, NULL, NULL, s->lse);
    }
    if (policy_cancelled (p, error) ||
        !adaptive_search (p, s, q, ldq, k, ldk, scale, scored, error))
      return FALSE;
    s->density = 1.0; /* this call ran dense; the pattern starts with the next step */
    return TRUE;
  }
  if (search && (!adaptive_search (p, s, q, ldq, k, ldk, scale, FALSE, error) ||
                 policy_cancelled (p, error)))
    return FALSE;
  s->density = s->pattern_density;
  f->attention (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->n, p->heads,
                p->head_dim, scale, NULL, s->layout, NULL);
  return TRUE;
}

static double
sum_sq_diff (const float *a, const float *b, int rows, int cols, int lda)
{
  double sum = 0.0;
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      const double d = (double) a[(size_t) i * lda + j] - (b ? b[(size_t) i * cols + j] : 0.0);
      sum += d * d;
    }
  return sum;
}

static gboolean
record_run (vdit_attn_policy *p, int layer, void *out, int ldo, const void *q, int ldq,
            const void *k, int ldk, const void *v, int ldv, float scale, GError **error)
{
  vdit_backend *be = p->be;
  const vdit_backend_i *f = be->iface;
  const int d = p->heads * p->head_dim;
  f->attention (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->n, p->heads,
                p->head_dim, scale, NULL, NULL, NULL);
  /* the full output, packed to (n, d) on the host */
  const size_t span = (size_t) (p->n - 1) * ldo + d;
  float *staged = ldo == d ? p->full_host : g_try_new (float, span);
  if (staged == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "mask search: out of host memory for a %.1f MiB output", span * 4.0 / 1048576.0);
    return FALSE;
  }
  gboolean ok = f->download (be->context, staged, out, span, VDIT_ELEM_ACT, error);
  if (staged != p->full_host) {
    for (int i = 0; ok && i < p->n; i++)
      memcpy (p->full_host + (size_t) i * d, staged + (size_t) i * ldo, sizeof (float) * d);
    g_free (staged);
  }
  if (!ok)
    return FALSE;
  p->err_den[layer] += sum_sq_diff (p->full_host, NULL, p->n, d, d);
  /* k = T − 1 keeps every tile: its error is 0 and needs no run */
  for (int kk = 0; kk < p->frames - 1; kk++) {
    void *layout;
    if (!tile_layout (p, kk, &layout, error))
      return FALSE;
    f->attention (be->context, p->scratch, d, q, ldq, k, ldk, v, ldv, p->n, p->n, p->heads,
                  p->head_dim, scale, NULL, layout, NULL);
    if (!f->download (be->context, p->cand_host, p->scratch, (size_t) p->n * d, VDIT_ELEM_ACT,
                      error))
      return FALSE;
    p->err_num[(size_t) layer * p->frames + kk] +=
      sum_sq_diff (p->cand_host, p->full_host, p->n, d, d);
  }
  return TRUE;
}

gboolean
vdit_attn_policy_run (vdit_attn_policy *p, int step, int layer, int pass, void *out, int ldo,
                      const void *q, int ldq, const void *k, int ldk, const void *v, int ldv,
                      float scale, GError **error)
{
  if (layer < 0 || layer >= p->depth || pass < 0 || pass >= N_PASSES || step < 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "attention policy: layer %d (of %d), pass %d, step %d out of range", layer,
                 p->depth, pass, step);
    return FALSE;
  }
  vdit_backend *be = p->be;
  attn_slot *s = &p->slots[(size_t) pass * p->depth + layer];
  gboolean ok = TRUE;
  if (p->recorder) {
    ok = record_run (p, layer, out, ldo, q, ldq, k, ldk, v, ldv, scale, error);
    s->density = 1.0;
  } else if (p->mode == VDIT_ATTENTION_FULL) {
    be->iface->attention (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->n, p->heads,
                          p->head_dim, scale, NULL, NULL, NULL);
    s->density = 1.0;
  } else if (p->mode == VDIT_ATTENTION_TILE) {
    void *layout;
    ok = tile_layout (p, p->layer_k[layer], &layout, error);
    if (ok)
      be->iface->attention (be->context, out, ldo, q, ldq, k, ldk, v, ldv, p->n, p->n,
                            p->heads, p->head_dim, scale, NULL, layout, NULL);
    s->density = layout ? vdit_tile_density (p->frames, p->layer_k[layer]) : 1.0;
  } else {
    ok = adaptive_run (p, s, step, out, ldo, q, ldq, k, ldk, v, ldv, scale, error);
  }
  s->stamp = step;
  p->last_step = step;
  return ok;
}

gboolean
vdit_attn_policy_take_dense (vdit_attn_policy *p, int step, int layer, int pass)
{
  if (p->recorder || p->mode == VDIT_ATTENTION_FULL || layer < 0 || layer >= p->depth ||
      pass < 0 || pass >= N_PASSES || step < 0)
    return FALSE;
  const gboolean dense = p->mode == VDIT_ATTENTION_TILE ? p->layer_k[layer] >= p->frames
                                                        : step < p->warmup_steps;
  if (dense) { /* what vdit_attn_policy_run records for a dense call */
    attn_slot *s = &p->slots[(size_t) pass * p->depth + layer];
    s->density = 1.0;
    s->stamp = step;
    p->last_step = step;
  }
  return dense;
}

gboolean
vdit_attn_policy_replayable (const vdit_attn_policy *p)
{
  return !p->recorder && (p->mode == VDIT_ATTENTION_FULL || p->mode == VDIT_ATTENTION_TILE);
}

double
vdit_attn_policy_density (const vdit_attn_policy *p)
{
  double sum = 0.0;
  int n = 0;
  for (int i = 0; i < N_PASSES * p->depth; i++)
    if (p->slots[i].stamp == p->last_step && p->last_step >= 0) {
      sum += p->slots[i].density;
      n++;
    }
  return n ? sum / n : 1.0;
}

const vdit_block_layout *
vdit_attn_policy_get_layout (const vdit_attn_policy *p, int layer, int pass)
{
  if (layer < 0 || layer >= p->depth || pass < 0 || pass >= N_PASSES)
    return NULL;
  const attn_slot *s = &p->slots[(size_t) pass * p->depth + layer];
  return s->host.row_ptr ? &s->host : NULL;
}

gboolean
vdit_attn_policy_get_keep (const vdit_attn_policy *p, int layer, int pass, int *keep)
{
  if (layer < 0 || layer >= p->depth || pass < 0 || pass >= N_PASSES)
    return FALSE;
  const attn_slot *s = &p->slots[(size_t) pass * p->depth + layer];
  if (s->layout == NULL || (s->host.row_ptr == NULL && !s->device_chosen))
    return FALSE;
  memcpy (keep, s->keep, sizeof (int) * p->heads);
  return TRUE;
}

gboolean
vdit_attn_policy_get_errors (const vdit_attn_policy *p, double *errors)
{
  if (!p->recorder)
    return FALSE;
  for (int l = 0; l < p->depth; l++)
    for (int k = 0; k < p->frames; k++) {
      const double num = p->err_num[(size_t) l * p->frames + k];
      errors[(size_t) l * p->frames + k] = p->err_den[l] > 0.0 ? sqrt (num / p->err_den[l]) : 0.0;
    }
  return TRUE;
}

void
vdit_tile_layout (vdit_block_layout *out, int frames, int tokens_per_frame, int k)
{
  k = CLAMP (k, 0, frames);
  const int64_t kept = vdit_tile_kept_count (frames, k);
  int32_t *row_ptr = g_new (int32_t, frames + 1);
  int32_t *cols = g_new (int32_t, MAX (kept, 1));
  int32_t n = 0;
  row_ptr[0] = 0;
  for (int i = 0; i < frames; i++) {
    if (i < k) { /* a reference frame's queries see every frame */
      for (int j = 0; j < frames; j++)
        cols[n++] = j;
    } else { /* the reference frames' keys, then the diagonal */
      for (int j = 0; j < k; j++)
        cols[n++] = j;
      cols[n++] = i;
    }
    row_ptr[i + 1] = n;
  }
  *out = (vdit_block_layout) {
    .block_q = tokens_per_frame, .block_k = tokens_per_frame,
    .n_q = frames * tokens_per_frame, .n_k = frames * tokens_per_frame,
    .n_qblocks = frames, .n_kblocks = frames, .n_heads = 1,
    .row_ptr = row_ptr, .cols = cols,
  };
}

int64_t
vdit_tile_kept_count (int frames, int k)
{
  const int64_t t = frames;
  if (k >= frames)
    return t * t;
  if (k <= 0)
    return t;
  return t * k + (int64_t) k * (t - k) + (t - k);
}

double
vdit_tile_density (int frames, int k)
{
  return (double) vdit_tile_kept_count (frames, k) / ((double) frames * frames);
}

int
vdit_attn_policy_tokens (const vdit_attn_policy *p)
{
  return p->n;
}
