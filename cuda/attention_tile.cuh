// Pieces shared by the attention kernels (sm_80 mma.sync, sm_90a wgmma) and the block
// score kernel: parameters, shared-memory tiles for mma.sync, the S = Q·Kᵀ tile product
// of one warp, masking, the online-softmax update and the final row writes.
//
// mma.sync tiles live in shared memory row-major with a row stride of D + 8 elements:
// the 16-byte pad puts the 8 rows an ldmatrix reads on distinct banks for every D used.
#pragma once

#include <math_constants.h>

#include "attention.h"
#include "mma.cuh"

namespace vdit {

constexpr int ATTN_BR = 64;      // query rows per mma.sync block (4 warps × 16)
constexpr int ATTN_BC = 64;      // keys per tile
constexpr int ATTN_THREADS = 128;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

struct AttnParams {
  bf16 *o;
  const bf16 *q, *k, *v, *bias;
  float *lse;
  int ldo, ldq, ldk, ldv;
  int nq, nk, hd;
  float scale_log2; // softmax scale in base-2 units
  int n_ktiles;     // ceil(nk / 64)
  // block-sparse layout (64-row tiles); row_ptr == NULL means dense
  const int32_t *row_ptr, *cols, *order, *order2;
  const uint32_t *bitmap;
  int lay_heads, n_qtiles, n_pairs;
  int block_q, block_k, n_qblocks, n_kblocks;
  // dense attention that also scores 64 × 64 blocks (fa3 kernel, SCORED): each row's
  // log2 Σ 2^(s·c) over each 64-key block, (heads, ceil(nk / 64), nq) F32
  float *row_lse;
};

// Entry `it` of a query tile's key-tile list: the key tile, with VDIT_CUDA_ATTN_PARTIAL
// when it needs the element mask. Dense: every tile, the ragged last one partial.
__device__ __forceinline__ int
tile_entry (const AttnParams &p, int it)
{
  if (p.row_ptr)
    return p.cols[it];
  return it | (it == p.n_ktiles - 1 && p.nk % ATTN_BC != 0 ? VDIT_CUDA_ATTN_PARTIAL : 0);
}

__device__ __forceinline__ int
key_tile (const AttnParams &p, int it, bool *partial)
{
  const int c = tile_entry (p, it);
  *partial = (c & VDIT_CUDA_ATTN_PARTIAL) != 0;
  return c & ~VDIT_CUDA_ATTN_PARTIAL;
}

__device__ __forceinline__ bool
kept (const AttnParams &p, int lh, int qb, int col)
{
  if (col >= p.nk)
    return false;
  if (p.bitmap == nullptr)
    return true;
  const size_t bit = ((size_t) lh * p.n_qblocks + qb) * p.n_kblocks + col / p.block_k;
  return (__ldg (p.bitmap + (bit >> 5)) >> (bit & 31)) & 1u;
}

// Scores of one 16 × 64 warp tile into base-2 units: s·scale·log2e (+ bias·log2e),
// masked entries −inf. row/qb are this thread's two rows and their layout blocks.
template <bool BIAS>
__device__ __forceinline__ void
scale_mask (float s[ATTN_BC / 8][4], const AttnParams &p, int h, int lh, const int row[2],
            const int qb[2], int k0, bool partial, int t)
{
#pragma unroll
  for (int nt = 0; nt < ATTN_BC / 8; nt++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int r = e / 2, col = k0 + nt * 8 + 2 * t + (e & 1);
      float x = s[nt][e] * p.scale_log2;
      if constexpr (BIAS) {
        if (row[r] < p.nq && col < p.nk)
          x += __bfloat162float (p.bias[((size_t) h * p.nq + row[r]) * p.nk + col]) * LOG2E;
      }
      if (partial && !kept (p, lh, qb[r], col))
        x = -CUDART_INF_F;
      s[nt][e] = x;
    }
  }
}

// Online softmax over one tile: s becomes P (unnormalised), o is rescaled; l stays a
// per-thread partial sum until write_rows. Rows masked so far keep m = −inf, l = 0.
template <int D>
__device__ __forceinline__ void
softmax_update (float s[ATTN_BC / 8][4], float o[D / 8][4], float m[2], float l[2])
{
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float mx = -CUDART_INF_F;
#pragma unroll
    for (int nt = 0; nt < ATTN_BC / 8; nt++)
      mx = fmaxf (mx, fmaxf (s[nt][2 * r], s[nt][2 * r + 1]));
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 1));
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 2));
    const float m_new = fmaxf (m[r], mx);
    const float base = m_new == -CUDART_INF_F ? 0.0f : m_new;
    const float alpha = exp2f (m[r] - base);
    float sum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < ATTN_BC / 8; nt++) {
      s[nt][2 * r] = exp2f (s[nt][2 * r] - base);
      s[nt][2 * r + 1] = exp2f (s[nt][2 * r + 1] - base);
      sum += s[nt][2 * r] + s[nt][2 * r + 1];
    }
    l[r] = l[r] * alpha + sum;
    m[r] = m_new;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
      o[dt][2 * r] *= alpha;
      o[dt][2 * r + 1] *= alpha;
    }
  }
}

// P as bf16 A fragments: the accumulators of two 8-key tiles are one 16-key fragment.
__device__ __forceinline__ void
p_frags (uint32_t a[ATTN_BC / 16][4], const float s[ATTN_BC / 8][4])
{
#pragma unroll
  for (int kc = 0; kc < ATTN_BC / 16; kc++) {
    a[kc][0] = pack_bf16 (s[2 * kc][0], s[2 * kc][1]);
    a[kc][1] = pack_bf16 (s[2 * kc][2], s[2 * kc][3]);
    a[kc][2] = pack_bf16 (s[2 * kc + 1][0], s[2 * kc + 1][1]);
    a[kc][3] = pack_bf16 (s[2 * kc + 1][2], s[2 * kc + 1][3]);
  }
}

// O / l and LSE = (m + log2 l)·ln 2 for this thread's two rows; rows without a kept key
// get zeros and −inf.
template <int D>
__device__ __forceinline__ void
write_rows (const AttnParams &p, int h, const int row[2], const float o[D / 8][4],
            const float m[2], const float l[2], int t)
{
  const bool pairs = (p.hd % 2 == 0) && (p.ldo % 2 == 0) &&
                     ((reinterpret_cast<uintptr_t> (p.o) & 3) == 0);
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float lt = l[r];
    lt += __shfl_xor_sync (0xffffffffu, lt, 1);
    lt += __shfl_xor_sync (0xffffffffu, lt, 2);
    if (row[r] >= p.nq)
      continue;
    const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
    bf16 *orow = p.o + (size_t) row[r] * p.ldo + (size_t) h * p.hd;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
      const int c = dt * 8 + 2 * t;
      if (c >= p.hd)
        continue;
      const float v0 = o[dt][2 * r] * inv, v1 = o[dt][2 * r + 1] * inv;
      if (pairs) {
        *reinterpret_cast<__nv_bfloat162 *> (orow + c) = __floats2bfloat162_rn (v0, v1);
      } else {
        orow[c] = __float2bfloat16 (v0);
        if (c + 1 < p.hd)
          orow[c + 1] = __float2bfloat16 (v1);
      }
    }
    if (p.lse && t == 0)
      p.lse[(size_t) p.nq * h + row[r]] = lt > 0.0f ? (m[r] + log2f (lt)) * LN2 : -CUDART_INF_F;
  }
}

template <int D>
struct TileShape {
  static constexpr int STRIDE = D + 8;
  static constexpr int Q_ELEMS = ATTN_BR * STRIDE;
  static constexpr int KV_ELEMS = ATTN_BC * STRIDE;
};

// Loads rows [r0, r0 + R) × columns [0, D) of a head's matrix (row stride ld) into dst.
// Rows ≥ n and columns ≥ hd become zeros (keys past the end must not turn into NaN·0).
// VEC: 16-byte cp.async (needs hd % 8 == 0, ld % 8 == 0, 16-byte aligned base), which the
// caller commits and waits for; otherwise plain loads, visible after the next barrier.
template <int D, int R, bool VEC>
__device__ __forceinline__ void
load_tile (bf16 *dst, const bf16 *src, int ld, int r0, int n, int hd)
{
  constexpr int STRIDE = TileShape<D>::STRIDE;
  if constexpr (VEC) {
    constexpr int CHUNKS = D / 8;
    for (int i = threadIdx.x; i < R * CHUNKS; i += ATTN_THREADS) {
      const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
      const bool ok = r0 + r < n && c < hd;
      const bf16 *s = ok ? src + (size_t) (r0 + r) * ld + c : src;
      cp_async16 (dst + r * STRIDE + c, s, ok ? 16 : 0);
    }
  } else {
    for (int i = threadIdx.x; i < R * D; i += ATTN_THREADS) {
      const int r = i / D, c = i % D;
      dst[r * STRIDE + c] =
          (r0 + r < n && c < hd) ? src[(size_t) (r0 + r) * ld + c] : __float2bfloat16 (0.0f);
    }
  }
}

// A fragments of this warp's 16 query rows, all of D.
template <int D>
__device__ __forceinline__ void
load_q_frags (uint32_t qf[D / 16][4], const bf16 *sq, int warp, int lane)
{
  constexpr int STRIDE = TileShape<D>::STRIDE;
  const bf16 *base = sq + (warp * 16 + (lane % 16)) * STRIDE + (lane / 16) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++)
    ldmatrix_x4 (qf[kk], base + kk * 16);
}

// s(16 × 64) = Q(16 × D) · K(64 × D)ᵀ for this warp; s[nt] is key columns 8nt..8nt+7.
template <int D>
__device__ __forceinline__ void
qk_tile (float s[ATTN_BC / 8][4], const uint32_t qf[D / 16][4], const bf16 *sk, int lane)
{
  constexpr int STRIDE = TileShape<D>::STRIDE;
#pragma unroll
  for (int nt = 0; nt < ATTN_BC / 8; nt++)
    s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
  // matrix i of the x4 load: keys +(i/2)·8, head-dim columns +(i%2)·8
  const int mi = lane / 8, r = lane % 8;
  const bf16 *base = sk + ((mi / 2) * 8 + r) * STRIDE + (mi % 2) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
    for (int np = 0; np < ATTN_BC / 16; np++) {
      uint32_t b[4];
      ldmatrix_x4 (b, base + np * 16 * STRIDE + kk * 16);
      mma_bf16 (s[2 * np], qf[kk], b[0], b[1]);
      mma_bf16 (s[2 * np + 1], qf[kk], b[2], b[3]);
    }
  }
}

} // namespace vdit
