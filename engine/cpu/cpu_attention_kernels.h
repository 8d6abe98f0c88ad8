/* The inner kernels of cpu_attention.c, written once for vectors of VW float lanes
 * (GCC/Clang vector extensions) and included once per instruction set: cpu_attention.c
 * defines VW and KNAME (name suffix) before each inclusion. Not a public header.
 *
 * Register blocks are 4 query rows × 2 vectors; every sum runs in a fixed order, so a
 * given build on a given machine gives bit-identical results every run. */

#include "cpu_vec.h"

typedef float KNAME (v4) __attribute__ ((vector_size (16)));
#define v4 KNAME (v4)

INLINE v4
KNAME (vload4) (const float *p)
{
  v4 v;
  memcpy (&v, p, sizeof v);
  return v;
}

INLINE void
KNAME (vstore4) (float *p, v4 v)
{
  memcpy (p, &v, sizeof v);
}

/* out(d) = in(d)·f for d < n (in place allowed). */
INLINE void
KNAME (scale_row) (float *out, const float *in, float f, int n)
{
  int d = 0;
  for (; d + VW <= n; d += VW)
    KNAME (vstore) (out + d, KNAME (vload) (in + d) * f);
  for (; d < n; d++)
    out[d] = in[d] * f;
}

/* kt(d, j) = k(j, d) for j < nc, 0 beyond. */
INLINE void
KNAME (load_key_tile) (float *kt, const float *k, int ldk, int nc, int head_dim)
{
  if (nc < TK)
    memset (kt, 0, sizeof (float) * (size_t) head_dim * TK);
  for (int j = 0; j < nc; j++) {
    const float *kj = k + (size_t) j * ldk;
    for (int d = 0; d < head_dim; d++)
      kt[(size_t) d * TK + j] = kj[d];
  }
}

/* s(i, j) = q(i)·k(j)·scale for nr rows and the first ncw columns (a multiple of 2·VW,
 * at least nc) of a transposed key tile kt(d, j) of row stride ldkt whose columns up to
 * ncw hold finite values; columns in [nc, ncw) are then set to -inf. */
INLINE void
KNAME (tile_scores) (float *s, const float *q, int ldq, int nr, const float *kt, int ldkt,
                     int nc, int ncw, int head_dim, float scale)
{
  int i = 0;
  for (; i + 4 <= nr; i += 4) {
    const float *q0 = q + (size_t) i * ldq, *q1 = q0 + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
    for (int j = 0; j < ncw; j += 2 * VW) {
      vf a0 = { 0 }, b0 = { 0 }, a1 = { 0 }, b1 = { 0 };
      vf a2 = { 0 }, b2 = { 0 }, a3 = { 0 }, b3 = { 0 };
      for (int d = 0; d < head_dim; d++) {
        const float *kd = kt + (size_t) d * ldkt + j;
        const vf k0 = KNAME (vload) (kd), k1 = KNAME (vload) (kd + VW);
        a0 += q0[d] * k0, b0 += q0[d] * k1;
        a1 += q1[d] * k0, b1 += q1[d] * k1;
        a2 += q2[d] * k0, b2 += q2[d] * k1;
        a3 += q3[d] * k0, b3 += q3[d] * k1;
      }
      float *si = s + (size_t) i * TK + j;
      KNAME (vstore) (si, a0 * scale), KNAME (vstore) (si + VW, b0 * scale);
      KNAME (vstore) (si + TK, a1 * scale), KNAME (vstore) (si + TK + VW, b1 * scale);
      KNAME (vstore) (si + 2 * TK, a2 * scale), KNAME (vstore) (si + 2 * TK + VW, b2 * scale);
      KNAME (vstore) (si + 3 * TK, a3 * scale), KNAME (vstore) (si + 3 * TK + VW, b3 * scale);
    }
  }
  for (; i < nr; i++) {
    const float *qi = q + (size_t) i * ldq;
    for (int j = 0; j < ncw; j += 2 * VW) {
      vf a = { 0 }, b = { 0 };
      for (int d = 0; d < head_dim; d++) {
        a += qi[d] * KNAME (vload) (kt + (size_t) d * ldkt + j);
        b += qi[d] * KNAME (vload) (kt + (size_t) d * ldkt + j + VW);
      }
      KNAME (vstore) (s + (size_t) i * TK + j, a * scale);
      KNAME (vstore) (s + (size_t) i * TK + j + VW, b * scale);
    }
  }
  for (i = 0; nc < ncw && i < nr; i++)
    for (int j = nc; j < ncw; j++)
      s[(size_t) i * TK + j] = -INFINITY;
}

/* acc(i, :) += Σ_j p(i, j)·v(j, :) over nc keys, in channel chunks of 2 vectors, then 1
 * vector, then single channels. */
INLINE void
KNAME (tile_pv) (float *acc, const float *p, int nr, const float *v, int ldv, int nc,
                 int head_dim)
{
  int i = 0;
  for (; i + 4 <= nr; i += 4) {
    float *c0 = acc + (size_t) i * head_dim, *c1 = c0 + head_dim, *c2 = c1 + head_dim;
    float *c3 = c2 + head_dim;
    const float *p0 = p + (size_t) i * TK, *p1 = p0 + TK, *p2 = p1 + TK, *p3 = p2 + TK;
    int d = 0;
    for (; d + 2 * VW <= head_dim; d += 2 * VW) {
      vf a0 = KNAME (vload) (c0 + d), b0 = KNAME (vload) (c0 + d + VW);
      vf a1 = KNAME (vload) (c1 + d), b1 = KNAME (vload) (c1 + d + VW);
      vf a2 = KNAME (vload) (c2 + d), b2 = KNAME (vload) (c2 + d + VW);
      vf a3 = KNAME (vload) (c3 + d), b3 = KNAME (vload) (c3 + d + VW);
      for (int j = 0; j < nc; j++) {
        const float *vj = v + (size_t) j * ldv + d;
        const vf x = KNAME (vload) (vj), y = KNAME (vload) (vj + VW);
        a0 += p0[j] * x, b0 += p0[j] * y;
        a1 += p1[j] * x, b1 += p1[j] * y;
        a2 += p2[j] * x, b2 += p2[j] * y;
        a3 += p3[j] * x, b3 += p3[j] * y;
      }
      KNAME (vstore) (c0 + d, a0), KNAME (vstore) (c0 + d + VW, b0);
      KNAME (vstore) (c1 + d, a1), KNAME (vstore) (c1 + d + VW, b1);
      KNAME (vstore) (c2 + d, a2), KNAME (vstore) (c2 + d + VW, b2);
      KNAME (vstore) (c3 + d, a3), KNAME (vstore) (c3 + d + VW, b3);
    }
    for (; d + VW <= head_dim; d += VW) {
      vf a0 = KNAME (vload) (c0 + d), a1 = KNAME (vload) (c1 + d);
      vf a2 = KNAME (vload) (c2 + d), a3 = KNAME (vload) (c3 + d);
      for (int j = 0; j < nc; j++) {
        const vf x = KNAME (vload) (v + (size_t) j * ldv + d);
        a0 += p0[j] * x, a1 += p1[j] * x, a2 += p2[j] * x, a3 += p3[j] * x;
      }
      KNAME (vstore) (c0 + d, a0), KNAME (vstore) (c1 + d, a1);
      KNAME (vstore) (c2 + d, a2), KNAME (vstore) (c3 + d, a3);
    }
#if VW > 4
    for (; d + 4 <= head_dim; d += 4) { /* a half vector: head dims such as 60 = 7.5 × 8 */
      v4 a0 = KNAME (vload4) (c0 + d), a1 = KNAME (vload4) (c1 + d);
      v4 a2 = KNAME (vload4) (c2 + d), a3 = KNAME (vload4) (c3 + d);
      for (int j = 0; j < nc; j++) {
        const v4 x = KNAME (vload4) (v + (size_t) j * ldv + d);
        a0 += p0[j] * x, a1 += p1[j] * x, a2 += p2[j] * x, a3 += p3[j] * x;
      }
      KNAME (vstore4) (c0 + d, a0), KNAME (vstore4) (c1 + d, a1);
      KNAME (vstore4) (c2 + d, a2), KNAME (vstore4) (c3 + d, a3);
    }
#endif
    for (; d < head_dim; d++) { /* in registers: the stores would alias p */
      float s0 = c0[d], s1 = c1[d], s2 = c2[d], s3 = c3[d];
      for (int j = 0; j < nc; j++) {
        const float x = v[(size_t) j * ldv + d];
        s0 += p0[j] * x, s1 += p1[j] * x, s2 += p2[j] * x, s3 += p3[j] * x;
      }
      c0[d] = s0, c1[d] = s1, c2[d] = s2, c3[d] = s3;
    }
  }
  for (; i < nr; i++) {
    float *ci = acc + (size_t) i * head_dim;
    const float *pi = p + (size_t) i * TK;
    int d = 0;
    for (; d + VW <= head_dim; d += VW) {
      vf a = KNAME (vload) (ci + d);
      for (int j = 0; j < nc; j++)
        a += pi[j] * KNAME (vload) (v + (size_t) j * ldv + d);
      KNAME (vstore) (ci + d, a);
    }
    for (; d < head_dim; d++) {
      float si = ci[d];
      for (int j = 0; j < nc; j++)
        si += pi[j] * v[(size_t) j * ldv + d];
      ci[d] = si;
    }
  }
}

/* One row of the online softmax over the first ncw (a multiple of VW) columns: new
 * running max, rescale of what was accumulated, p = exp(s − max) in place (0 for masked
 * keys; all 0 while the row has no finite score). */
INLINE void
KNAME (softmax_row) (float *si, int ncw, float *m, float *l, float *acc, int head_dim)
{
  vf vmx = KNAME (vsplat) (-INFINITY);
  for (int j = 0; j < ncw; j += VW) {
    const vf x = KNAME (vload) (si + j);
    vmx = KNAME (vselect) (x > vmx, x, vmx);
  }
  float mx = *m;
  for (int c = 0; c < VW; c++)
    mx = vmx[c] > mx ? vmx[c] : mx;
  if (mx == -INFINITY) {
    memset (si, 0, sizeof (float) * ncw);
    return;
  }
  vf sum = { 0 };
  for (int j = 0; j < ncw; j += VW) {
    const vf e = KNAME (vexp) (KNAME (vload) (si + j) - mx);
    KNAME (vstore) (si + j, e);
    sum += e;
  }
  const float alpha = *m == -INFINITY ? 0.0f : expf (*m - mx);
  if (alpha != 1.0f)
    KNAME (scale_row) (acc, acc, alpha, head_dim);
  *l = *l * alpha + KNAME (vsum) (sum);
  *m = mx;
}

/* Rows [r0, r0 + nr) of one head against the key spans [spans[2i], spans[2i+1]).
 * q/v/out point at the head's first column, kt at the head's transposed keys (head_dim
 * rows of stride ldkt, finite up to 2·VW columns past nk); bias at the head's (nq, nk)
 * plane. */
static void
KNAME (attend_rows) (attn_scratch *sc, float *out, int ldo, const float *q, int ldq,
                     const float *kt, int ldkt, const float *v, int ldv, int r0, int nr,
                     int nk, int head_dim, float scale, const float *bias, const int *spans,
                     int n_spans, float *lse)
{
  for (int i = 0; i < nr; i++) {
    sc->m[i] = -INFINITY;
    sc->l[i] = 0.0f;
  }
  memset (sc->acc, 0, sizeof (float) * (size_t) nr * head_dim);

  for (int sp = 0; sp < n_spans; sp++) {
    for (int k0 = spans[2 * sp]; k0 < spans[2 * sp + 1]; k0 += TK) {
      const int nc = MIN (TK, spans[2 * sp + 1] - k0);
      const int ncw = (nc + 2 * VW - 1) / (2 * VW) * (2 * VW);
      KNAME (tile_scores) (sc->s, q + (size_t) r0 * ldq, ldq, nr, kt + k0, ldkt, nc, ncw,
                           head_dim, scale);
      for (int i = 0; i < nr; i++) {
        float *si = sc->s + (size_t) i * TK;
        if (bias) {
          const float *bi = bias + (size_t) (r0 + i) * nk + k0;
          for (int j = 0; j < nc; j++)
            si[j] += bi[j];
        }
        KNAME (softmax_row) (si, ncw, &sc->m[i], &sc->l[i], sc->acc + (size_t) i * head_dim,
                             head_dim);
      }
      KNAME (tile_pv) (sc->acc, sc->s, nr, v + (size_t) k0 * ldv, ldv, nc, head_dim);
    }
  }

  for (int i = 0; i < nr; i++) {
    float *oi = out + (size_t) (r0 + i) * ldo;
    const float *ai = sc->acc + (size_t) i * head_dim;
    if (sc->l[i] > 0.0f) {
      KNAME (scale_row) (oi, ai, 1.0f / sc->l[i], head_dim);
      if (lse)
        lse[r0 + i] = sc->m[i] + logf (sc->l[i]);
    } else {
      memset (oi, 0, sizeof (float) * head_dim);
      if (lse)
        lse[r0 + i] = -INFINITY;
    }
  }
}

/* One query block's row of block scores: Σ exp(s − lse(row)) per key block, in double.
 * Masked columns are -inf; rows with lse = -inf hold no mass. */
static void
KNAME (score_row) (double *row, float *kt, float *s, const float *q, int ldq, const float *k,
                   int ldk, const float *lse, int r_begin, int r_end, int nk, int head_dim,
                   float scale, int block_k, int nkb)
{
  memset (row, 0, sizeof (double) * nkb);
  for (int r0 = r_begin; r0 < r_end; r0 += TQ) {
    const int nr = MIN (TQ, r_end - r0);
    for (int kb = 0; kb < nkb; kb++) {
      const int c_end = MIN ((kb + 1) * block_k, nk);
      for (int k0 = kb * block_k; k0 < c_end; k0 += TK) {
        const int nc = MIN (TK, c_end - k0);
        KNAME (load_key_tile) (kt, k + (size_t) k0 * ldk, ldk, nc, head_dim);
        KNAME (tile_scores) (s, q + (size_t) r0 * ldq, ldq, nr, kt, TK, nc, TK, head_dim, scale);
        for (int i = 0; i < nr; i++) {
          if (lse[r0 + i] == -INFINITY)
            continue;
          vf sum = { 0 };
          for (int j = 0; j < TK; j += VW)
            sum += KNAME (vexp) (KNAME (vload) (s + (size_t) i * TK + j) - lse[r0 + i]);
          row[kb] += KNAME (vsum) (sum);
        }
      }
    }
  }
}

#undef v4
#include "cpu_vec_end.h"
