// AdaSpa block scores: for each (query block, key block) of a head, the attention mass
// Σ exp(q·kᵀ·scale − lse[row]) under a cached LSE. The same tile walk as the attention
// kernel without P·V: one block of 4 warps per 64 query rows, every key tile, K
// double-buffered. Sums go to a shared (≤ 64 × 64) table of the layout blocks the tile
// touches, then once per key tile to global memory with atomics (layout blocks may span
// several kernel tiles). When blocks are multiples of 16 rows and 8 keys (64 in AdaSpa)
// a warp reduces each 16 × 8 piece before its single shared atomic.
#include <math_constants.h>

#include "launch.cuh"
#include "attention.h"
#include "attention_fa3.h"
#include "attention_tile.cuh"

namespace vdit {
namespace {

constexpr int SPAN = 64; // layout blocks a 64-wide tile can touch, at most

struct ScoreParams {
  float *scores;
  const bf16 *q, *k;
  const float *lse;
  int ldq, ldk, nq, nk, hd;
  float scale_log2;
  int block_q, block_k, n_qblocks, n_kblocks;
};

template <int D, bool VEC>
__global__ void __launch_bounds__ (ATTN_THREADS)
block_scores_kernel (const ScoreParams p)
{
  using TS = TileShape<D>;
  extern __shared__ __align__ (16) unsigned char smem_raw[];
  bf16 *sq = reinterpret_cast<bf16 *> (smem_raw);
  bf16 *sk = sq + TS::Q_ELEMS; // 2 stages
  float *acc = reinterpret_cast<float *> (sk + 2 * TS::KV_ELEMS); // SPAN × SPAN

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int h = blockIdx.x;
  const int q0 = blockIdx.y * ATTN_BR;
  const int n_ktiles = (p.nk + ATTN_BC - 1) / ATTN_BC;
  const bf16 *qh = p.q + (size_t) h * p.hd;
  const bf16 *kh = p.k + (size_t) h * p.hd;
  const bool fast = p.block_q % 16 == 0 && p.block_k % 8 == 0;

  const int row[2] = { q0 + warp * 16 + g, q0 + warp * 16 + g + 8 };
  float lse2[2];
  for (int r = 0; r < 2; r++)
    lse2[r] = row[r] < p.nq ? p.lse[(size_t) h * p.nq + row[r]] * LOG2E : -CUDART_INF_F;
  const int qb_first = q0 / p.block_q;
  const int qb_last = (min (q0 + ATTN_BR, p.nq) - 1) / p.block_q;
  const int nqs = qb_last - qb_first + 1;

  for (int i = threadIdx.x; i < SPAN * SPAN; i += ATTN_THREADS)
    acc[i] = 0.0f;
  load_tile<D, ATTN_BR, VEC> (sq, qh, p.ldq, q0, p.nq, p.hd);
  load_tile<D, ATTN_BC, VEC> (sk, kh, p.ldk, 0, p.nk, p.hd);
  cp_async_commit ();

  uint32_t qf[D / 16][4];
  for (int kt = 0; kt < n_ktiles; kt++) {
    const int stage = kt & 1;
    if (kt + 1 < n_ktiles)
      load_tile<D, ATTN_BC, VEC> (sk + (stage ^ 1) * TS::KV_ELEMS, kh, p.ldk,
                                  (kt + 1) * ATTN_BC, p.nk, p.hd);
    cp_async_commit ();
    cp_async_wait<1> ();
    __syncthreads ();
    if (kt == 0)
      load_q_frags<D> (qf, sq, warp, lane);

    const int k0 = kt * ATTN_BC;
    const int kb_first = k0 / p.block_k;
    const int kb_last = (min (k0 + ATTN_BC, p.nk) - 1) / p.block_k;
    const int nks = kb_last - kb_first + 1;

    float s[ATTN_BC / 8][4];
    qk_tile<D> (s, qf, sk + stage * TS::KV_ELEMS, lane);
#pragma unroll
    for (int nt = 0; nt < ATTN_BC / 8; nt++) {
      float part = 0.0f;
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e / 2, col = k0 + nt * 8 + 2 * t + (e & 1);
        // lse = −inf (a row that kept nothing) or a row/key past the end adds nothing
        float x = 0.0f;
        if (col < p.nk && lse2[r] != -CUDART_INF_F)
          x = exp2f (s[nt][e] * p.scale_log2 - lse2[r]);
        if (fast) {
          part += x;
        } else if (x != 0.0f) {
          const int qbl = row[r] / p.block_q - qb_first, kbl = col / p.block_k - kb_first;
          atomicAdd (&acc[qbl * SPAN + kbl], x);
        }
      }
      if (fast) {
        // the warp's 16 rows and this 8-key piece lie in one layout block
#pragma unroll
        for (int off = 16; off > 0; off /= 2)
          part += __shfl_xor_sync (0xffffffffu, part, off);
        const int r0 = q0 + warp * 16, c0 = k0 + nt * 8;
        if (lane == 0 && r0 < p.nq && c0 < p.nk)
          atomicAdd (&acc[(r0 / p.block_q - qb_first) * SPAN + c0 / p.block_k - kb_first], part);
      }
    }
    __syncthreads ();
    for (int i = threadIdx.x; i < nqs * nks; i += ATTN_THREADS) {
      const int a = i / nks, b = i % nks;
      float *cell = &acc[a * SPAN + b];
      atomicAdd (&p.scores[((size_t) h * p.n_qblocks + qb_first + a) * p.n_kblocks + kb_first + b],
                 *cell);
      *cell = 0.0f;
    }
    // the next iteration's barrier orders these clears before new sums
  }
  cp_async_wait<0> ();
}

template <int D, bool VEC>
cudaError_t
launch (const ScoreParams &p, int heads, int n_qtiles, cudaStream_t stream)
{
  using TS = TileShape<D>;
  constexpr size_t smem =
      (size_t) (TS::Q_ELEMS + 2 * TS::KV_ELEMS) * sizeof (bf16) + SPAN * SPAN * sizeof (float);
  cudaError_t err = set_max_dynamic_smem<block_scores_kernel<D, VEC>> ((int) smem);
  if (err != cudaSuccess)
    return err;
  block_scores_kernel<D, VEC><<<dim3 (heads, n_qtiles), ATTN_THREADS, smem, stream>>> (p);
  return cudaGetLastError ();
}

template <int D>
cudaError_t
dispatch (const ScoreParams &p, bool vec, int heads, int n_qtiles, cudaStream_t s)
{
  return vec ? launch<D, true> (p, heads, n_qtiles, s) : launch<D, false> (p, heads, n_qtiles, s);
}

// Block scores from the scored attention's per-row block sums: for query block qb of
// head h, Σ over its 64 rows of 2^(row_lse − lse·log2 e), one warp per key block at a
// time, a lane per two rows; rows with lse = −inf add nothing.
__global__ void __launch_bounds__ (256)
scores_from_rows_kernel (float *scores, const float *row_lse, const float *lse, int nq, int nkb)
{
  const int qb = blockIdx.x, h = blockIdx.y, nqb = gridDim.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int row[2];
  float lse2[2];
  for (int r = 0; r < 2; r++) {
    row[r] = qb * 64 + lane + 32 * r;
    const float l = row[r] < nq ? lse[(size_t) h * nq + row[r]] : -CUDART_INF_F;
    lse2[r] = l == -CUDART_INF_F ? CUDART_INF_F : l * LOG2E;
  }
  for (int kb = warp; kb < nkb; kb += 8) {
    const float *x = row_lse + ((size_t) h * nkb + kb) * nq;
    float sum = 0.0f;
    for (int r = 0; r < 2; r++)
      if (row[r] < nq)
        sum += exp2f (x[row[r]] - lse2[r]);
    for (int off = 16; off > 0; off /= 2)
      sum += __shfl_xor_sync (0xffffffffu, sum, off);
    if (lane == 0)
      scores[((size_t) h * nqb + qb) * nkb + kb] = sum;
  }
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_block_scores_from_rows_launch (float *scores, const float *row_lse, const float *lse,
                                         int nq, int nk, int heads, cudaStream_t stream)
{
  const int nqb = (nq + 63) / 64, nkb = (nk + 63) / 64;
  if (nq <= 0 || nk <= 0 || heads <= 0)
    return cudaSuccess;
  if (heads > 65535)
    return cudaErrorInvalidConfiguration;
  scores_from_rows_kernel<<<dim3 (nqb, heads), 256, 0, stream>>> (scores, row_lse, lse, nq, nkb);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_block_scores_launch (float *scores, const void *q, int ldq, const void *k, int ldk,
                               const float *lse, int nq, int nk, int heads, int head_dim,
                               float scale, int block_q, int block_k, cudaStream_t stream)
{
  if (head_dim <= 0 || head_dim > VDIT_CUDA_ATTN_MAX_HEAD_DIM || block_q <= 0 || block_k <= 0)
    return cudaErrorInvalidValue;
  ScoreParams p = {};
  p.scores = scores;
  p.q = static_cast<const bf16 *> (q);
  p.k = static_cast<const bf16 *> (k);
  p.lse = lse;
  p.ldq = ldq, p.ldk = ldk, p.nq = nq, p.nk = nk, p.hd = head_dim;
  p.scale_log2 = scale * LOG2E;
  p.block_q = block_q, p.block_k = block_k;
  p.n_qblocks = (nq + block_q - 1) / block_q;
  p.n_kblocks = (nk + block_k - 1) / block_k;
  cudaError_t err = cudaMemsetAsync (
      scores, 0, (size_t) heads * p.n_qblocks * p.n_kblocks * sizeof (float), stream);
  if (err != cudaSuccess || nq == 0 || nk == 0 || heads == 0)
    return err;
  const int n_qtiles = (nq + ATTN_BR - 1) / ATTN_BR;
  if (n_qtiles > 65535)
    return cudaErrorInvalidConfiguration;
  const bool vec = head_dim % 8 == 0 && ldq % 8 == 0 && ldk % 8 == 0 &&
                   (reinterpret_cast<uintptr_t> (q) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t> (k) & 15) == 0;
  // AdaSpa's 64 × 64 blocks on Hopper: the wgmma pipeline of attention_fa3.cu
  if (vec && block_q == ATTN_BR && block_k == ATTN_BC &&
      (head_dim == 64 || head_dim == 96 || head_dim == 128) && !vdit_cuda_attention_forced () &&
      vdit_cuda_attention_fa3_usable ())
    return vdit_cuda_block_scores_fa3_launch (scores, q, ldq, k, ldk, lse, nq, nk, heads,
                                              head_dim, p.scale_log2, stream);
  if (head_dim <= 16)
    return dispatch<16> (p, vec, heads, n_qtiles, stream);
  if (head_dim <= 32)
    return dispatch<32> (p, vec, heads, n_qtiles, stream);
  if (head_dim <= 64)
    return dispatch<64> (p, vec, heads, n_qtiles, stream);
  if (head_dim <= 96)
    return dispatch<96> (p, vec, heads, n_qtiles, stream);
  return dispatch<128> (p, vec, heads, n_qtiles, stream);
}
