// Flash attention forward, sm_80 path (mma.sync; also what sm_90a runs for now):
// one block of 4 warps owns 64 query rows of one head and walks that row's kept key
// tiles (all tiles when dense) with an online softmax, K/V double-buffered through
// cp.async. Fully kept tiles run without any per-element test; tiles marked partial
// (a layout block boundary inside the tile, or the ragged end of the keys) are masked
// element by element from the layout's block bitmap.
//
// Why masking and not padding: layout blocks may have any size (a 720p latent frame is
// 3,600 tokens, 56.25 key tiles), and q/k/v stay the caller's contiguous rows. A frame
// tile touches at most one partial tile per edge, so the masked work is ~2–4 % of a kept
// frame tile at 3,600 tokens.
#include <math_constants.h>

#include "attention.h"
#include "attention_tile.cuh"

namespace vdit {
namespace {

constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

struct AttnParams {
  bf16 *o;
  const bf16 *q, *k, *v, *bias;
  float *lse;
  int ldo, ldq, ldk, ldv;
  int nq, nk, hd;
  float scale_log2; // softmax scale in base-2 units
  // block-sparse layout; row_ptr == NULL means dense
  const int32_t *row_ptr, *cols, *order;
  const uint32_t *bitmap;
  int lay_heads, n_qtiles, n_ktiles;
  int block_q, block_k, n_qblocks, n_kblocks;
};

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

template <int D, bool VEC, bool BIAS>
__global__ void __launch_bounds__ (ATTN_THREADS)
attention_kernel (const AttnParams p)
{
  using TS = TileShape<D>;
  extern __shared__ __align__ (16) unsigned char smem_raw[];
  bf16 *sq = reinterpret_cast<bf16 *> (smem_raw);
  bf16 *sk = sq + TS::Q_ELEMS;      // 2 stages
  bf16 *sv = sk + 2 * TS::KV_ELEMS; // 2 stages

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int h = blockIdx.x;
  const int lh = p.lay_heads == 1 ? 0 : h;
  int qt = blockIdx.y, begin = 0, end = p.n_ktiles;
  if (p.row_ptr) {
    qt = p.order[lh * p.n_qtiles + blockIdx.y];
    begin = p.row_ptr[lh * (p.n_qtiles + 1) + qt];
    end = p.row_ptr[lh * (p.n_qtiles + 1) + qt + 1];
  }
  const int q0 = qt * ATTN_BR;
  const bf16 *qh = p.q + (size_t) h * p.hd;
  const bf16 *kh = p.k + (size_t) h * p.hd;
  const bf16 *vh = p.v + (size_t) h * p.hd;

  // this thread's two rows (g and g + 8 of the warp's 16)
  const int row[2] = { q0 + warp * 16 + g, q0 + warp * 16 + g + 8 };
  int qb[2] = { 0, 0 };
  if (p.bitmap) {
    qb[0] = min (row[0], p.nq - 1) / p.block_q;
    qb[1] = min (row[1], p.nq - 1) / p.block_q;
  }

  auto tile_of = [&] (int it, bool *partial) {
    if (p.row_ptr) {
      const int c = p.cols[it];
      *partial = (c & VDIT_CUDA_ATTN_PARTIAL) != 0;
      return c & ~VDIT_CUDA_ATTN_PARTIAL;
    }
    *partial = it == p.n_ktiles - 1 && p.nk % ATTN_BC != 0;
    return it;
  };

  load_tile<D, ATTN_BR, VEC> (sq, qh, p.ldq, q0, p.nq, p.hd);
  if (begin < end) {
    bool partial;
    const int kt = tile_of (begin, &partial);
    load_tile<D, ATTN_BC, VEC> (sk, kh, p.ldk, kt * ATTN_BC, p.nk, p.hd);
    load_tile<D, ATTN_BC, VEC> (sv, vh, p.ldv, kt * ATTN_BC, p.nk, p.hd);
  }
  cp_async_commit ();

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++)
    o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m[2] = { -CUDART_INF_F, -CUDART_INF_F }, l[2] = { 0.0f, 0.0f };
  uint32_t qf[D / 16][4];

  for (int it = begin; it < end; it++) {
    const int stage = (it - begin) & 1;
    if (it + 1 < end) {
      bool pn;
      const int kn = tile_of (it + 1, &pn);
      load_tile<D, ATTN_BC, VEC> (sk + (stage ^ 1) * TS::KV_ELEMS, kh, p.ldk, kn * ATTN_BC,
                                  p.nk, p.hd);
      load_tile<D, ATTN_BC, VEC> (sv + (stage ^ 1) * TS::KV_ELEMS, vh, p.ldv, kn * ATTN_BC,
                                  p.nk, p.hd);
    }
    cp_async_commit ();
    cp_async_wait<1> ();
    __syncthreads ();
    if (it == begin)
      load_q_frags<D> (qf, sq, warp, lane);

    bool partial;
    const int kt = tile_of (it, &partial);
    const int k0 = kt * ATTN_BC;

    float s[ATTN_BC / 8][4];
    qk_tile<D> (s, qf, sk + stage * TS::KV_ELEMS, lane);

    // scores in base 2: s·scale·log2e (+ bias·log2e); masked entries −inf
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

    // online softmax; l stays a per-thread partial sum until the end
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = -CUDART_INF_F;
#pragma unroll
      for (int nt = 0; nt < ATTN_BC / 8; nt++)
        mx = fmaxf (mx, fmaxf (s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 1));
      mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 2));
      const float m_new = fmaxf (m[r], mx);
      const float base = m_new == -CUDART_INF_F ? 0.0f : m_new; // rows masked so far
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

    // O += P·V: the S accumulators of two 8-key tiles are one 16-key A fragment
    const bf16 *vs = sv + stage * TS::KV_ELEMS;
    const int mi = lane / 8, rr = lane % 8;
    const bf16 *vbase = vs + ((mi % 2) * 8 + rr) * TS::STRIDE + (mi / 2) * 8;
#pragma unroll
    for (int kc = 0; kc < ATTN_BC / 16; kc++) {
      uint32_t a[4];
      a[0] = pack_bf16 (s[2 * kc][0], s[2 * kc][1]);
      a[1] = pack_bf16 (s[2 * kc][2], s[2 * kc][3]);
      a[2] = pack_bf16 (s[2 * kc + 1][0], s[2 * kc + 1][1]);
      a[3] = pack_bf16 (s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t b[4];
        ldmatrix_x4_trans (b, vbase + kc * 16 * TS::STRIDE + dp * 16);
        mma_bf16 (o[2 * dp], a, b[0], b[1]);
        mma_bf16 (o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    __syncthreads (); // this stage is refilled two iterations on
  }
  cp_async_wait<0> ();

  // finish: O / l, LSE = (m + log2 l)·ln 2; rows without a kept key: zeros and −inf
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
      p.lse[(size_t) h * p.nq + row[r]] = lt > 0.0f ? (m[r] + log2f (lt)) * LN2 : -CUDART_INF_F;
  }
}

template <int D, bool VEC, bool BIAS>
cudaError_t
launch (const AttnParams &p, int heads, int n_qtiles, cudaStream_t stream)
{
  using TS = TileShape<D>;
  constexpr size_t smem = (size_t) (TS::Q_ELEMS + 4 * TS::KV_ELEMS) * sizeof (bf16);
  // per device and cheap: set on every launch rather than caching per process
  cudaError_t err = cudaFuncSetAttribute (attention_kernel<D, VEC, BIAS>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int) smem);
  if (err != cudaSuccess)
    return err;
  attention_kernel<D, VEC, BIAS><<<dim3 (heads, n_qtiles), ATTN_THREADS, smem, stream>>> (p);
  return cudaGetLastError ();
}

template <int D>
cudaError_t
dispatch (const AttnParams &p, bool vec, bool bias, int heads, int n_qtiles, cudaStream_t s)
{
  if (vec)
    return bias ? launch<D, true, true> (p, heads, n_qtiles, s)
                : launch<D, true, false> (p, heads, n_qtiles, s);
  return bias ? launch<D, false, true> (p, heads, n_qtiles, s)
              : launch<D, false, false> (p, heads, n_qtiles, s);
}

bool
aligned16 (const void *ptr)
{
  return (reinterpret_cast<uintptr_t> (ptr) & 15) == 0;
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_attention_launch (const vdit_cuda_attn_args *a, cudaStream_t stream)
{
  if (a->head_dim <= 0 || a->head_dim > VDIT_CUDA_ATTN_MAX_HEAD_DIM || a->nq < 0 || a->nk < 0)
    return cudaErrorInvalidValue;
  if (a->nq == 0 || a->heads == 0)
    return cudaSuccess;
  const vdit_cuda_attn_layout *lay = a->layout;
  if (lay && (lay->nq != a->nq || lay->nk != a->nk ||
              (lay->n_heads != 1 && lay->n_heads != a->heads)))
    return cudaErrorInvalidValue;

  AttnParams p = {};
  p.o = static_cast<bf16 *> (a->out);
  p.q = static_cast<const bf16 *> (a->q);
  p.k = static_cast<const bf16 *> (a->k);
  p.v = static_cast<const bf16 *> (a->v);
  p.bias = static_cast<const bf16 *> (a->bias);
  p.lse = a->lse;
  p.ldo = a->ldo, p.ldq = a->ldq, p.ldk = a->ldk, p.ldv = a->ldv;
  p.nq = a->nq, p.nk = a->nk, p.hd = a->head_dim;
  p.scale_log2 = a->scale * LOG2E;
  p.n_qtiles = (a->nq + ATTN_BR - 1) / ATTN_BR;
  p.n_ktiles = (a->nk + ATTN_BC - 1) / ATTN_BC;
  p.lay_heads = 1;
  if (lay) {
    p.row_ptr = lay->row_ptr, p.cols = lay->cols, p.order = lay->order;
    p.bitmap = lay->bitmap;
    p.lay_heads = lay->n_heads;
    p.block_q = lay->block_q, p.block_k = lay->block_k;
    p.n_qblocks = lay->n_qblocks, p.n_kblocks = lay->n_kblocks;
  }
  if (p.n_qtiles > 65535)
    return cudaErrorInvalidConfiguration;

  const int hd = a->head_dim;
  const bool vec = hd % 8 == 0 && a->ldq % 8 == 0 && a->ldk % 8 == 0 && a->ldv % 8 == 0 &&
                   aligned16 (a->q) && aligned16 (a->k) && aligned16 (a->v);
  const bool bias = a->bias != nullptr;
  if (hd <= 16)
    return dispatch<16> (p, vec, bias, a->heads, p.n_qtiles, stream);
  if (hd <= 32)
    return dispatch<32> (p, vec, bias, a->heads, p.n_qtiles, stream);
  if (hd <= 64)
    return dispatch<64> (p, vec, bias, a->heads, p.n_qtiles, stream);
  if (hd <= 96)
    return dispatch<96> (p, vec, bias, a->heads, p.n_qtiles, stream);
  return dispatch<128> (p, vec, bias, a->heads, p.n_qtiles, stream);
}
