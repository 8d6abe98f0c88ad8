// Flash attention forward for Hopper (sm_90a): both GEMMs on wgmma. A block of two
// warpgroups owns two 64-row query tiles and walks the union of their kept key tiles
// (a tile missing from one list is computed fully masked there), K/V shared and
// double-buffered through cp.async. S = Q·Kᵀ reads Q and K from shared memory; the
// online softmax runs on the accumulators; O += P·V takes P from registers (the S
// accumulator layout is wgmma's A-register layout) and V from shared memory, N-major.
// Masking, softmax and the row writes are shared with the sm_80 kernel
// (attention_tile.cuh), so both paths give the same results.
//
// The dispatcher sends it dense attention and layouts whose query blocks span both
// tiles of a pair (tile mode's frames); for 64-row blocks (AdaSpa) the pair's lists
// differ and the sm_80 kernel, which loads only its own tiles, is faster.
// Measured versions are in cuda/NOTES.md (H100, 24 heads × 96, 28,800 tokens: 32.4 ms
// dense here, 42.6 ms on the sm_80 kernel, 15.3 ms cuDNN).
//
// Shared-memory tiles use wgmma's non-swizzled canonical layout: core matrices of
// 8 rows × 16 bytes stored contiguously, chunk-major: the core of rows 8g..8g+7 and
// columns 8c..8c+7 sits at (c·R/8 + g)·128 bytes for a tile of R rows. Each group of 8
// threads fills one core (128 contiguous bytes), so the cp.async writes do not conflict.
//
// Not yet here (FA3): TMA loads, producer/consumer warp specialisation, and overlapping
// the softmax of one tile with the GEMMs of another (ping-pong between warpgroups).
#include <limits.h>
#include <stdlib.h>

#include "launch.cuh"
#include "attention_sm90.h"
#include "attention_tile.cuh"
#include "wgmma.cuh"

namespace vdit {
namespace {

constexpr int SM90_BR = 128;     // query rows per block
constexpr int SM90_THREADS = 256; // 2 warpgroups

template <int D>
struct Sm90Shape {
  static constexpr int STAGES = 2;
  static constexpr int Q_BYTES = SM90_BR * D * 2;
  static constexpr int KV_BYTES = ATTN_BC * D * 2;
  static constexpr size_t SMEM = Q_BYTES + 2 * STAGES * KV_BYTES; // Q, K and V stages
};

// Byte offset of element (r, 8c) in a chunk-major tile of R rows.
template <int R>
__device__ __forceinline__ int
core_offset (int r, int c)
{
  return (c * (R / 8) + r / 8) * 128 + (r % 8) * 16;
}

// Rows [r0, r0 + R) of a head's matrix into a chunk-major tile; rows ≥ n and columns
// ≥ hd are zero-filled. Needs 16-byte aligned rows (hd % 8 == 0, ld % 8 == 0).
template <int D, int R>
__device__ __forceinline__ void
load_tile_sm90 (unsigned char *dst, const bf16 *src, int ld, int r0, int n, int hd)
{
  constexpr int CHUNKS = D / 8;
  for (int i = threadIdx.x; i < R * CHUNKS; i += SM90_THREADS) {
    const int r8 = i % 8, rest = i / 8;
    const int c = rest % CHUNKS, r = (rest / CHUNKS) * 8 + r8;
    const bool ok = r0 + r < n && c * 8 < hd;
    const bf16 *s = ok ? src + (size_t) (r0 + r) * ld + c * 8 : src;
    cp_async16 (dst + core_offset<R> (r, c), s, ok ? 16 : 0);
  }
}

// The two warpgroups' key-tile lists (query tiles 2·pair and 2·pair + 1), walked as one
// ascending merge: each step is a key tile and, per warpgroup, its list entry or −1.
struct PairWalk {
  int ia, ea, ib, eb;
};

__device__ __forceinline__ int
walk_next (const AttnParams &p, const PairWalk &w, int *entry_a, int *entry_b)
{
  const int ka = w.ia < w.ea ? tile_entry (p, w.ia) : -1;
  const int kb = w.ib < w.eb ? tile_entry (p, w.ib) : -1;
  const int ta = ka < 0 ? INT_MAX : ka & ~VDIT_CUDA_ATTN_PARTIAL;
  const int tb = kb < 0 ? INT_MAX : kb & ~VDIT_CUDA_ATTN_PARTIAL;
  const int kt = min (ta, tb);
  *entry_a = ta == kt ? ka : -1;
  *entry_b = tb == kt ? kb : -1;
  return kt == INT_MAX ? -1 : kt;
}

template <int D, bool SPARSE>
__global__ void __launch_bounds__ (SM90_THREADS)
attention_sm90_kernel (const AttnParams p)
{
#if defined(__CUDA_ARCH__) && !defined(VDIT_WGMMA)
  __trap (); // compiled for another target: never launched (vdit_cuda_attention_sm90_usable)
#endif
  using SH = Sm90Shape<D>;
  extern __shared__ __align__ (128) unsigned char smem[];
  unsigned char *sq = smem;
  unsigned char *sk = sq + SH::Q_BYTES;                  // STAGES
  unsigned char *sv = sk + SH::STAGES * SH::KV_BYTES;    // STAGES

  const int wg = threadIdx.x / 128, warp = (threadIdx.x % 128) / 32;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int h = blockIdx.x;
  const int lh = p.lay_heads == 1 ? 0 : h;
  int pair = blockIdx.y;
  PairWalk w = { 0, p.n_ktiles, 0, p.n_ktiles };
  if constexpr (SPARSE) {
    pair = p.order2[lh * p.n_pairs + blockIdx.y];
    const int32_t *rp = p.row_ptr + (size_t) lh * (p.n_qtiles + 1);
    w.ia = rp[2 * pair], w.ea = rp[2 * pair + 1];
    w.ib = w.eb = 0;
    if (2 * pair + 1 < p.n_qtiles)
      w.ib = rp[2 * pair + 1], w.eb = rp[2 * pair + 2];
  }
  const int q0 = pair * SM90_BR;
  const bf16 *qh = p.q + (size_t) h * p.hd;
  const bf16 *kh = p.k + (size_t) h * p.hd;
  const bf16 *vh = p.v + (size_t) h * p.hd;

  const int row[2] = { q0 + wg * 64 + warp * 16 + g, q0 + wg * 64 + warp * 16 + g + 8 };
  int qb[2] = { 0, 0 };
  if (p.bitmap) {
    qb[0] = min (row[0], p.nq - 1) / p.block_q;
    qb[1] = min (row[1], p.nq - 1) / p.block_q;
  }

  // Q as two 64-row tiles, one per warpgroup
  load_tile_sm90<D, 64> (sq, qh, p.ldq, q0, p.nq, p.hd);
  load_tile_sm90<D, 64> (sq + SH::Q_BYTES / 2, qh, p.ldq, q0 + 64, p.nq, p.hd);
  int ea = 0, eb = 0;
  int kt = 0;
  if constexpr (SPARSE)
    kt = walk_next (p, w, &ea, &eb);
  else
    ea = eb = tile_entry (p, 0), kt = p.n_ktiles > 0 ? 0 : -1;
  if (kt >= 0) {
    load_tile_sm90<D, ATTN_BC> (sk, kh, p.ldk, kt * ATTN_BC, p.nk, p.hd);
    load_tile_sm90<D, ATTN_BC> (sv, vh, p.ldv, kt * ATTN_BC, p.nk, p.hd);
  }
  cp_async_commit ();

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++)
    o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m[2] = { -CUDART_INF_F, -CUDART_INF_F }, l[2] = { 0.0f, 0.0f };
  const unsigned char *my_q = sq + wg * (SH::Q_BYTES / 2);

  // Two stages, one tile of prefetch; every wgmma is retired within its step, before
  // the barrier after which the other stage is refilled.
  for (int stage = 0; kt >= 0; stage = stage == SH::STAGES - 1 ? 0 : stage + 1) {
    PairWalk wn = w;
    int ean = 0, ebn = 0, kn;
    if constexpr (SPARSE) {
      wn.ia += ea >= 0, wn.ib += eb >= 0;
      kn = walk_next (p, wn, &ean, &ebn);
    } else {
      kn = kt + 1 < p.n_ktiles ? kt + 1 : -1;
      ean = ebn = kn >= 0 ? tile_entry (p, kn) : -1;
    }
    const int next = stage == SH::STAGES - 1 ? 0 : stage + 1;
    if (kn >= 0) {
      load_tile_sm90<D, ATTN_BC> (sk + next * SH::KV_BYTES, kh, p.ldk, kn * ATTN_BC, p.nk, p.hd);
      load_tile_sm90<D, ATTN_BC> (sv + next * SH::KV_BYTES, vh, p.ldv, kn * ATTN_BC, p.nk, p.hd);
    }
    cp_async_commit ();
    cp_async_wait<1> ();
    fence_proxy_async (); // cp.async wrote through the generic proxy; wgmma reads async
    __syncthreads ();

    // A warpgroup whose list lacks this tile computes it fully masked (adds nothing), so
    // wgmma never sits in conditional code.
    const int mine = wg == 0 ? ea : eb;
    const bool present = !SPARSE || mine >= 0;
    const bool partial = !present || (mine & VDIT_CUDA_ATTN_PARTIAL) != 0;
    const unsigned char *ks = sk + stage * SH::KV_BYTES;
    const unsigned char *vs = sv + stage * SH::KV_BYTES;

    // S(64 × 64) = Q·Kᵀ: both K-major; a k-step of 16 is two 16-byte chunks
    float s[ATTN_BC / 8][4];
#pragma unroll
    for (int nt = 0; nt < ATTN_BC / 8; nt++)
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    wgmma_fence ();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
      wgmma_ss_n64 (&s[0][0], wgmma_desc (my_q + kk * 2 * (64 / 8) * 128, 64 / 8 * 128, 128),
                    wgmma_desc (ks + kk * 2 * (ATTN_BC / 8) * 128, ATTN_BC / 8 * 128, 128),
                    kk > 0);
    wgmma_commit ();
    wgmma_wait<0> ();

    scale_mask<false> (s, p, h, lh, row, qb, kt * ATTN_BC, partial, t);
    if (SPARSE && !present) {
#pragma unroll
      for (int nt = 0; nt < ATTN_BC / 8; nt++)
        s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = -CUDART_INF_F;
    }
    softmax_update<D> (s, o, m, l);
    uint32_t a[ATTN_BC / 16][4];
    p_frags (a, s);

    // O(64 × D) += P·V: V N-major (d contiguous); a k-step of 16 keys is two row groups
    wgmma_fence ();
#pragma unroll
    for (int kc = 0; kc < ATTN_BC / 16; kc++)
      WgmmaRS<D>::run (&o[0][0], a[kc], wgmma_desc (vs + kc * 2 * 128, 128, ATTN_BC / 8 * 128));
    wgmma_commit ();
    wgmma_wait<0> ();
    __syncthreads ();
    w = wn, ea = ean, eb = ebn, kt = kn;
  }
  cp_async_wait<0> ();
  write_rows<D> (p, h, row, o, m, l, t);
}

template <int D, bool SPARSE>
cudaError_t
launch (const AttnParams &p, int heads, cudaStream_t stream)
{
  constexpr size_t smem = Sm90Shape<D>::SMEM;
  cudaError_t err = set_max_dynamic_smem<attention_sm90_kernel<D, SPARSE>> ((int) smem);
  if (err != cudaSuccess)
    return err;
  const int pairs = (p.nq + SM90_BR - 1) / SM90_BR; // == p.n_pairs
  if (pairs > 65535)
    return cudaErrorInvalidConfiguration;
  attention_sm90_kernel<D, SPARSE><<<dim3 (heads, pairs), SM90_THREADS, smem, stream>>> (p);
  return cudaGetLastError ();
}

} // namespace

bool
vdit_cuda_sm90a_kernel_usable (const void *kernel, int state[64])
{
  int dev = 0;
  if (cudaGetDevice (&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError ();
    return false;
  }
  if (state[dev] == 0) {
    int major = 0, minor = 0;
    cudaFuncAttributes fa = {};
    const bool ok = cudaDeviceGetAttribute (&major, cudaDevAttrComputeCapabilityMajor, dev) ==
                        cudaSuccess &&
                    cudaDeviceGetAttribute (&minor, cudaDevAttrComputeCapabilityMinor, dev) ==
                        cudaSuccess &&
                    major == 9 && minor == 0 && cudaFuncGetAttributes (&fa, kernel) == cudaSuccess &&
                    fa.binaryVersion == 90 && fa.ptxVersion >= 90;
    cudaGetLastError ();
    state[dev] = ok ? 1 : 2;
  }
  return state[dev] == 1;
}

bool
vdit_cuda_attention_sm90_usable ()
{
#ifdef VDIT_HAVE_SM90A
  static int state[64]; // per device: 0 unknown, 1 usable, 2 not
  return vdit_cuda_sm90a_kernel_usable ((const void *) attention_sm90_kernel<96, false>, state);
#else
  return false;
#endif
}

cudaError_t
vdit_cuda_attention_sm90_launch (const AttnParams &p, int heads, cudaStream_t stream)
{
  const bool sparse = p.row_ptr != nullptr;
  if (p.hd <= 64)
    return sparse ? launch<64, true> (p, heads, stream) : launch<64, false> (p, heads, stream);
  if (p.hd <= 96)
    return sparse ? launch<96, true> (p, heads, stream) : launch<96, false> (p, heads, stream);
  return sparse ? launch<128, true> (p, heads, stream) : launch<128, false> (p, heads, stream);
}

} // namespace vdit
