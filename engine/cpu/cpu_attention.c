/* Block-sparse flash attention on the CPU: the reference every GPU kernel is checked
 * against, and fast enough that its time follows the number of kept blocks.
 *
 * Work is split into tasks of (head, query tile of up to TQ rows inside one query
 * block). A task walks the kept key blocks of its query block (adjacent blocks merged
 * into one span) in tiles of TK keys with an online softmax, so memory is
 * O(TQ·(TK + head_dim)) per thread whatever the sequence length, and skipped blocks are
 * never touched. Each output row is produced by exactly one task in a fixed order, so
 * results are bit-identical from run to run and for any thread count.
 */
#include "cpu_attention.h"
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
  float *kt;  /* (head_dim, TK) key tile, transposed, zero-padded */
  float *s;   /* (TQ, TK) scores, then probabilities */
  float *acc; /* (TQ, head_dim) un-normalised output */
  float m[TQ], l[TQ];
} attn_scratch;

/* Eight-lane vectors (GCC/Clang extensions): lowered to AVX where the clone below
 * allows it, to pairs of SSE registers otherwise, with the same per-lane arithmetic,
 * so every build computes bit-identical results. */
typedef float v8f __attribute__ ((vector_size (32)));
typedef int32_t v8i __attribute__ ((vector_size (32)));

#if defined(__GNUC__) && !defined(__clang__)
/* the helpers below are all inlined: no vector crosses a real call */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__ ((target_clones ("avx2", "default")))
#else
#define KERNEL
#endif

static inline __attribute__ ((always_inline)) int
imin (int a, int b)
{
  return a < b ? a : b;
}

static inline __attribute__ ((always_inline)) v8f
v8_load (const float *p)
{
  v8f v;
  memcpy (&v, p, sizeof v);
  return v;
}

static inline __attribute__ ((always_inline)) void
v8_store (float *p, v8f v)
{
  memcpy (p, &v, sizeof v);
}

static inline __attribute__ ((always_inline)) v8f
v8_splat (float x)
{
  return (v8f) { x, x, x, x, x, x, x, x };
}

/* mask ? a : b, lane by lane (mask lanes all ones or all zeros) */
static inline __attribute__ ((always_inline)) v8f
v8_select (v8i mask, v8f a, v8f b)
{
  return (v8f) (((v8i) a & mask) | ((v8i) b & ~mask));
}

/* exp(x) lane by lane (Cephes' expf: Cody–Waite reduction, degree-6 polynomial; under
 * 2 ulp). Lanes below -87.3, -inf included, give exactly 0. */
static inline __attribute__ ((always_inline)) v8f
v8_exp (v8f x)
{
  const v8f magic = v8_splat (12582912.0f); /* 1.5·2²³: adding it rounds to an integer */
  const v8i dead = x < v8_splat (-87.3f);
  x = v8_select (x > v8_splat (88.3f), v8_splat (88.3f), x);
  x = v8_select (dead, v8_splat (0.0f), x);
  const v8f t = x * v8_splat (1.44269504088896341f) + magic;
  const v8f n = t - magic;
  const v8f r = x - n * v8_splat (0.693359375f) - n * v8_splat (-2.12194440e-4f);
  v8f p = v8_splat (1.9875691500e-4f);
  p = p * r + v8_splat (1.3981999507e-3f);
  p = p * r + v8_splat (8.3333519073e-3f);
  p = p * r + v8_splat (4.1665795894e-2f);
  p = p * r + v8_splat (1.6666665459e-1f);
  p = p * r + v8_splat (5.0000001201e-1f);
  p = p * r * r + r + v8_splat (1.0f);
  const v8i bits = ((v8i) t - (v8i) magic + 127) << 23;
  const v8f y = p * (v8f) bits;
  return (v8f) ((v8i) y & ~dead);
}

/* kt(d, j) = k(j, d) for j < nc, 0 beyond. */
static inline __attribute__ ((always_inline)) void
load_key_tile (float *kt, const float *k, int ldk, int nc, int head_dim)
{
  if (nc < TK)
    memset (kt, 0, sizeof (float) * (size_t) head_dim * TK);
  for (int j = 0; j < nc; j++) {
    const float *kj = k + (size_t) j * ldk;
    for (int d = 0; d < head_dim; d++)
      kt[(size_t) d * TK + j] = kj[d];
  }
}

/* s(i, j) = q(i)·k(j)·scale for nr rows, four rows × 16 keys per register block;
 * columns ≥ nc are set to -inf. */
static inline __attribute__ ((always_inline)) void
tile_scores (float *s, const float *q, int ldq, int nr, const float *kt, int nc, int head_dim,
             float scale)
{
  const v8f vs = v8_splat (scale);
  int i = 0;
  for (; i + 4 <= nr; i += 4) {
    const float *q0 = q + (size_t) i * ldq, *q1 = q0 + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
    for (int j = 0; j < TK; j += 16) {
      v8f a0 = { 0 }, b0 = { 0 }, a1 = { 0 }, b1 = { 0 };
      v8f a2 = { 0 }, b2 = { 0 }, a3 = { 0 }, b3 = { 0 };
      for (int d = 0; d < head_dim; d++) {
        const v8f k0 = v8_load (kt + (size_t) d * TK + j), k1 = v8_load (kt + (size_t) d * TK + j + 8);
        a0 += q0[d] * k0, b0 += q0[d] * k1;
        a1 += q1[d] * k0, b1 += q1[d] * k1;
        a2 += q2[d] * k0, b2 += q2[d] * k1;
        a3 += q3[d] * k0, b3 += q3[d] * k1;
      }
      float *si = s + (size_t) i * TK + j;
      v8_store (si, a0 * vs), v8_store (si + 8, b0 * vs);
      v8_store (si + TK, a1 * vs), v8_store (si + TK + 8, b1 * vs);
      v8_store (si + 2 * TK, a2 * vs), v8_store (si + 2 * TK + 8, b2 * vs);
      v8_store (si + 3 * TK, a3 * vs), v8_store (si + 3 * TK + 8, b3 * vs);
    }
  }
  for (; i < nr; i++) {
    const float *qi = q + (size_t) i * ldq;
    for (int j = 0; j < TK; j += 16) {
      v8f a = { 0 }, b = { 0 };
      for (int d = 0; d < head_dim; d++) {
        a += qi[d] * v8_load (kt + (size_t) d * TK + j);
        b += qi[d] * v8_load (kt + (size_t) d * TK + j + 8);
      }
      v8_store (s + (size_t) i * TK + j, a * vs);
      v8_store (s + (size_t) i * TK + j + 8, b * vs);
    }
  }
  for (i = 0; nc < TK && i < nr; i++)
    for (int j = nc; j < TK; j++)
      s[(size_t) i * TK + j] = -INFINITY;
}

/* acc(i, :) += Σ_j p(i, j)·v(j, :) over nc keys: four rows × 16 channels per register
 * block, then 8 channels, then single channels. */
static inline __attribute__ ((always_inline)) void
tile_pv (float *acc, const float *p, int nr, const float *v, int ldv, int nc, int head_dim)
{
  int i = 0;
  for (; i + 4 <= nr; i += 4) {
    float *c0 = acc + (size_t) i * head_dim, *c1 = c0 + head_dim, *c2 = c1 + head_dim;
    float *c3 = c2 + head_dim;
    const float *p0 = p + (size_t) i * TK, *p1 = p0 + TK, *p2 = p1 + TK, *p3 = p2 + TK;
    int d = 0;
    for (; d + 16 <= head_dim; d += 16) {
      v8f a0 = v8_load (c0 + d), b0 = v8_load (c0 + d + 8);
      v8f a1 = v8_load (c1 + d), b1 = v8_load (c1 + d + 8);
      v8f a2 = v8_load (c2 + d), b2 = v8_load (c2 + d + 8);
      v8f a3 = v8_load (c3 + d), b3 = v8_load (c3 + d + 8);
      for (int j = 0; j < nc; j++) {
        const float *vj = v + (size_t) j * ldv + d;
        const v8f x = v8_load (vj), y = v8_load (vj + 8);
        a0 += p0[j] * x, b0 += p0[j] * y;
        a1 += p1[j] * x, b1 += p1[j] * y;
        a2 += p2[j] * x, b2 += p2[j] * y;
        a3 += p3[j] * x, b3 += p3[j] * y;
      }
      v8_store (c0 + d, a0), v8_store (c0 + d + 8, b0);
      v8_store (c1 + d, a1), v8_store (c1 + d + 8, b1);
      v8_store (c2 + d, a2), v8_store (c2 + d + 8, b2);
      v8_store (c3 + d, a3), v8_store (c3 + d + 8, b3);
    }
    for (; d + 8 <= head_dim; d += 8) {
      v8f a0 = v8_load (c0 + d), a1 = v8_load (c1 + d), a2 = v8_load (c2 + d);
      v8f a3 = v8_load (c3 + d);
      for (int j = 0; j < nc; j++) {
        const v8f x = v8_load (v + (size_t) j * ldv + d);
        a0 += p0[j] * x, a1 += p1[j] * x, a2 += p2[j] * x, a3 += p3[j] * x;
      }
      v8_store (c0 + d, a0), v8_store (c1 + d, a1), v8_store (c2 + d, a2);
      v8_store (c3 + d, a3);
    }
    for (; d < head_dim; d++)
      for (int j = 0; j < nc; j++) {
        const float x = v[(size_t) j * ldv + d];
        c0[d] += p0[j] * x, c1[d] += p1[j] * x, c2[d] += p2[j] * x, c3[d] += p3[j] * x;
      }
  }
  for (; i < nr; i++) {
    float *ci = acc + (size_t) i * head_dim;
    const float *pi = p + (size_t) i * TK;
    int d = 0;
    for (; d + 8 <= head_dim; d += 8) {
      v8f a = v8_load (ci + d);
      for (int j = 0; j < nc; j++)
        a += pi[j] * v8_load (v + (size_t) j * ldv + d);
      v8_store (ci + d, a);
    }
    for (; d < head_dim; d++)
      for (int j = 0; j < nc; j++)
        ci[d] += pi[j] * v[(size_t) j * ldv + d];
  }
}

/* One row of the online softmax: new running max, rescale of what was accumulated,
 * p = exp(s − max) in place (0 for masked keys, all 0 while the row has no finite
 * score). */
static inline __attribute__ ((always_inline)) void
softmax_row (float *si, float *m, float *l, float *acc, int head_dim)
{
  v8f vmx = v8_splat (-INFINITY);
  for (int j = 0; j < TK; j += 8) {
    const v8f x = v8_load (si + j);
    vmx = v8_select (x > vmx, x, vmx);
  }
  float mx = *m;
  for (int c = 0; c < 8; c++)
    mx = vmx[c] > mx ? vmx[c] : mx;
  if (mx == -INFINITY) {
    memset (si, 0, sizeof (float) * TK);
    return;
  }
  const v8f vm = v8_splat (mx);
  v8f sum = { 0 };
  for (int j = 0; j < TK; j += 8) {
    const v8f e = v8_exp (v8_load (si + j) - vm);
    v8_store (si + j, e);
    sum += e;
  }
  const float alpha = *m == -INFINITY ? 0.0f : expf (*m - mx);
  if (alpha != 1.0f)
    for (int d = 0; d < head_dim; d++)
      acc[d] *= alpha;
  *l = *l * alpha + (((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7])));
  *m = mx;
}

/* Rows [r0, r0 + nr) of one head against the key spans [spans[2i], spans[2i+1]).
 * q/k/v/out point at the head's first column; bias at the head's (nq, nk) plane. */
KERNEL static void
attend_rows (attn_scratch *sc, float *out, int ldo, const float *q, int ldq, const float *k,
             int ldk, const float *v, int ldv, int r0, int nr, int nk, int head_dim,
             float scale, const float *bias, const int *spans, int n_spans, float *lse)
{
  for (int i = 0; i < nr; i++) {
    sc->m[i] = -INFINITY;
    sc->l[i] = 0.0f;
  }
  memset (sc->acc, 0, sizeof (float) * (size_t) nr * head_dim);

  for (int sp = 0; sp < n_spans; sp++) {
    for (int k0 = spans[2 * sp]; k0 < spans[2 * sp + 1]; k0 += TK) {
      const int nc = imin (TK, spans[2 * sp + 1] - k0);
      load_key_tile (sc->kt, k + (size_t) k0 * ldk, ldk, nc, head_dim);
      tile_scores (sc->s, q + (size_t) r0 * ldq, ldq, nr, sc->kt, nc, head_dim, scale);
      for (int i = 0; i < nr; i++) {
        float *si = sc->s + (size_t) i * TK;
        if (bias) {
          const float *bi = bias + (size_t) (r0 + i) * nk + k0;
          for (int j = 0; j < nc; j++)
            si[j] += bi[j];
        }
        softmax_row (si, &sc->m[i], &sc->l[i], sc->acc + (size_t) i * head_dim, head_dim);
      }
      tile_pv (sc->acc, sc->s, nr, v + (size_t) k0 * ldv, ldv, nc, head_dim);
    }
  }

  for (int i = 0; i < nr; i++) {
    float *oi = out + (size_t) (r0 + i) * ldo;
    const float *ai = sc->acc + (size_t) i * head_dim;
    if (sc->l[i] > 0.0f) {
      const float inv = 1.0f / sc->l[i];
      for (int d = 0; d < head_dim; d++)
        oi[d] = ai[d] * inv;
      if (lse)
        lse[r0 + i] = sc->m[i] + logf (sc->l[i]);
    } else {
      memset (oi, 0, sizeof (float) * head_dim);
      if (lse)
        lse[r0 + i] = -INFINITY;
    }
  }
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
    spans[2 * n + 1] = imin (b1 * l->block_k, nk);
    n++;
  }
  return n;
}

void
cpu_attention (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k, int ldk,
               const void *v, int ldv, int nq, int nk, int heads, int head_dim, float scale,
               const void *bias, const void *layout, float *lse)
{
  const cpu_layout *lay = layout;
  if (nq <= 0 || heads <= 0)
    return;
  if (lay && (lay->l.n_q != nq || lay->l.n_k != nk
              || (lay->l.n_heads != 1 && lay->l.n_heads != heads))) {
    g_critical ("attention layout is %d×%d tokens, %d heads; the call has %d×%d, %d heads",
                lay->l.n_q, lay->l.n_k, lay->l.n_heads, nq, nk, heads);
    return;
  }
  const int bq = lay ? lay->l.block_q : DENSE_BLOCK;
  const int nqb = lay ? lay->l.n_qblocks : (nq + bq - 1) / bq;
  const int n_kblocks = lay ? lay->l.n_kblocks : 1;
  const int sub = (bq + TQ - 1) / TQ;
  const int64_t per_head = (int64_t) nqb * sub;
  const int64_t n_tasks = per_head * heads;

#pragma omp parallel
  {
    attn_scratch sc;
    sc.kt = g_new (float, (size_t) head_dim * TK);
    sc.s = g_new (float, (size_t) TQ * TK);
    sc.acc = g_new (float, (size_t) TQ * head_dim);
    int *spans = g_new (int, 2 * (size_t) n_kblocks);

#pragma omp for schedule(static, 1)
    for (int64_t t = 0; t < n_tasks; t++) {
      const int h = (int) (t / per_head);
      const int qb = (int) (t % per_head / sub);
      const int st = (int) (t % sub);
      const int r0 = qb * bq + st * TQ;
      const int r_end = imin ((qb + 1) * bq, nq);
      if (r0 >= r_end)
        continue;
      int n_spans = 1;
      if (lay) {
        n_spans = layout_spans (lay, h, qb, nk, spans);
      } else {
        spans[0] = 0;
        spans[1] = nk;
      }
      const size_t col = (size_t) h * head_dim;
      attend_rows (&sc, (float *) out + col, ldo, (const float *) q + col, ldq,
                   (const float *) k + col, ldk, (const float *) v + col, ldv, r0,
                   imin (TQ, r_end - r0), nk, head_dim, scale,
                   bias ? (const float *) bias + (size_t) h * nq * nk : NULL, spans,
                   nk > 0 ? n_spans : 0, lse ? lse + (size_t) h * nq : NULL);
    }

    g_free (spans);
    g_free (sc.acc);
    g_free (sc.s);
    g_free (sc.kt);
  }
}

void *
cpu_layout_new (void *ctx, const vdit_block_layout *layout, GError **error)
{
  const vdit_block_layout *l = layout;
  if (l->block_q <= 0 || l->block_k <= 0 || l->n_q <= 0 || l->n_k <= 0 || l->n_heads <= 0
      || l->n_qblocks != (l->n_q + l->block_q - 1) / l->block_q
      || l->n_kblocks != (l->n_k + l->block_k - 1) / l->block_k) {
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

/* Σ over the tile of exp(s − lse(row)); masked columns are -inf, rows with lse = -inf
 * hold no mass. */
static inline __attribute__ ((always_inline)) double
tile_mass (const float *s, int nr, const float *lse)
{
  double total = 0.0;
  for (int i = 0; i < nr; i++) {
    if (lse[i] == -INFINITY)
      continue;
    const v8f vl = v8_splat (lse[i]);
    v8f sum = { 0 };
    for (int j = 0; j < TK; j += 8)
      sum += v8_exp (v8_load (s + (size_t) i * TK + j) - vl);
    total += ((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7]));
  }
  return total;
}

/* One query block's row of block scores, accumulated in double. */
KERNEL static void
score_row (double *row, float *kt, float *s, const float *q, int ldq, const float *k, int ldk,
           const float *lse, int r_begin, int r_end, int nk, int head_dim, float scale,
           int block_k, int nkb)
{
  memset (row, 0, sizeof (double) * nkb);
  for (int r0 = r_begin; r0 < r_end; r0 += TQ) {
    const int nr = imin (TQ, r_end - r0);
    for (int kb = 0; kb < nkb; kb++) {
      const int c_end = imin ((kb + 1) * block_k, nk);
      for (int k0 = kb * block_k; k0 < c_end; k0 += TK) {
        const int nc = imin (TK, c_end - k0);
        load_key_tile (kt, k + (size_t) k0 * ldk, ldk, nc, head_dim);
        tile_scores (s, q + (size_t) r0 * ldq, ldq, nr, kt, nc, head_dim, scale);
        row[kb] += tile_mass (s, nr, lse + r0);
      }
    }
  }
}

void
cpu_block_scores (void *ctx, float *scores, const void *q, int ldq, const void *k, int ldk,
                  const float *lse, int nq, int nk, int heads, int head_dim, float scale,
                  int block_q, int block_k)
{
  if (nq <= 0 || nk <= 0 || heads <= 0)
    return;
  const int nqb = (nq + block_q - 1) / block_q;
  const int nkb = (nk + block_k - 1) / block_k;
  const int64_t n_tasks = (int64_t) heads * nqb;

#pragma omp parallel
  {
    float *kt = g_new (float, (size_t) head_dim * TK);
    float *s = g_new (float, (size_t) TQ * TK);
    double *row = g_new (double, nkb);

#pragma omp for schedule(static, 1)
    for (int64_t t = 0; t < n_tasks; t++) {
      const int h = (int) (t / nqb);
      const int qb = (int) (t % nqb);
      const size_t col = (size_t) h * head_dim;
      score_row (row, kt, s, (const float *) q + col, ldq, (const float *) k + col, ldk,
                 lse + (size_t) h * nq, qb * block_q, imin ((qb + 1) * block_q, nq), nk,
                 head_dim, scale, block_k, nkb);
      float *dst = scores + (size_t) t * nkb;
      for (int kb = 0; kb < nkb; kb++)
        dst[kb] = (float) row[kb];
    }

    g_free (row);
    g_free (s);
    g_free (kt);
  }
}
