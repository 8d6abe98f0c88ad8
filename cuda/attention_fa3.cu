// Flash attention forward for Hopper (sm_90a) with FlashAttention-3's structure:
//
// - a producer warpgroup (one thread issues) loads Q once and K/V tiles through TMA into a
//   two-stage shared-memory ring; full/empty mbarriers hand stages between producer and
//   consumers, so loads run ahead of the math without any __syncthreads;
// - NC consumer warpgroups of 64 query rows each: S = Q·Kᵀ with both operands in shared
//   memory, O += P·V with P from registers (the S accumulators reused as A fragments);
// - inside a warpgroup, Q·K(j)ᵀ and P(j−1)·V(j−1) are issued together and the softmax of
//   tile j runs while P·V is still on the tensor cores (O is rescaled after it retires);
// - between warpgroups, named barriers take turns issuing GEMMs (ping-pong), so one
//   warpgroup's softmax overlaps another's GEMMs;
// - setmaxnreg moves registers from the producer to the consumers.
//
// Tiles are 64-byte-swizzled, chunk-major: head-dim chunk c (32 elements, 64 bytes a row)
// of an R-row tile sits at c·R·64 bytes; that is what TMA writes with SWIZZLE_64B and what
// wgmma reads as K-major (Q, K) or MN-major (V) operands. Head dims 64, 96, 128.
//
// Block-sparse layouts come as kept-key-tile lists per BM-row query tile (the union over
// its rows, partial tiles masked element-wise from the layout bitmap; cuda_layout.c);
// query tiles run heaviest first. A tile with no key tiles writes zeros and LSE −inf.
// AdaSpa's 64 × 64 lists run on one consumer warpgroup per 64-row block (two blocks an SM)
// with paired key tiles: entries 2j and 2j+1 of a row's list are loaded side by side as one
// 128-key tile, so the fixed cost of a step (barriers, the row max, O's rescale) is paid once
// per 128 keys and QKᵀ runs as n = 128 wgmma; an odd list's last pair repeats its first
// half, masked.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cudaTypedefs.h>

#include "launch.cuh"
#include "attention_fa3.h"
#include "attention_sm90.h"
#include "attention_tile.cuh"
#include "tma.cuh"

namespace vdit {
namespace {

constexpr int FA3_STAGES = 2;

template <int D, int NC, int BN>
struct Fa3Shape {
  static constexpr int BM = 64 * NC;
  static constexpr int THREADS = 128 * (NC + 1);
  static constexpr int CHUNKS = D / 32;
  static constexpr int Q_BYTES = BM * D * 2;
  static constexpr int KV_BYTES = BN * D * 2;
  // producer / consumer registers per thread after setmaxnreg (65,536 per SM in all)
  // (one consumer: two blocks share an SM, so their softmax and GEMMs interleave instead)
  static constexpr int BLOCKS_PER_SM = NC == 1 ? 2 : 1;
  static constexpr int PRODUCER_REGS = NC == 1 ? 24 : NC == 2 ? 40 : 32;
  static constexpr int CONSUMER_REGS = NC == 3 ? 160 : 232;
  static constexpr size_t BARRIER_BYTES = 8 * (1 + 4 * FA3_STAGES);
  static constexpr size_t SMEM = 1024 /* alignment slack */ + Q_BYTES +
                                 2 * FA3_STAGES * KV_BYTES + BARRIER_BYTES;
};

struct Fa3Barriers {
  uint64_t q_full;
  uint64_t k_full[FA3_STAGES], k_empty[FA3_STAGES];
  uint64_t v_full[FA3_STAGES], v_empty[FA3_STAGES];
};

// Scores of one warp's 16 rows × BN keys under the element mask (raw scores; the scale is
// folded into the exponent). Only partial tiles come here. With layout key blocks of 64+
// keys at most three blocks overlap a tile: each row's three kept bits are read once and
// an element picks its bit by comparing its column with the two block boundaries, which
// costs about what the softmax does (the bitmap lookup per element cost five times that).
template <int BN>
__device__ __forceinline__ void
mask_tile (float s[BN / 8][4], const AttnParams &p, int lh, const int qb[2], int k0, int t)
{
  static_assert (BN <= 128, "three key blocks of 64 cover at most 128 keys");
  const int end = p.nk - k0 - 2 * t; // the element's column offset nt·8 + (e & 1) from here
  if (p.bitmap != nullptr && p.block_k < 64) {
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (!kept (p, lh, qb[e / 2], k0 + nt * 8 + 2 * t + (e & 1)))
          s[nt][e] = -CUDART_INF_F;
    return;
  }
  uint32_t bits[2] = { 7u, 7u };
  int e1 = INT_MAX, e2 = INT_MAX;
  if (p.bitmap != nullptr) {
    const int kb0 = k0 / p.block_k;
    e1 = (kb0 + 1) * p.block_k - k0 - 2 * t;
    e2 = e1 + p.block_k;
#pragma unroll
    for (int r = 0; r < 2; r++) {
      bits[r] = 0;
#pragma unroll
      for (int i = 0; i < 3; i++) {
        const int kb = kb0 + i;
        if (kb < p.n_kblocks) {
          const size_t bit = ((size_t) lh * p.n_qblocks + qb[r]) * p.n_kblocks + kb;
          bits[r] |= ((__ldg (p.bitmap + (bit >> 5)) >> (bit & 31)) & 1u) << i;
        }
      }
    }
  }
#pragma unroll
  for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int c = nt * 8 + (e & 1);
      const int sel = (c >= e1) + (c >= e2);
      if (c >= end || !((bits[e / 2] >> sel) & 1u))
        s[nt][e] = -CUDART_INF_F;
    }
}

// Online softmax of one tile, first half: new row maxima (scaled, base 2), P = 2^(s·c − m)
// in place, the rescale factors and the tile's partial row sums.
template <int BN>
__device__ __forceinline__ void
softmax_tile (float s[BN / 8][4], float m[2], float alpha[2], float sum[2], float scale_log2)
{
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float mx = -CUDART_INF_F;
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++)
      mx = fmaxf (mx, fmaxf (s[nt][2 * r], s[nt][2 * r + 1]));
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 1));
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 2));
    const float m_new = fmaxf (m[r], mx * scale_log2);
    const float base = m_new == -CUDART_INF_F ? 0.0f : m_new;
    alpha[r] = fast_exp2 (m[r] - base);
    m[r] = m_new;
    float acc = 0.0f;
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) {
      s[nt][2 * r] = fast_exp2 (fmaf (s[nt][2 * r], scale_log2, -base));
      s[nt][2 * r + 1] = fast_exp2 (fmaf (s[nt][2 * r + 1], scale_log2, -base));
      acc += s[nt][2 * r] + s[nt][2 * r + 1];
    }
    sum[r] = acc;
  }
}

// Entry j of this query tile's key-tile list (tile | VDIT_CUDA_ATTN_PARTIAL); dense: every
// tile, the ragged last one partial.
template <bool SPARSE, int BN>
__device__ __forceinline__ int
fa3_entry (const AttnParams &p, int begin, int j, int n)
{
  if constexpr (SPARSE)
    return p.cols[begin + j];
  return j | (j == n - 1 && p.nk % BN != 0 ? VDIT_CUDA_ATTN_PARTIAL : 0);
}

// S(64 × BN) = Q·Kᵀ for this warpgroup's 64 rows (both K-major in swizzled tiles).
template <int D, int BM, int BN>
__device__ __forceinline__ void
fa3_issue_qk (float s[BN / 8][4], const unsigned char *q, const unsigned char *k)
{
  wgmma_fence ();
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++)
    WgmmaSS<BN>::run (&s[0][0], wgmma_desc_sw64 (q + (kk / 2) * BM * 64 + (kk % 2) * 32, 16, 512),
                      wgmma_desc_sw64 (k + (kk / 2) * BN * 64 + (kk % 2) * 32, 16, 512), kk > 0);
  wgmma_commit ();
}

// O(64 × D) += P·V: P from registers, V MN-major (32-column chunks BN·64 bytes apart,
// 8-key groups 512 bytes apart; 16 keys a step).
template <int D, int BN>
__device__ __forceinline__ void
fa3_issue_pv (float o[D / 8][4], const uint32_t pf[BN / 16][4], const unsigned char *v)
{
  wgmma_fence ();
#pragma unroll
  for (int kc = 0; kc < BN / 16; kc++)
    WgmmaRS<D>::run (&o[0][0], pf[kc], wgmma_desc_sw64 (v + kc * 1024, BN * 64, 512));
  wgmma_commit ();
}

// A stage's reads are done: one arrival per consumer warp.
__device__ __forceinline__ void
fa3_release (uint64_t *empty, int lane)
{
  __syncwarp ();
  if (lane == 0)
    mbar_arrive (empty);
}

// Mask (partial tiles only) and the first half of the online softmax; touches neither o
// nor pf, which P·V may still be reading.
template <int D, int BN>
__device__ __forceinline__ void
fa3_softmax (float s[BN / 8][4], float m[2], const AttnParams &p, int lh, const int qb[2],
             int t, int entry, float alpha[2], float sum[2])
{
  if (entry & VDIT_CUDA_ATTN_PARTIAL)
    mask_tile<BN> (s, p, lh, qb, (entry & ~VDIT_CUDA_ATTN_PARTIAL) * BN, t);
  softmax_tile<BN> (s, m, alpha, sum, p.scale_log2);
}

// Mask and softmax of paired tile j (list entries 2j and 2j+1, the latter maybe absent):
// each 64-key half masked as a 64-key tile of its own.
template <int BN>
__device__ __forceinline__ void
fa3_softmax_pair (float s[BN / 8][4], float m[2], const AttnParams &p, int lh, const int qb[2],
                  int t, int begin, int j, int n, float alpha[2], float sum[2])
{
  static_assert (BN == 128, "a pair is two 64-key tiles");
  const int ea = p.cols[begin + 2 * j];
  const int eb = 2 * j + 1 < n ? p.cols[begin + 2 * j + 1] : -1;
  if (ea & VDIT_CUDA_ATTN_PARTIAL)
    mask_tile<64> (s, p, lh, qb, (ea & ~VDIT_CUDA_ATTN_PARTIAL) * 64, t);
  if (eb < 0) {
#pragma unroll
    for (int nt = BN / 16; nt < BN / 8; nt++)
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = -CUDART_INF_F;
  } else if (eb & VDIT_CUDA_ATTN_PARTIAL) {
    mask_tile<64> (s + BN / 16, p, lh, qb, (eb & ~VDIT_CUDA_ATTN_PARTIAL) * 64, t);
  }
  softmax_tile<BN> (s, m, alpha, sum, p.scale_log2);
}

// One K or V tile into a stage: BN rows from key k0, or when paired two 64-row halves
// from k0 and k1 (chunk-major, so a half is 64 rows of every 64-byte chunk).
template <int CHUNKS, int BN, bool PAIRED>
__device__ __forceinline__ void
fa3_load_kv (unsigned char *dst, const CUtensorMap *map, uint64_t *full, int h, int k0, int k1)
{
#pragma unroll
  for (int c = 0; c < CHUNKS; c++) {
    tma_load_4d (dst + c * BN * 64, map, full, 0, c, h, k0);
    if constexpr (PAIRED)
      tma_load_4d (dst + c * BN * 64 + 64 * 64, map, full, 0, c, h, k1);
  }
}

// The second half, once P·V has retired: rescale O and the row sums, P to bf16.
template <int D, int BN>
__device__ __forceinline__ void
fa3_rescale (const float s[BN / 8][4], float o[D / 8][4], float l[2], uint32_t pf[BN / 16][4],
             const float alpha[2], const float sum[2])
{
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] = l[r] * alpha[r] + sum[r];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
      o[dt][2 * r] *= alpha[r];
      o[dt][2 * r + 1] *= alpha[r];
    }
  }
#pragma unroll
  for (int kc = 0; kc < BN / 16; kc++) {
    pf[kc][0] = pack_bf16 (s[2 * kc][0], s[2 * kc][1]);
    pf[kc][1] = pack_bf16 (s[2 * kc][2], s[2 * kc][3]);
    pf[kc][2] = pack_bf16 (s[2 * kc + 1][0], s[2 * kc + 1][1]);
    pf[kc][3] = pack_bf16 (s[2 * kc + 1][2], s[2 * kc + 1][3]);
  }
}

// log2(v) + m, the base-2 log of a sum of 2^(x − m) terms; −inf for an empty sum.
__device__ __forceinline__ float
log2_sum (float v, float m)
{
  return v > 0.0f ? __log2f (v) + m : -CUDART_INF_F;
}

// log2(2^a + 2^b)
__device__ __forceinline__ float
log2_add (float a, float b)
{
  const float hi = fmaxf (a, b), lo = fminf (a, b);
  return hi == -CUDART_INF_F ? hi : hi + __log2f (1.0f + fast_exp2 (lo - hi));
}

// Scored dense attention: each row's share of tile j (P = 2^(s·c − m), after softmax_tile)
// per 64-key block, as log2 Σ 2^(s·c) into p.row_lse. Tile j covers keys [j·BN, (j+1)·BN),
// at most two blocks (BN ≤ 128 and a multiple of 32): `lo` ends in this tile (begun in
// the previous one when j·BN is not a multiple of 64: that part comes in `carry`), `hi`
// starts here and, when it runs on into the next tile, is carried instead of stored. The
// last tile stores what it has: keys past nk are masked to P = 0.
template <int BN>
__device__ __forceinline__ void
row_block_sums (const float s[BN / 8][4], const float m[2], float carry[2], const AttnParams &p,
                int h, const int row[2], int j, int tiles, int t)
{
  static_assert (BN % 32 == 0 && BN <= 128, "a tile holds at most two 64-key blocks");
  const int k0 = j * BN, kb = k0 / 64;
  const int split = (kb + 1) * 64 - k0; // the tile's first column of block kb + 1
  const bool two = split < BN;
  const bool hi_ends = k0 + BN >= (kb + 2) * 64 || j == tiles - 1;
  // the quad ends with all four values: lane t stores row t % 2 of block kb + t / 2
  const int mine = t & 1, half = t >> 1;
  float v = 0.0f;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float lo = 0.0f, hi = 0.0f;
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) {
      const float pair = s[nt][2 * r] + s[nt][2 * r + 1];
      if (nt * 8 < split)
        lo += pair;
      else
        hi += pair;
    }
    lo += __shfl_xor_sync (0xffffffffu, lo, 1);
    lo += __shfl_xor_sync (0xffffffffu, lo, 2);
    hi += __shfl_xor_sync (0xffffffffu, hi, 1);
    hi += __shfl_xor_sync (0xffffffffu, hi, 2);
    float a = log2_sum (lo, m[r]);
    if (k0 % 64 != 0)
      a = log2_add (a, carry[r]);
    const float b = log2_sum (hi, m[r]);
    carry[r] = two && !hi_ends ? b : -CUDART_INF_F;
    if (r == mine)
      v = half ? b : a;
  }
  const int nkb = (p.nk + 63) / 64;
  const int my_row = mine ? row[1] : row[0];
  if ((half == 0 || (two && hi_ends)) && kb + half < nkb && my_row < p.nq)
    p.row_lse[((size_t) h * nkb + kb + half) * p.nq + my_row] = v;
}

template <int D, int NC, int BN, bool SPARSE, bool PAIRED, bool SCORED = false>
__global__ void __launch_bounds__ (Fa3Shape<D, NC, BN>::THREADS, Fa3Shape<D, NC, BN>::BLOCKS_PER_SM)
fa3_kernel (const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
            const __grid_constant__ CUtensorMap tv, const AttnParams p)
{
#if defined(__CUDA_ARCH__) && !defined(VDIT_WGMMA)
  __trap (); // compiled for another target: never launched (vdit_cuda_attention_fa3_usable)
#endif
  using SH = Fa3Shape<D, NC, BN>;
  constexpr int BM = SH::BM;
  extern __shared__ unsigned char smem_raw[];
  unsigned char *smem = reinterpret_cast<unsigned char *> (
      (reinterpret_cast<uintptr_t> (smem_raw) + 1023) & ~(uintptr_t) 1023);
  unsigned char *sq = smem;
  unsigned char *sk = sq + SH::Q_BYTES;                    // FA3_STAGES
  unsigned char *sv = sk + FA3_STAGES * SH::KV_BYTES;      // FA3_STAGES
  Fa3Barriers *bar = reinterpret_cast<Fa3Barriers *> (sv + FA3_STAGES * SH::KV_BYTES);

  const int wg = threadIdx.x / 128;
  const int h = blockIdx.y;
  const int lh = p.lay_heads == 1 ? 0 : h;
  int qt = blockIdx.x, begin = 0, n = p.n_ktiles;
  if constexpr (SPARSE) {
    qt = p.order[lh * p.n_qtiles + blockIdx.x];
    begin = p.row_ptr[lh * (p.n_qtiles + 1) + qt];
    n = p.row_ptr[lh * (p.n_qtiles + 1) + qt + 1] - begin;
  }
  const int q0 = qt * BM;
  static_assert (!PAIRED || (SPARSE && NC == 1 && BN == 128), "pairs of 64 x 64 list entries");
  const int tiles = PAIRED ? (n + 1) / 2 : n; // kernel tiles this query tile walks

  if (threadIdx.x == 0) {
    mbar_init (&bar->q_full, 1);
    for (int s = 0; s < FA3_STAGES; s++) {
      mbar_init (&bar->k_full[s], 1);
      mbar_init (&bar->v_full[s], 1);
      mbar_init (&bar->k_empty[s], 4 * NC); // one arrival per consumer warp
      mbar_init (&bar->v_empty[s], 4 * NC);
    }
    mbar_init_fence ();
  }
  __syncthreads ();

  if (wg == 0) {
    // producer: one thread issues every load
    regs_lower<SH::PRODUCER_REGS> ();
    if (threadIdx.x == 0 && n > 0) {
      tma_prefetch_map (&tk);
      tma_prefetch_map (&tv);
      mbar_expect_tx (&bar->q_full, SH::Q_BYTES);
#pragma unroll
      for (int c = 0; c < SH::CHUNKS; c++)
        tma_load_4d (sq + c * BM * 64, &tq, &bar->q_full, 0, c, h, q0);
      for (int j = 0; j < tiles; j++) {
        const int st = j % FA3_STAGES;
        const uint32_t ph = (j / FA3_STAGES) & 1;
        // first key of the tile, or of each 64-key half when paired (a lone last entry
        // loads twice; the copy is masked)
        int k0, k1 = 0;
        if constexpr (PAIRED) {
          k0 = (p.cols[begin + 2 * j] & ~VDIT_CUDA_ATTN_PARTIAL) * 64;
          k1 = 2 * j + 1 < n ? (p.cols[begin + 2 * j + 1] & ~VDIT_CUDA_ATTN_PARTIAL) * 64 : k0;
        } else {
          k0 = ((SPARSE ? p.cols[begin + j] : j) & ~VDIT_CUDA_ATTN_PARTIAL) * BN;
        }
        mbar_wait (&bar->k_empty[st], ph ^ 1);
        mbar_expect_tx (&bar->k_full[st], SH::KV_BYTES);
        fa3_load_kv<SH::CHUNKS, BN, PAIRED> (sk + st * SH::KV_BYTES, &tk, &bar->k_full[st], h, k0, k1);
        mbar_wait (&bar->v_empty[st], ph ^ 1);
        mbar_expect_tx (&bar->v_full[st], SH::KV_BYTES);
        fa3_load_kv<SH::CHUNKS, BN, PAIRED> (sv + st * SH::KV_BYTES, &tv, &bar->v_full[st], h, k0, k1);
      }
    }
    return;
  }

  // consumers
  regs_raise<SH::CONSUMER_REGS> ();
  const int cw = wg - 1, warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row[2] = { q0 + cw * 64 + warp * 16 + g, q0 + cw * 64 + warp * 16 + g + 8 };
  int qb[2] = { 0, 0 };
  if (p.bitmap) {
    qb[0] = min (row[0], p.nq - 1) / p.block_q;
    qb[1] = min (row[1], p.nq - 1) / p.block_q;
  }
  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++)
    o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m[2] = { -CUDART_INF_F, -CUDART_INF_F }, l[2] = { 0.0f, 0.0f };
  float carry[2] = { -CUDART_INF_F, -CUDART_INF_F }; // SCORED: a block begun in the last tile
  static_assert (!SCORED || !SPARSE, "scores come from dense attention");

  if (n > 0) {
    // ping-pong: warpgroup cw issues GEMMs after barrier 1 + cw, then hands the turn on
    const int my_turn = 1 + cw, next_turn = 1 + (cw + 1) % NC;
    if (NC > 1 && cw == NC - 1)
      named_arrive (1, 256); // the first turn goes to consumer 0
    const unsigned char *my_q = sq + cw * 64 * 64;
    float s[BN / 8][4];
    uint32_t pf[BN / 16][4];
    float alpha[2], sum[2];
    mbar_wait (&bar->q_full, 0);

    // tile 0: S only
    mbar_wait (&bar->k_full[0], 0);
    if constexpr (NC > 1)
      named_sync (my_turn, 256);
    fa3_issue_qk<D, BM, BN> (s, my_q, sk);
    if constexpr (NC > 1)
      named_arrive (next_turn, 256);
    wgmma_wait<0> ();
    fa3_release (&bar->k_empty[0], lane);
    if constexpr (PAIRED)
      fa3_softmax_pair<BN> (s, m, p, lh, qb, t, begin, 0, n, alpha, sum);
    else
      fa3_softmax<D, BN> (s, m, p, lh, qb, t, fa3_entry<SPARSE, BN> (p, begin, 0, n),
                          alpha, sum);
    if constexpr (SCORED)
      row_block_sums<BN> (s, m, carry, p, h, row, 0, tiles, t);
    fa3_rescale<D, BN> (s, o, l, pf, alpha, sum);

    // tile j: S(j) and P(j−1)·V(j−1) in flight together; softmax(j) under P·V
    for (int j = 1; j < tiles; j++) {
      const int st = j % FA3_STAGES, pst = (j - 1) % FA3_STAGES;
      const uint32_t ph = (j / FA3_STAGES) & 1, pph = ((j - 1) / FA3_STAGES) & 1;
      mbar_wait (&bar->k_full[st], ph);
      if constexpr (NC > 1)
        named_sync (my_turn, 256);
      fa3_issue_qk<D, BM, BN> (s, my_q, sk + st * SH::KV_BYTES);
      mbar_wait (&bar->v_full[pst], pph);
      fa3_issue_pv<D, BN> (o, pf, sv + pst * SH::KV_BYTES);
      if constexpr (NC > 1)
        named_arrive (next_turn, 256);
      wgmma_wait<1> ();
      fa3_release (&bar->k_empty[st], lane);
      if constexpr (PAIRED)
        fa3_softmax_pair<BN> (s, m, p, lh, qb, t, begin, j, n, alpha, sum);
      else
        fa3_softmax<D, BN> (s, m, p, lh, qb, t, fa3_entry<SPARSE, BN> (p, begin, j, n),
                            alpha, sum);
      if constexpr (SCORED)
        row_block_sums<BN> (s, m, carry, p, h, row, j, tiles, t);
      wgmma_wait<0> ();
      fa3_release (&bar->v_empty[pst], lane);
      fa3_rescale<D, BN> (s, o, l, pf, alpha, sum);
    }
    // the last tile's P·V
    const int lst = (tiles - 1) % FA3_STAGES;
    mbar_wait (&bar->v_full[lst], ((tiles - 1) / FA3_STAGES) & 1);
    fa3_issue_pv<D, BN> (o, pf, sv + lst * SH::KV_BYTES);
    wgmma_wait<0> ();
    if (NC > 1 && cw == 0)
      named_sync (1, 256); // takes the last consumer's final hand-over: barriers balanced
  }
  write_rows<D> (p, h, row, o, m, l, t);
}

// The scores kernel's producer: Q (BM rows, chunk-major) once, then every K tile of
// head h through a STAGES-deep ring.
template <int CHUNKS, int BM, int STAGES>
__device__ __forceinline__ void
score_producer (unsigned char *sq, unsigned char *sk, uint64_t *q_full, uint64_t *k_full,
                uint64_t *k_empty, const CUtensorMap *tq, const CUtensorMap *tk, int h, int q0,
                int n)
{
  constexpr int K_BYTES = CHUNKS * 64 * 64;
  mbar_expect_tx (q_full, CHUNKS * BM * 64);
  for (int c = 0; c < CHUNKS; c++)
    tma_load_4d (sq + c * BM * 64, tq, q_full, 0, c, h, q0);
  for (int j = 0; j < n; j++) {
    const int st = j % STAGES;
    mbar_wait (&k_empty[st], ((j / STAGES) & 1) ^ 1);
    mbar_expect_tx (&k_full[st], K_BYTES);
    for (int c = 0; c < CHUNKS; c++)
      tma_load_4d (sk + st * K_BYTES + c * 64 * 64, tk, &k_full[st], 0, c, h, j * 64);
  }
}

// A consumer thread's two rows of 64-row query block qb: their LSE in base 2, +inf for a
// row past nq or one without kept keys (it adds nothing).
__device__ __forceinline__ void
score_rows_lse2 (float lse2[2], const float *lse, int h, int nq, int qb)
{
  const int warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;
  for (int r = 0; r < 2; r++) {
    const int row = qb * 64 + warp * 16 + lane / 4 + 8 * r;
    lse2[r] = row < nq ? lse[(size_t) h * nq + row] * LOG2E : CUDART_INF_F;
    if (lse2[r] == -CUDART_INF_F)
      lse2[r] = CUDART_INF_F;
  }
}

// This thread's share of 2^(s·c − lse·log2 e) over tile j of S (keys past nk left out).
__device__ __forceinline__ float
score_tile_sum (const float s[8][4], int j, int nk, const float lse2[2], float scale_log2)
{
  const int t = threadIdx.x % 4;
  float sum = 0.0f;
  if (j == nk / 64) { // the partial last tile
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (j * 64 + nt * 8 + 2 * t + (e & 1) < nk)
          sum += fast_exp2 (fmaf (s[nt][e], scale_log2, -lse2[e / 2]));
  } else {
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        sum += fast_exp2 (fmaf (s[nt][e], scale_log2, -lse2[e / 2]));
  }
  return sum;
}

// AdaSpa block scores with each K tile shared by NC consumer warpgroups (NC × 64 query
// rows a block, one block an SM): a producer streams K tiles (no V) and each consumer
// computes S = Q·Kᵀ on wgmma for its 64 rows and sums 2^(s·c − lse·log2 e) over each 64 × 64
// block. Sharing K matters: one warpgroup a block used each loaded K byte a quarter as
// often as dense attention does and was 16 % slower at 93 frames (a search under the cached
// LSE, 158.6 against 137.2 ms on an H100: docs/perf/runs/2026-12-07-nvidia-h100-attention).
// Inside a warpgroup Q·K(j+1)ᵀ is issued before tile j's exponentials, so the tensor cores
// and the exponential unit work at once; each warp's per-tile sums wait in a shared ring
// flushed every SCORE_RING tiles (one named barrier per SCORE_RING tiles, not one per tile).
constexpr int SCORE_STAGES = 4;
constexpr int SCORE_RING = 8;

template <int D, int NC>
struct ScoreShape {
  static constexpr int BM = 64 * NC;
  static constexpr int THREADS = 128 * (NC + 1);
  static constexpr int CHUNKS = D / 32;
  static constexpr int Q_BYTES = BM * D * 2;
  static constexpr int K_BYTES = 64 * D * 2;
  // (no setmaxnreg: the consumers fit the launch's 65,536 / THREADS registers, and a
  // warpgroup can only raise its count by what another one gave back)
  static constexpr size_t SMEM = 1024 /* alignment slack */ + Q_BYTES + SCORE_STAGES * K_BYTES +
                                 8 * (1 + 2 * SCORE_STAGES);
};

struct ScoreBarriers {
  uint64_t q_full;
  uint64_t k_full[SCORE_STAGES], k_empty[SCORE_STAGES];
};

// A warp's sum of tile j goes into the ring; at the end of a segment (SCORE_RING tiles, or
// the last tile) the warpgroup meets and SCORE_RING of its threads write the segment. The
// next segment fills the ring's other half; the one after it comes back to this half only
// past the next barrier, which the writing threads reach after writing.
__device__ __forceinline__ void
score_tile_out (float sum, int j, int n, float (*ring)[SCORE_RING][4], float *out_row,
                bool writes)
{
  for (int off = 16; off > 0; off /= 2)
    sum += __shfl_xor_sync (0xffffffffu, sum, off);
  float (*seg)[4] = ring[(j / SCORE_RING) & 1];
  if (threadIdx.x % 32 == 0)
    seg[j % SCORE_RING][(threadIdx.x % 128) / 32] = sum;
  if (j % SCORE_RING == SCORE_RING - 1 || j == n - 1) {
    named_sync (threadIdx.x / 128, 128); // consumer warpgroups 1..NC: barriers 1..NC
    const int i = threadIdx.x % 128;
    if (writes && i <= j % SCORE_RING)
      out_row[j - j % SCORE_RING + i] = seg[i][0] + seg[i][1] + seg[i][2] + seg[i][3];
  }
}

template <int D, int NC>
__global__ void __launch_bounds__ (ScoreShape<D, NC>::THREADS, 1)
fa3_scores_shared_kernel (const __grid_constant__ CUtensorMap tq,
                          const __grid_constant__ CUtensorMap tk, float *scores,
                          const float *lse, int nq, int nk, float scale_log2)
{
#if defined(__CUDA_ARCH__) && !defined(VDIT_WGMMA)
  __trap ();
#endif
  using SH = ScoreShape<D, NC>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char *smem = reinterpret_cast<unsigned char *> (
      (reinterpret_cast<uintptr_t> (smem_raw) + 1023) & ~(uintptr_t) 1023);
  unsigned char *sq = smem;
  unsigned char *sk = sq + SH::Q_BYTES; // SCORE_STAGES
  ScoreBarriers *bar = reinterpret_cast<ScoreBarriers *> (sk + SCORE_STAGES * SH::K_BYTES);
  __shared__ float ring[NC][2][SCORE_RING][4];

  const int wg = threadIdx.x / 128, h = blockIdx.y;
  const int n = (nk + 63) / 64, nqb = (nq + 63) / 64;
  if (threadIdx.x == 0) {
    mbar_init (&bar->q_full, 1);
    for (int st = 0; st < SCORE_STAGES; st++) {
      mbar_init (&bar->k_full[st], 1);
      mbar_init (&bar->k_empty[st], 4 * NC);
    }
    mbar_init_fence ();
  }
  __syncthreads ();
  if (wg == 0) {
    if (threadIdx.x == 0)
      score_producer<SH::CHUNKS, SH::BM, SCORE_STAGES> (sq, sk, &bar->q_full, bar->k_full,
                                                        bar->k_empty, &tq, &tk, h,
                                                        blockIdx.x * SH::BM, n);
    return;
  }
  const int cw = wg - 1, lane = threadIdx.x % 32;
  const int qb = blockIdx.x * NC + cw; // past the last block: sums of zero, not written
  float lse2[2];
  score_rows_lse2 (lse2, lse, h, nq, qb);
  const unsigned char *my_q = sq + cw * 64 * 64;
  float *out_row = scores + ((size_t) h * nqb + min (qb, nqb - 1)) * n;
  const bool writes = qb < nqb;
  float (*my_ring)[SCORE_RING][4] = ring[cw];
  // tiles in pairs: S(j) and S(j+1) issued together, tile j's exponentials under S(j+1)'s
  // GEMM; nothing is in flight across iterations (ptxas would serialise the wgmma)
  float sa[8][4], sb[8][4];
  mbar_wait (&bar->q_full, 0);
  int j = 0;
  for (; j + 1 < n; j += 2) {
    const int st = j % SCORE_STAGES, st1 = (j + 1) % SCORE_STAGES;
    mbar_wait (&bar->k_full[st], (j / SCORE_STAGES) & 1);
    fa3_issue_qk<D, SH::BM, 64> (sa, my_q, sk + st * SH::K_BYTES);
    mbar_wait (&bar->k_full[st1], ((j + 1) / SCORE_STAGES) & 1);
    fa3_issue_qk<D, SH::BM, 64> (sb, my_q, sk + st1 * SH::K_BYTES);
    wgmma_wait<1> ();
    fa3_release (&bar->k_empty[st], lane);
    score_tile_out (score_tile_sum (sa, j, nk, lse2, scale_log2), j, n, my_ring, out_row, writes);
    wgmma_wait<0> ();
    fa3_release (&bar->k_empty[st1], lane);
    score_tile_out (score_tile_sum (sb, j + 1, nk, lse2, scale_log2), j + 1, n, my_ring, out_row,
                    writes);
  }
  if (j < n) { // an odd count's last tile
    const int st = j % SCORE_STAGES;
    mbar_wait (&bar->k_full[st], (j / SCORE_STAGES) & 1);
    fa3_issue_qk<D, SH::BM, 64> (sa, my_q, sk + st * SH::K_BYTES);
    wgmma_wait<0> ();
    fa3_release (&bar->k_empty[st], lane);
    score_tile_out (score_tile_sum (sa, j, nk, lse2, scale_log2), j, n, my_ring, out_row, writes);
  }
}

PFN_cuTensorMapEncodeTiled_v12000
encode_fn ()
{
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void *f = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion ("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                          &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    cudaGetLastError ();
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000> (f);
  }();
  return fn;
}

// A head-strided bf16 matrix (rows of `ld` elements, head h at columns h·hd) as a 4-D
// tensor {32, hd/32, heads, rows} whose box is one 64-byte chunk of `box_rows` rows.
bool
make_map (CUtensorMap *map, const void *base, int ld, int rows, int heads, int hd, int box_rows)
{
  PFN_cuTensorMapEncodeTiled_v12000 encode = encode_fn ();
  if (encode == nullptr)
    return false;
  const cuuint64_t dims[4] = { 32, (cuuint64_t) hd / 32, (cuuint64_t) heads, (cuuint64_t) rows };
  const cuuint64_t strides[3] = { 64, (cuuint64_t) hd * 2, (cuuint64_t) ld * 2 };
  const cuuint32_t box[4] = { 32, 1, 1, (cuuint32_t) box_rows };
  const cuuint32_t estride[4] = { 1, 1, 1, 1 };
  return encode (map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<void *> (base), dims,
                 strides, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_64B,
                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int D, int NC, int BN, bool SPARSE, bool PAIRED = false, bool SCORED = false>
cudaError_t
launch (const AttnParams &p, int heads, cudaStream_t stream)
{
  using SH = Fa3Shape<D, NC, BN>;
  const int kv_rows = PAIRED ? 64 : BN; // rows a TMA load brings
  CUtensorMap tq, tk, tv;
  if (!make_map (&tq, p.q, p.ldq, p.nq, heads, p.hd, SH::BM) ||
      !make_map (&tk, p.k, p.ldk, p.nk, heads, p.hd, kv_rows) ||
      !make_map (&tv, p.v, p.ldv, p.nk, heads, p.hd, kv_rows))
    return cudaErrorInvalidValue;
  cudaError_t err =
      set_max_dynamic_smem<fa3_kernel<D, NC, BN, SPARSE, PAIRED, SCORED>> ((int) SH::SMEM);
  if (err != cudaSuccess)
    return err;
  AttnParams q = p;
  q.n_ktiles = (p.nk + BN - 1) / BN;
  const int tiles = SPARSE ? p.n_qtiles : (p.nq + SH::BM - 1) / SH::BM;
  if (heads > 65535)
    return cudaErrorInvalidConfiguration;
  fa3_kernel<D, NC, BN, SPARSE, PAIRED, SCORED>
      <<<dim3 (tiles, heads), SH::THREADS, SH::SMEM, stream>>> (tq, tk, tv, q);
  return cudaGetLastError ();
}

} // namespace

// VDIT_CUDA_ATTN picks variants to compare, several at once with commas: fa3-2x128 (dense
// head dim 96 on two consumer warpgroups and 128-key tiles instead of three on 96-key
// tiles: 13.8 against 13.1 ms at 28,800 tokens on an H200), fa3-narrow64 (AdaSpa lists on
// 64-key tiles, not pairs) and two-pass-search (a search's first block scores from a pass
// of their own after the dense attention, as before the scored kernel: 223.0 against
// 154.7 ms at 93 frames on an H100, docs/perf/runs/2026-12-07-nvidia-h100-attention).
bool
vdit_cuda_attention_variant (const char *name)
{
  static const char *const e = getenv ("VDIT_CUDA_ATTN");
  if (e == nullptr)
    return false;
  const size_t n = strlen (name);
  for (const char *at = e; (at = strstr (at, name)) != nullptr; at += n)
    if ((at == e || at[-1] == ',') && (at[n] == '\0' || at[n] == ','))
      return true;
  return false;
}

namespace {

template <int D, int NC>
cudaError_t
launch_scores_shared (float *scores, const bf16 *q, int ldq, const bf16 *k, int ldk,
                      const float *lse, int nq, int nk, int heads, float scale_log2,
                      cudaStream_t stream)
{
  using SH = ScoreShape<D, NC>;
  CUtensorMap tq, tk;
  if (!make_map (&tq, q, ldq, nq, heads, D, SH::BM) || !make_map (&tk, k, ldk, nk, heads, D, 64))
    return cudaErrorInvalidValue;
  cudaError_t err = set_max_dynamic_smem<fa3_scores_shared_kernel<D, NC>> ((int) SH::SMEM);
  if (err != cudaSuccess)
    return err;
  const int blocks = ((nq + 63) / 64 + NC - 1) / NC;
  fa3_scores_shared_kernel<D, NC><<<dim3 (blocks, heads), SH::THREADS, SH::SMEM, stream>>> (
      tq, tk, scores, lse, nq, nk, scale_log2);
  return cudaGetLastError ();
}

template <int D>
cudaError_t
dispatch_scores (float *scores, const bf16 *q, int ldq, const bf16 *k, int ldk, const float *lse,
                 int nq, int nk, int heads, float scale_log2, cudaStream_t stream)
{
  if (heads > 65535)
    return cudaErrorInvalidConfiguration;
  return launch_scores_shared<D, 4> (scores, q, ldq, k, ldk, lse, nq, nk, heads, scale_log2,
                                     stream);
}

} // namespace

bool
vdit_cuda_attention_fa3_usable ()
{
#ifdef VDIT_HAVE_SM90A
  static int state[64]; // per device: 0 unknown, 1 usable, 2 not
  return encode_fn () != nullptr &&
         vdit_cuda_sm90a_kernel_usable ((const void *) fa3_kernel<96, 2, 128, false, false>, state);
#else
  return false;
#endif
}

cudaError_t
vdit_cuda_attention_fa3_launch (const AttnParams &p, int heads, bool narrow, cudaStream_t stream)
{
  const bool sparse = p.row_ptr != nullptr;
  if (narrow && vdit_cuda_attention_variant ("fa3-narrow64"))
    switch (p.hd) {
    case 64: return launch<64, 1, 64, true> (p, heads, stream);
    case 96: return launch<96, 1, 64, true> (p, heads, stream);
    case 128: return launch<128, 1, 64, true> (p, heads, stream);
    default: return cudaErrorInvalidValue;
    }
  if (narrow) // 64-row lists (AdaSpa's 64 × 64 blocks): one consumer, paired 64-key tiles
    switch (p.hd) {
    case 64: return launch<64, 1, 128, true, true> (p, heads, stream);
    case 96: return launch<96, 1, 128, true, true> (p, heads, stream);
    // (head dim 128: a paired stage is 64 KB, and two blocks no longer share an SM)
    case 128: return launch<128, 1, 64, true> (p, heads, stream);
    default: return cudaErrorInvalidValue;
    }
  switch (p.hd) {
  case 64:
    return sparse ? launch<64, 2, 128, true> (p, heads, stream)
                  : launch<64, 2, 128, false> (p, heads, stream);
  case 96:
    if (sparse)
      return launch<96, 2, 128, true> (p, heads, stream);
    if (vdit_cuda_attention_variant ("fa3-2x128"))
      return launch<96, 2, 128, false> (p, heads, stream);
    return launch<96, 3, 96, false> (p, heads, stream);
  case 128:
    return sparse ? launch<128, 2, 128, true> (p, heads, stream)
                  : launch<128, 2, 128, false> (p, heads, stream);
  default:
    return cudaErrorInvalidValue;
  }
}

cudaError_t
vdit_cuda_attention_scored_fa3_launch (const AttnParams &p, int heads, cudaStream_t stream)
{
  switch (p.hd) {
  case 64: return launch<64, 2, 128, false, false, true> (p, heads, stream);
  case 96:
    if (vdit_cuda_attention_variant ("fa3-2x128"))
      return launch<96, 2, 128, false, false, true> (p, heads, stream);
    return launch<96, 3, 96, false, false, true> (p, heads, stream);
  case 128: return launch<128, 2, 128, false, false, true> (p, heads, stream);
  default: return cudaErrorInvalidValue;
  }
}

} // namespace vdit

namespace vdit {

cudaError_t
vdit_cuda_block_scores_fa3_launch (float *scores, const void *q, int ldq, const void *k, int ldk,
                                   const float *lse, int nq, int nk, int heads, int head_dim,
                                   float scale_log2, cudaStream_t stream)
{
  const bf16 *qb = static_cast<const bf16 *> (q), *kb = static_cast<const bf16 *> (k);
  switch (head_dim) {
  case 64: return dispatch_scores<64> (scores, qb, ldq, kb, ldk, lse, nq, nk, heads, scale_log2, stream);
  case 96: return dispatch_scores<96> (scores, qb, ldq, kb, ldk, lse, nq, nk, heads, scale_log2, stream);
  case 128: return dispatch_scores<128> (scores, qb, ldq, kb, ldk, lse, nq, nk, heads, scale_log2, stream);
  default: return cudaErrorInvalidValue;
  }
}

} // namespace vdit
