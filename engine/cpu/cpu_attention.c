/* Block-sparse flash attention on the CPU: the reference every GPU kernel is checked
 * against, and fast enough that its time follows the number of kept blocks.
 *
 * Work is split into tasks of (head, query tile of up to TQ rows inside one query
 * block). A task walks the kept key blocks of its query block (adjacent blocks merged
 * into one span) in tiles of TK keys with an online softmax, so memory is
 * O(TQ·(TK + head_dim)) per thread whatever the sequence length, and skipped blocks are
 * never touched. Each output row is produced by exactly one task in a fixed order, so
 * results are bit-identical from run to run and for any thread count (on one machine:
 * the AVX2 and the 4-lane kernels sum in different orders).
 */
#include "cpu_attention.h"
#include "cpu_ops.h"
#include "vdit.h"

#include <math.h>
#include <string.h>

#define TQ 64          /* query rows per tile */
#define TK 64          /* keys per tile */
#define DENSE_BLOCK 64 /* query block of dense attention (task granularity) */

typedef struct {
  vdit_block_layout l; /* row_ptr/cols point at the copies below */
  int32_t *row_ptr;
  int32_t *cols;
} cpu_layout;

typedef struct {
  float *s;   /* (TQ, TK) scores, then probabilities */
  float *acc; /* (TQ, head_dim) un-normalised output */
  float m[TQ], l[TQ];
} attn_scratch;

/* The kernels, once per instruction set: AVX2 on x86-64 (chosen at run time), and
 * 4-lane vectors everywhere (SSE2, NEON). */
#define CPU_ISA_KERNELS "cpu_attention_kernels.h"
#include "cpu_isa_variants.h"

typedef void (*attend_rows_fn) (attn_scratch *sc, float *out, int ldo, const float *q, int ldq,
                                const float *kt, int ldkt, const float *v, int ldv, int r0,
                                int nr, int nk, int head_dim, float scale, const float *bias,
                                const int *spans, int n_spans, float *lse);
typedef void (*score_row_fn) (double *row, float *kt, float *s, const float *q, int ldq,
                              const float *k, int ldk, const float *lse, int r_begin,
                              int r_end, int nk, int head_dim, float scale, int block_k,
                              int nkb);

static gboolean
use_avx2 (void)
{
#ifdef HAVE_AVX2_KERNELS
  return __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
#else
  return FALSE;
#endif
}

static attend_rows_fn
pick_attend_rows (void)
{
#ifdef HAVE_AVX2_KERNELS
  if (use_avx2 ())
    return attend_rows_avx2;
#endif
  return attend_rows_base;
}

static score_row_fn
pick_score_row (void)
{
#ifdef HAVE_AVX2_KERNELS
  if (use_avx2 ())
    return score_row_avx2;
#endif
  return score_row_base;
}

static inline int
imin (int a, int b)
{
  return a < b ? a : b;
}

/* ⌈n / b⌉ for n ≥ 0, b ≥ 1, without overflow however large b is. */
static inline int
ceil_div (int n, int b)
{
  return (int) (((int64_t) n + b - 1) / b);
}

/* min (a·b, cap) for a, b ≥ 0, without overflow. */
static inline int
mul_min (int a, int b, int cap)
{
  const int64_t p = (int64_t) a * b;
  return p < cap ? (int) p : cap;
}

/* Kept key blocks of one query block as token spans, adjacent blocks merged. Returns
 * the number of spans written to spans (room for n_kblocks spans). */
static int
layout_spans (const cpu_layout *lay, int head, int qblock, int nk, int *spans)
{
  const vdit_block_layout *l = &lay->l;
  const int32_t *rp = lay->row_ptr + (size_t) (l->n_heads == 1 ? 0 : head) * (l->n_qblocks + 1);
  const int end = rp[qblock + 1];
  int n = 0;
  for (int c = rp[qblock]; c < end;) {
    const int b0 = lay->cols[c++];
    int b1 = b0 + 1;
    while (c < end && lay->cols[c] == b1) {
      b1++;
      c++;
    }
    spans[2 * n] = b0 * l->block_k;
    spans[2 * n + 1] = mul_min (b1, l->block_k, nk);
    n++;
  }
  return n;
}

/* Keys of every head transposed once per call: kt(h, d, j) = k(j, h·head_dim + d), rows
 * of ldkt ≥ nk + 16 columns, zero past nk, so that a tile may read whole vectors past
 * its last key. Each key tile is then read by every query block without being copied. */
typedef struct {
  float *kt;
  const float *k;
  int ldkt, ldk, nk, head_dim, chunk, n_chunks;
} transpose_job;

#define TRANSPOSE_CHUNK 64 /* keys per task */

static void
transpose_task (void *arg, int64_t t, int worker)
{
  const transpose_job *j = arg;
  const int h = (int) (t / j->n_chunks), j0 = (int) (t % j->n_chunks) * TRANSPOSE_CHUNK;
  const int j1 = imin (j->nk, j0 + TRANSPOSE_CHUNK), hd = j->head_dim;
  float *kh = j->kt + (size_t) h * hd * j->ldkt;
  for (int r = j0; r < j1; r++) {
    const float *kr = j->k + (size_t) r * j->ldk + (size_t) h * hd;
    for (int d = 0; d < hd; d++)
      kh[(size_t) d * j->ldkt + r] = kr[d];
  }
  if (j1 == j->nk)
    for (int d = 0; d < hd; d++)
      memset (kh + (size_t) d * j->ldkt + j->nk, 0, sizeof (float) * (j->ldkt - j->nk));
}

static void
transpose_keys (void *ctx, float *kt, int ldkt, const float *k, int ldk, int nk, int heads,
                int head_dim)
{
  transpose_job j = { kt, k, ldkt, ldk, nk, head_dim, TRANSPOSE_CHUNK,
                      ceil_div (nk, TRANSPOSE_CHUNK) };
  const int64_t n_tasks = (int64_t) heads * j.n_chunks;
  if ((int64_t) nk * heads * head_dim < 65536) {
    for (int64_t t = 0; t < n_tasks; t++)
      transpose_task (&j, t, 0);
  } else {
    cpu_run (ctx, n_tasks, transpose_task, &j);
  }
}

/* Per-thread scratch of the attention: scores, accumulator, spans, each 64-byte aligned. */
static size_t
scores_bytes (void)
{
  return ((size_t) TQ * TK * 4 + 63) / 64 * 64;
}

static size_t
acc_bytes (int head_dim)
{
  return ((size_t) TQ * head_dim * 4 + 63) / 64 * 64;
}

typedef struct {
  const cpu_layout *lay;
  attend_rows_fn attend;
  float *out, *lse;
  const float *q, *kt, *v, *bias;
  char *work;
  size_t per_thread;
  int ldo, ldq, ldkt, ldv, nq, nk, head_dim, bq, sub;
  int64_t per_head;
  float scale;
} attention_job;

/* Task t: head t / per_head, query block (t % per_head) / sub, its sub-tile t % sub. */
static void
attention_task (void *arg, int64_t t, int worker)
{
  const attention_job *j = arg;
  const int h = (int) (t / j->per_head);
  const int qb = (int) (t % j->per_head / j->sub);
  const int st = (int) (t % j->sub);
  const int64_t r0 = (int64_t) qb * j->bq + (int64_t) st * TQ;
  const int r_end = mul_min (qb + 1, j->bq, j->nq);
  if (r0 >= r_end)
    return;
  char *mine = j->work + j->per_thread * worker;
  attn_scratch sc;
  sc.s = (float *) mine;
  sc.acc = (float *) (mine + scores_bytes ());
  int *spans = (int *) ((char *) sc.acc + acc_bytes (j->head_dim));
  int n_spans = 1;
  if (j->lay) {
    n_spans = layout_spans (j->lay, h, qb, j->nk, spans);
  } else {
    spans[0] = 0;
    spans[1] = j->nk;
  }
  const size_t col = (size_t) h * j->head_dim;
  j->attend (&sc, j->out + col, j->ldo, j->q + col, j->ldq,
             j->kt + (size_t) h * j->head_dim * j->ldkt, j->ldkt, j->v + col, j->ldv, (int) r0,
             imin (TQ, r_end - (int) r0), j->nk, j->head_dim, j->scale,
             j->bias ? j->bias + (size_t) h * j->nq * j->nk : NULL, spans,
             j->nk > 0 ? n_spans : 0, j->lse ? j->lse + (size_t) h * j->nq : NULL);
}

void
cpu_attention (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k, int ldk,
               const void *v, int ldv, int nq, int nk, int heads, int head_dim, float scale,
               const void *bias, const void *layout, float *lse)
{
  const cpu_layout *lay = layout;
  if (nq <= 0 || heads <= 0 || cpu_cancelled (ctx)) /* its keys' transpose may run inline */
    return;
  if (lay && (lay->l.n_q != nq || lay->l.n_k != nk
              || (lay->l.n_heads != 1 && lay->l.n_heads != heads))) {
    g_critical ("attention layout is %d×%d tokens, %d heads; the call has %d×%d, %d heads",
                lay->l.n_q, lay->l.n_k, lay->l.n_heads, nq, nk, heads);
    return;
  }
  const int bq = lay ? lay->l.block_q : DENSE_BLOCK;
  const int nqb = lay ? lay->l.n_qblocks : ceil_div (nq, bq);
  const int n_kblocks = lay ? lay->l.n_kblocks : 1;
  const int sub = ceil_div (bq, TQ);
  const int nt = CPU_THREADS (ctx);

  /* scratch, kept in the context from call to call: the transposed keys, then per
   * thread the scores, accumulator and spans */
  cpu_context local = { 0 };
  cpu_context *c = ctx ? ctx : &local;
  const int ldkt = (MAX (nk, 0) + 16 + 15) / 16 * 16;
  const size_t kt_floats = (size_t) heads * head_dim * ldkt;
  const size_t per_thread = scores_bytes () + acc_bytes (head_dim)
                            + ((size_t) 2 * n_kblocks * sizeof (int) + 63) / 64 * 64;
  float *kt = cpu_scratch_get (&c->attn_keys, kt_floats * sizeof (float));
  char *work = cpu_scratch_get (&c->attn_work, per_thread * nt);
  if (nk > 0)
    transpose_keys (ctx, kt, ldkt, k, ldk, nk, heads, head_dim);

  attention_job j = {
    .lay = lay, .attend = pick_attend_rows (), .out = out, .lse = lse, .q = q, .kt = kt,
    .v = v, .bias = bias, .work = work, .per_thread = per_thread, .ldo = ldo, .ldq = ldq,
    .ldkt = ldkt, .ldv = ldv, .nq = nq, .nk = nk, .head_dim = head_dim, .bq = bq,
    .sub = sub, .per_head = (int64_t) nqb * sub, .scale = scale,
  };
  cpu_run (ctx, j.per_head * heads, attention_task, &j);
  if (c == &local) {
    cpu_scratch_free (&local.attn_keys);
    cpu_scratch_free (&local.attn_work);
  }
}

void *
cpu_layout_new (void *ctx, const vdit_block_layout *layout, GError **error)
{
  const vdit_block_layout *l = layout;
  if (l->block_q <= 0 || l->block_k <= 0 || l->n_q <= 0 || l->n_k <= 0 || l->n_heads <= 0
      || l->n_qblocks != ceil_div (l->n_q, l->block_q)
      || l->n_kblocks != ceil_div (l->n_k, l->block_k)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "block layout: %d×%d tokens in blocks of %d×%d do not make %d×%d blocks "
                 "(%d heads)", l->n_q, l->n_k, l->block_q, l->block_k, l->n_qblocks,
                 l->n_kblocks, l->n_heads);
    return NULL;
  }
  const size_t n_rows = (size_t) l->n_heads * (l->n_qblocks + 1);
  for (int h = 0; h < l->n_heads; h++) {
    const int32_t *rp = l->row_ptr + (size_t) h * (l->n_qblocks + 1);
    if (rp[0] < 0 || rp[l->n_qblocks] > l->row_ptr[n_rows - 1])
      goto bad_rows;
    for (int i = 0; i < l->n_qblocks; i++) {
      if (rp[i + 1] < rp[i])
        goto bad_rows;
      for (int c = rp[i]; c < rp[i + 1]; c++) {
        if (l->cols[c] < 0 || l->cols[c] >= l->n_kblocks
            || (c > rp[i] && l->cols[c] <= l->cols[c - 1])) {
          g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                       "block layout: head %d query block %d lists key block %d "
                       "(of %d; must be ascending, each once)", h, i, l->cols[c],
                       l->n_kblocks);
          return NULL;
        }
      }
    }
  }

  cpu_layout *lay = g_new0 (cpu_layout, 1);
  const size_t n_cols = (size_t) l->row_ptr[n_rows - 1];
  lay->l = *l;
  lay->row_ptr = g_memdup2 (l->row_ptr, n_rows * sizeof (int32_t));
  lay->cols = g_memdup2 (l->cols, MAX (n_cols, 1) * sizeof (int32_t));
  lay->l.row_ptr = lay->row_ptr;
  lay->l.cols = lay->cols;
  return lay;

bad_rows:
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
               "block layout: row_ptr must not decrease and must stay within "
               "cols (row_ptr[last] entries)");
  return NULL;
}

void
cpu_layout_free (void *ctx, void *layout)
{
  cpu_layout *lay = layout;
  if (lay == NULL)
    return;
  g_free (lay->row_ptr);
  g_free (lay->cols);
  g_free (lay);
}

typedef struct {
  score_row_fn score;
  float *scores, *kt, *s;
  double *row;
  const float *q, *k, *lse;
  int ldq, ldk, nq, nk, head_dim, block_q, block_k, nqb, nkb;
  float scale;
} scores_job;

static void
scores_task (void *arg, int64_t t, int worker)
{
  const scores_job *j = arg;
  const int h = (int) (t / j->nqb), qb = (int) (t % j->nqb);
  const size_t col = (size_t) h * j->head_dim;
  float *kt = j->kt + (size_t) worker * j->head_dim * TK, *s = j->s + (size_t) worker * TQ * TK;
  double *row = j->row + (size_t) worker * j->nkb;
  j->score (row, kt, s, j->q + col, j->ldq, j->k + col, j->ldk, j->lse + (size_t) h * j->nq,
            qb * j->block_q, mul_min (qb + 1, j->block_q, j->nq), j->nk, j->head_dim, j->scale,
            j->block_k, j->nkb);
  float *dst = j->scores + (size_t) t * j->nkb;
  for (int kb = 0; kb < j->nkb; kb++)
    dst[kb] = (float) row[kb];
}

void
cpu_block_scores (void *ctx, float *scores, const void *q, int ldq, const void *k, int ldk,
                  const float *lse, int nq, int nk, int heads, int head_dim, float scale,
                  int block_q, int block_k)
{
  if (nq <= 0 || nk <= 0 || heads <= 0)
    return;
  const int nt = CPU_THREADS (ctx);
  scores_job j = {
    .score = pick_score_row (), .scores = scores, .q = q, .k = k, .lse = lse, .ldq = ldq,
    .ldk = ldk, .nq = nq, .nk = nk, .head_dim = head_dim, .block_q = block_q,
    .block_k = block_k, .nqb = ceil_div (nq, block_q), .nkb = ceil_div (nk, block_k),
    .scale = scale,
  };
  /* per-thread scratch for the search step (not the per-step path) */
  j.kt = g_new (float, (size_t) nt * head_dim * TK);
  j.s = g_new (float, (size_t) nt * TQ * TK);
  j.row = g_new (double, (size_t) nt * j.nkb);
  cpu_run (ctx, (int64_t) heads * j.nqb, scores_task, &j);
  g_free (j.row);
  g_free (j.s);
  g_free (j.kt);
}
