// Pieces shared by the attention and block-score kernels: shared-memory tiles of
// D (padded head dim) columns and the S = Q·Kᵀ tile product of one warp.
//
// Tiles live in shared memory row-major with a row stride of D + 8 elements: the 16-byte
// pad puts the 8 rows an ldmatrix reads on distinct banks for every D used (16..128).
#pragma once

#include "mma.cuh"

namespace vdit {

constexpr int ATTN_BR = 64;      // query rows per block (4 warps × 16)
constexpr int ATTN_BC = 64;      // keys per tile
constexpr int ATTN_THREADS = 128;

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
