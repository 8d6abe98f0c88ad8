/* layout_new / layout_free: a host block layout (CSR of kept key blocks per query block,
 * blocks of any size) mapped onto the attention kernels' tiles: 64 × 64 for the sm_80 and
 * first sm_90a kernels, 128 × 128 ("wide") for the FlashAttention-3-structured one.
 *
 * A kernel tile is computed when any layout block it overlaps is kept; it runs unmasked
 * when every overlapped block is kept and it holds 64 real keys, else it is flagged
 * partial and masked per element from the layout's block bitmap. Query tiles (and the
 * pairs of them that the sm_90a kernel takes) are listed heaviest first, so long rows
 * (tile-mode reference frames) start early. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adaspa_select.h"
#include "adaptive_select.h"
#include "attention.h"
#include "cuda_ctx.h"
#include "vdit.h"

#define TQ VDIT_CUDA_ATTN_TILE_Q
#define TK VDIT_CUDA_ATTN_TILE_K
#define WQ VDIT_CUDA_ATTN_WIDE_Q
#define WK VDIT_CUDA_ATTN_WIDE_K

typedef struct {
  vdit_cuda_attn_layout dev; /* device pointers; what the kernel reads */
  void *mem;                 /* one allocation behind all of them */
} cuda_layout;

static gboolean
check_layout (const vdit_block_layout *l, GError **error)
{
  const char *why = NULL;
  if (l->block_q <= 0 || l->block_k <= 0 || l->n_q < 0 || l->n_k < 0 || l->n_heads < 1)
    why = "block sizes, token counts or head count out of range";
  else if (l->n_qblocks != (l->n_q + l->block_q - 1) / l->block_q ||
           l->n_kblocks != (l->n_k + l->block_k - 1) / l->block_k)
    why = "block counts do not match tokens / block size";
  else if (l->row_ptr == NULL)
    why = "missing row_ptr";
  for (int h = 0; why == NULL && h < l->n_heads; h++) {
    const int32_t *rp = l->row_ptr + (size_t) h * (l->n_qblocks + 1);
    for (int i = 0; why == NULL && i < l->n_qblocks; i++) {
      if (rp[i + 1] < rp[i] || rp[i] < 0 || (rp[i + 1] > rp[i] && l->cols == NULL))
        why = "row_ptr decreases or cols missing";
      for (int32_t j = rp[i]; why == NULL && j < rp[i + 1]; j++)
        if (l->cols[j] < 0 || l->cols[j] >= l->n_kblocks || (j > rp[i] && l->cols[j] <= l->cols[j - 1]))
          why = "cols out of range or not ascending";
    }
  }
  if (why)
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "invalid block layout: %s", why);
  return why == NULL;
}

typedef struct {
  int tile, count;
} tile_work;

static int
heavier_first (const void *a, const void *b)
{
  const tile_work *x = a, *y = b;
  if (x->count != y->count)
    return y->count - x->count;
  return x->tile - y->tile;
}

static int
cmp_int (const void *a, const void *b)
{
  const int x = *(const int *) a, y = *(const int *) b;
  return (x > y) - (x < y);
}

/* Scratch for map_row, sized for the layout's key blocks and the finest key tiles. */
typedef struct {
  int *cnt;      /* per key block: rows of the span keeping it */
  int *touched;  /* key blocks with cnt > 0 */
  int *cand;     /* candidate key tiles */
  guint8 *seen;
} map_scratch;

/* Appends query tile qt's kept key tiles (tq × tk kernel tiles) of head h to cols;
 * returns how many of them are partial. */
static int64_t
map_row (const vdit_block_layout *l, int h, int qt, int tq, int tk, GArray *cols,
         map_scratch *w)
{
  const int nqb = l->n_qblocks;
  const int32_t *rp = l->row_ptr + (size_t) h * (nqb + 1);
  const int r0 = qt * tq, r1 = MIN (l->n_q, r0 + tq);
  const int qb0 = r0 / l->block_q, qb1 = (r1 - 1) / l->block_q, span = qb1 - qb0 + 1;
  int n_touched = 0, n_cand = 0;
  int64_t partial = 0;
  for (int qb = qb0; qb <= qb1; qb++)
    for (int32_t j = rp[qb]; j < rp[qb + 1]; j++)
      if (w->cnt[l->cols[j]]++ == 0)
        w->touched[n_touched++] = l->cols[j];
  for (int i = 0; i < n_touched; i++) {
    const int kb = w->touched[i];
    const int t0 = kb * l->block_k / tk;
    const int t1 = (MIN ((int64_t) (kb + 1) * l->block_k, l->n_k) - 1) / tk;
    for (int kt = t0; kt <= t1; kt++)
      if (!w->seen[kt]) {
        w->seen[kt] = 1;
        w->cand[n_cand++] = kt;
      }
  }
  qsort (w->cand, n_cand, sizeof (int), cmp_int);
  for (int i = 0; i < n_cand; i++) {
    const int kt = w->cand[i], c0 = kt * tk, c1 = MIN (l->n_k, c0 + tk);
    gboolean all = c1 - c0 == tk;
    for (int kb = c0 / l->block_k; all && kb <= (c1 - 1) / l->block_k; kb++)
      all = w->cnt[kb] == span;
    const int32_t v = kt | (all ? 0 : VDIT_CUDA_ATTN_PARTIAL);
    g_array_append_val (cols, v);
    partial += !all;
    w->seen[kt] = 0;
  }
  for (int i = 0; i < n_touched; i++)
    w->cnt[w->touched[i]] = 0;
  return partial;
}

/* Every head's CSR over tq × tk kernel tiles (row_ptr: H × (nqt + 1)), and each head's
 * query tiles heaviest first (order: H × nqt). */
static int64_t
map_layout (const vdit_block_layout *l, int tq, int tk, int32_t *row_ptr, int32_t *order,
            GArray *cols, map_scratch *w, tile_work *work)
{
  const int nqt = (l->n_q + tq - 1) / tq;
  int64_t partial = 0;
  for (int h = 0; h < l->n_heads; h++) {
    for (int qt = 0; qt < nqt; qt++) {
      row_ptr[(size_t) h * (nqt + 1) + qt] = cols->len;
      const int64_t part = map_row (l, h, qt, tq, tk, cols, w);
      /* a masked tile costs about two unmasked ones */
      work[qt] = (tile_work) { qt, (int) (cols->len - row_ptr[(size_t) h * (nqt + 1) + qt] + part) };
      partial += part;
    }
    row_ptr[(size_t) h * (nqt + 1) + nqt] = cols->len;
    qsort (work, nqt, sizeof (tile_work), heavier_first);
    for (int qt = 0; qt < nqt; qt++)
      order[(size_t) h * nqt + qt] = work[qt].tile;
  }
  return partial;
}

void *
vdit_cuda_layout_new (void *ctx, const vdit_block_layout *l, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  if (!check_layout (l, error))
    return NULL;
  const int H = l->n_heads, nqb = l->n_qblocks, nkb = l->n_kblocks;
  const int nqt = (l->n_q + TQ - 1) / TQ, nkt = (l->n_k + TK - 1) / TK;
  const int nqw = (l->n_q + WQ - 1) / WQ;
  const size_t n_bits = (size_t) H * nqb * nkb, n_words = (n_bits + 31) / 32;

  uint32_t *bitmap = g_new0 (uint32_t, MAX (n_words, 1));
  int32_t *row_ptr = g_new (int32_t, (size_t) H * (nqt + 1));
  int32_t *order = g_new (int32_t, MAX ((size_t) H * nqt, 1));
  int32_t *row_ptr_w = g_new (int32_t, (size_t) H * (nqw + 1));
  int32_t *order_w = g_new (int32_t, MAX ((size_t) H * nqw, 1));
  GArray *cols = g_array_new (FALSE, FALSE, sizeof (int32_t));
  GArray *cols_w = g_array_new (FALSE, FALSE, sizeof (int32_t));
  map_scratch w = {
    .cnt = g_new0 (int, MAX (nkb, 1)), .touched = g_new (int, MAX (nkb, 1)),
    .cand = g_new (int, MAX (nkt, 1)), .seen = g_new0 (guint8, MAX (nkt, 1)),
  };
  tile_work *work = g_new (tile_work, MAX (nqt, 1));
  const int npairs = (nqt + 1) / 2;
  int32_t *order2 = g_new (int32_t, MAX ((size_t) H * npairs, 1));
  tile_work *pairs = g_new (tile_work, MAX (npairs, 1));

  for (int h = 0; h < H; h++) {
    const int32_t *rp = l->row_ptr + (size_t) h * (nqb + 1);
    for (int qb = 0; qb < nqb; qb++)
      for (int32_t j = rp[qb]; j < rp[qb + 1]; j++) {
        const size_t bit = ((size_t) h * nqb + qb) * nkb + l->cols[j];
        bitmap[bit >> 5] |= 1u << (bit & 31);
      }
  }
  const int64_t partial_w = map_layout (l, WQ, WK, row_ptr_w, order_w, cols_w, &w, work);
  const int64_t partial_tiles = map_layout (l, TQ, TK, row_ptr, order, cols, &w, work);
  for (int h = 0; h < H; h++) {
    const int32_t *rp = row_ptr + (size_t) h * (nqt + 1);
    for (int pr = 0; pr < npairs; pr++) {
      const int last = MIN (2 * pr + 2, nqt);
      pairs[pr] = (tile_work) { pr, rp[last] - rp[2 * pr] };
    }
    qsort (pairs, npairs, sizeof (tile_work), heavier_first);
    for (int pr = 0; pr < npairs; pr++)
      order2[(size_t) h * npairs + pr] = pairs[pr].tile;
  }

  /* one device allocation of 4-byte elements:
   * row_ptr | order | order2 | cols | bitmap | row_ptr_w | order_w | cols_w */
  const size_t n_rp = (size_t) H * (nqt + 1), n_ord = (size_t) H * nqt, n_cols = cols->len;
  const size_t n_ord2 = (size_t) H * npairs;
  const size_t n_rpw = (size_t) H * (nqw + 1), n_ordw = (size_t) H * nqw, n_colw = cols_w->len;
  const struct {
    const void *src;
    size_t n;
  } parts[] = {
    { row_ptr, n_rp }, { order, n_ord }, { order2, n_ord2 }, { cols->data, n_cols },
    { bitmap, n_words }, { row_ptr_w, n_rpw }, { order_w, n_ordw }, { cols_w->data, n_colw },
  };
  size_t total = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (parts); i++)
    total += parts[i].n * 4;
  cuda_layout *cl = g_new0 (cuda_layout, 1);
  gboolean ok = vdit_cuda_enter (c);
  if (ok && (cl->mem = vdit_cuda_mem_alloc (c, MAX (total, 4), "an attention layout",
                                            error)) == NULL) {
    g_free (cl);
    cl = NULL;
    ok = FALSE;
  }
  if (ok) {
    int32_t *d[G_N_ELEMENTS (parts)];
    int32_t *at = cl->mem;
    for (size_t i = 0; ok && i < G_N_ELEMENTS (parts); i++) {
      d[i] = at;
      ok = VDIT_CUDA_CHECK (c, cudaMemcpyAsync (at, parts[i].src, parts[i].n * 4,
                                                cudaMemcpyHostToDevice, c->stream));
      at += parts[i].n;
    }
    ok = ok && VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream)); /* host arrays go next */
    if (ok)
      cl->dev = (vdit_cuda_attn_layout) {
        .n_heads = H, .nq = l->n_q, .nk = l->n_k, .n_qtiles = nqt, .n_ktiles = nkt,
        .block_q = l->block_q, .block_k = l->block_k, .n_qblocks = nqb, .n_kblocks = nkb,
        .row_ptr = d[0], .order = d[1], .order2 = d[2], .cols = d[3],
        .bitmap = (const uint32_t *) d[4],
        .kept_tiles = (int64_t) n_cols, .partial_tiles = partial_tiles,
        .n_wide_qtiles = nqw, .wide_row_ptr = d[5], .wide_order = d[6], .wide_cols = d[7],
        .wide_kept_tiles = (int64_t) n_colw, .wide_partial_tiles = partial_w,
      };
    if (!ok) {
      vdit_cuda_mem_free (c, cl->mem);
      g_free (cl);
      cl = NULL;
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "cannot upload an attention layout to CUDA device %d", c->device);
    }
  } else if (cl) {
    g_free (cl);
    cl = NULL;
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "CUDA device %d unusable", c->device);
  }

  g_free (bitmap);
  g_free (row_ptr);
  g_free (order);
  g_free (row_ptr_w);
  g_free (order_w);
  g_free (order2);
  g_free (pairs);
  g_array_free (cols, TRUE);
  g_array_free (cols_w, TRUE);
  g_free (w.cnt);
  g_free (w.touched);
  g_free (w.cand);
  g_free (w.seen);
  g_free (work);
  return cl; /* &cl->dev == cl: the attention slot reads it as vdit_cuda_attn_layout */
}

/* AdaSpa's choice without the scores leaving the device: rank (sort every row, recall
 * curves, the heads' hand-over of blocks), read back the heads' counts (a few bytes: the
 * layout's size depends on them), then build the lists. Only 64 × 64 blocks, which are
 * the kernels' tiles, so the lists need no mapping; other sizes return NULL, error unset. */
void *
vdit_cuda_adaptive_layout (void *ctx, const float *scores, int heads, int n_q, int n_k,
                           int block_q, int block_k, float sparsity, int *keep,
                           double *density, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  const int nqb = (n_q + TQ - 1) / TQ, nkb = (n_k + TK - 1) / TK;
  if (block_q != TQ || block_k != TK || heads < 1 || n_q < 1 || n_k < 1 ||
      nkb > VDIT_CUDA_ADAPTIVE_MAX_BLOCKS || (int64_t) heads * nqb > G_MAXINT32 / 2)
    return NULL;
  const int min_keep = MIN (2, nkb);
  const int target = CLAMP ((int) lround ((1.0 - sparsity) * nkb), min_keep, nkb);
  if (!vdit_cuda_enter (c)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "CUDA device %d unusable", c->device);
    return NULL;
  }
  const size_t scratch_bytes = vdit_cuda_adaptive_scratch_bytes (heads, nqb, nkb);
  cuda_layout *cl = NULL;
  void *scratch = vdit_cuda_mem_alloc (c, scratch_bytes + (size_t) heads * sizeof (int),
                                       "choosing an attention pattern", error);
  if (scratch == NULL)
    return NULL;
  int *keep_dev = (int *) ((char *) scratch + scratch_bytes);
  gboolean ok =
      VDIT_CUDA_CHECK (c, vdit_cuda_adaptive_rank_launch (scratch, keep_dev, scores, heads, nqb,
                                                          nkb, target, min_keep,
                                                          VDIT_ADAPTIVE_RECALL, c->stream)) &&
      VDIT_CUDA_CHECK (c, cudaMemcpyAsync (keep, keep_dev, (size_t) heads * sizeof (int),
                                           cudaMemcpyDeviceToHost, c->stream)) &&
      VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream));
  int64_t kept = 0;
  for (int h = 0; ok && h < heads; h++)
    kept += (int64_t) keep[h] * nqb;
  const size_t n_rp = (size_t) heads * (nqb + 1), n_ord = (size_t) heads * nqb;
  const size_t n_words = ((size_t) heads * nqb * nkb + 31) / 32;
  if (ok) {
    cl = g_new0 (cuda_layout, 1);
    const size_t total = (n_rp + n_ord + (size_t) kept + n_words) * 4;
    if ((cl->mem = vdit_cuda_mem_alloc (c, total, "an attention layout", error)) == NULL) {
      g_clear_pointer (&cl, g_free);
      ok = FALSE;
    }
  }
  if (ok) {
    int32_t *d = cl->mem;
    int32_t *row_ptr = d, *order = d + n_rp, *cols = d + n_rp + n_ord;
    uint32_t *bitmap = (uint32_t *) (cols + kept);
    ok = VDIT_CUDA_CHECK (c, cudaMemsetAsync (bitmap, 0, n_words * 4, c->stream)) &&
         VDIT_CUDA_CHECK (c, vdit_cuda_adaptive_build_launch (row_ptr, cols, order, bitmap,
                                                              scratch, keep_dev, heads, nqb,
                                                              nkb, n_k, c->stream));
    cl->dev = (vdit_cuda_attn_layout) {
      .n_heads = heads, .nq = n_q, .nk = n_k, .n_qtiles = nqb, .n_ktiles = nkb,
      .block_q = TQ, .block_k = TK, .n_qblocks = nqb, .n_kblocks = nkb,
      .row_ptr = row_ptr, .order = order, .cols = cols, .bitmap = bitmap,
      .kept_tiles = kept, /* partial tiles are not counted here */
    };
    if (!ok) {
      vdit_cuda_mem_free (c, cl->mem);
      g_clear_pointer (&cl, g_free);
    }
  }
  vdit_cuda_mem_free (c, scratch);
  if (!ok && error && *error == NULL)
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "choosing an attention pattern failed on CUDA device %d", c->device);
  if (ok)
    *density = (double) kept / ((double) heads * nqb * nkb);
  return cl;
}

void
vdit_cuda_layout_free (void *ctx, void *layout)
{
  vdit_cuda_ctx *c = ctx;
  cuda_layout *cl = layout;
  if (cl == NULL)
    return;
  vdit_cuda_mem_free (c, cl->mem);
  g_free (cl);
}
