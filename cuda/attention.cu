// Flash attention forward, sm_80 path (mma.sync) and the dispatcher. One block of
// 4 warps owns 64 query rows of one head and walks that row's kept key tiles (all
// tiles when dense) with an online softmax, K/V double-buffered through cp.async.
// Fully kept tiles run without any per-element test; tiles marked partial (a layout
// block boundary inside the tile, or the ragged end of the keys) are masked element by
// element from the layout's block bitmap.
//
// Why masking and not padding: layout blocks may have any size (a 720p latent frame is
// 3,600 tokens, 56.25 key tiles), and q/k/v stay the caller's contiguous rows. A frame
// tile touches at most one partial tile per edge, so the masked work is a few % of a
// kept frame tile at 3,600 tokens.
//
// On sm_90 devices with a sm_90a build, head dims 64, 96 and 128 without bias, dense or
// with query blocks of 128+ rows, go to the FlashAttention-3-structured kernel
// (attention_fa3.cu); other head dims from 33 to 128 to the first wgmma kernel
// (attention_sm90.cu). VDIT_CUDA_ATTN=sm80 / sm90 in the environment forces those.
#include "launch.cuh"
#include "attention_fa3.h"
#include "attention_sm90.h"
#include "attention_tile.cuh"

namespace vdit {
namespace {

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

  load_tile<D, ATTN_BR, VEC> (sq, qh, p.ldq, q0, p.nq, p.hd);
  if (begin < end) {
    bool partial;
    const int kt = key_tile (p, begin, &partial);
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
      const int kn = key_tile (p, it + 1, &pn);
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
    const int kt = key_tile (p, it, &partial);
    float s[ATTN_BC / 8][4];
    qk_tile<D> (s, qf, sk + stage * TS::KV_ELEMS, lane);
    scale_mask<BIAS> (s, p, h, lh, row, qb, kt * ATTN_BC, partial, t);
    softmax_update<D> (s, o, m, l);

    // O += P·V, V fragments through ldmatrix.trans
    uint32_t a[ATTN_BC / 16][4];
    p_frags (a, s);
    const bf16 *vs = sv + stage * TS::KV_ELEMS;
    const int mi = lane / 8, rr = lane % 8;
    const bf16 *vbase = vs + ((mi % 2) * 8 + rr) * TS::STRIDE + (mi / 2) * 8;
#pragma unroll
    for (int kc = 0; kc < ATTN_BC / 16; kc++) {
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t b[4];
        ldmatrix_x4_trans (b, vbase + kc * 16 * TS::STRIDE + dp * 16);
        mma_bf16 (o[2 * dp], a[kc], b[0], b[1]);
        mma_bf16 (o[2 * dp + 1], a[kc], b[2], b[3]);
      }
    }
    __syncthreads (); // this stage is refilled two iterations on
  }
  cp_async_wait<0> ();
  write_rows<D> (p, h, row, o, m, l, t);
}

template <int D, bool VEC, bool BIAS>
cudaError_t
launch (const AttnParams &p, dim3 grid, cudaStream_t stream)
{
  using TS = TileShape<D>;
  constexpr size_t smem = (size_t) (TS::Q_ELEMS + 4 * TS::KV_ELEMS) * sizeof (bf16);
  cudaError_t err = set_max_dynamic_smem<attention_kernel<D, VEC, BIAS>> ((int) smem);
  if (err != cudaSuccess)
    return err;
  attention_kernel<D, VEC, BIAS><<<grid, ATTN_THREADS, smem, stream>>> (p);
  return cudaGetLastError ();
}

template <int D>
cudaError_t
dispatch (const AttnParams &p, bool vec, bool bias, dim3 grid, cudaStream_t s)
{
  if (vec)
    return bias ? launch<D, true, true> (p, grid, s) : launch<D, true, false> (p, grid, s);
  return bias ? launch<D, false, true> (p, grid, s) : launch<D, false, false> (p, grid, s);
}

// VDIT_CUDA_ATTN=sm80 or sm90 forces the mma.sync or the first wgmma kernel (to
// compare kernels in one run); unset, the fastest usable one runs.
int
forced_kernel ()
{
  static const int forced = [] {
    return vdit_cuda_attention_variant ("sm80")   ? 80
           : vdit_cuda_attention_variant ("sm90") ? 90
                                                  : 0;
  }();
  return forced;
}

} // namespace

bool
vdit_cuda_attention_forced ()
{
  return forced_kernel () != 0;
}

} // namespace vdit

using namespace vdit;

// The kernels' parameters for a's call (its layout's 64 × 64 lists when it has one).
static AttnParams
params_of (const vdit_cuda_attn_args *a)
{
  const vdit_cuda_attn_layout *lay = a->layout;
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
  p.n_ktiles = (a->nk + ATTN_BC - 1) / ATTN_BC;
  p.n_qtiles = (a->nq + ATTN_BR - 1) / ATTN_BR;
  p.n_pairs = (p.n_qtiles + 1) / 2;
  p.lay_heads = 1;
  if (lay) {
    p.row_ptr = lay->row_ptr, p.cols = lay->cols, p.order = lay->order;
    p.order2 = lay->order2;
    p.bitmap = lay->bitmap;
    p.lay_heads = lay->n_heads;
    p.block_q = lay->block_q, p.block_k = lay->block_k;
    p.n_qblocks = lay->n_qblocks, p.n_kblocks = lay->n_kblocks;
  }
  return p;
}

// q, k and v in whole 16-byte pieces (cp.async, TMA)
static bool
vec_ok (const vdit_cuda_attn_args *a)
{
  return a->head_dim % 8 == 0 && a->ldq % 8 == 0 && a->ldk % 8 == 0 && a->ldv % 8 == 0 &&
         aligned16 (a->q) && aligned16 (a->k) && aligned16 (a->v);
}

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

  const AttnParams p = params_of (a);
  const int hd = a->head_dim;
  const bool vec = vec_ok (a);
  const bool bias = a->bias != nullptr;
  // the wgmma kernel shares K/V between two 64-row tiles: worth it when both walk the
  // same key tiles (dense, frame tiles), not for 64-row blocks with their own patterns
  const bool pairs_agree = lay == nullptr || lay->block_q >= 2 * ATTN_BR;
  const int forced = forced_kernel ();
  // (no keys: a TMA tensor map needs at least one row; the sm_80 kernel writes the zeros)
  if (vec && !bias && (hd == 64 || hd == 96 || hd == 128) && a->nk > 0 && forced == 0 &&
      vdit_cuda_attention_fa3_usable ()) {
    AttnParams w = p;
    if (lay && pairs_agree) {
      w.row_ptr = lay->wide_row_ptr, w.cols = lay->wide_cols, w.order = lay->wide_order;
      w.n_qtiles = lay->n_wide_qtiles;
    }
    return vdit_cuda_attention_fa3_launch (w, a->heads, !pairs_agree, stream);
  }
  if (vec && !bias && hd > 32 && pairs_agree && forced != 80 &&
      vdit_cuda_attention_sm90_usable ())
    return vdit_cuda_attention_sm90_launch (p, a->heads, stream);

  if (p.n_qtiles > 65535)
    return cudaErrorInvalidConfiguration;
  const dim3 grid (a->heads, p.n_qtiles);
  if (hd <= 16)
    return dispatch<16> (p, vec, bias, grid, stream);
  if (hd <= 32)
    return dispatch<32> (p, vec, bias, grid, stream);
  if (hd <= 64)
    return dispatch<64> (p, vec, bias, grid, stream);
  if (hd <= 96)
    return dispatch<96> (p, vec, bias, grid, stream);
  return dispatch<128> (p, vec, bias, grid, stream);
}

extern "C" int
vdit_cuda_attention_scored_usable (const vdit_cuda_attn_args *a)
{
  const int hd = a->head_dim;
  return !vdit_cuda_attention_variant ("two-pass-search") && a->layout == nullptr &&
         a->bias == nullptr && a->lse != nullptr && a->nq > 0 && a->nk > 0 && a->heads > 0 &&
         (hd == 64 || hd == 96 || hd == 128) && vec_ok (a) && !vdit_cuda_attention_forced () &&
         vdit_cuda_attention_fa3_usable ();
}

extern "C" size_t
vdit_cuda_attention_scored_elems (const vdit_cuda_attn_args *a, int heads)
{
  return (size_t) heads * ((a->nk + 63) / 64) * (size_t) a->nq;
}

// Heads go in groups as large as the scratch holds; each group's attention writes its
// rows' block sums and the reduction turns them into the group's scores.
extern "C" cudaError_t
vdit_cuda_attention_scored_launch (const vdit_cuda_attn_args *a, float *scores, float *row_lse,
                                   size_t row_lse_elems, cudaStream_t stream)
{
  if (!vdit_cuda_attention_scored_usable (a))
    return cudaErrorNotSupported;
  const size_t per_head = vdit_cuda_attention_scored_elems (a, 1);
  const size_t fit = row_lse_elems / per_head;
  const int group = fit < (size_t) a->heads ? (int) fit : a->heads;
  if (group < 1)
    return cudaErrorInvalidValue;
  const size_t n_scores = (size_t) ((a->nq + 63) / 64) * ((a->nk + 63) / 64);
  for (int h0 = 0; h0 < a->heads; h0 += group) {
    vdit_cuda_attn_args g = *a;
    g.heads = a->heads - h0 < group ? a->heads - h0 : group;
    g.q = static_cast<const bf16 *> (a->q) + (size_t) h0 * a->head_dim;
    g.k = static_cast<const bf16 *> (a->k) + (size_t) h0 * a->head_dim;
    g.v = static_cast<const bf16 *> (a->v) + (size_t) h0 * a->head_dim;
    g.out = static_cast<bf16 *> (a->out) + (size_t) h0 * a->head_dim;
    g.lse = a->lse + (size_t) h0 * a->nq;
    AttnParams p = params_of (&g);
    p.row_lse = row_lse;
    cudaError_t err = vdit_cuda_attention_scored_fa3_launch (p, g.heads, stream);
    if (err == cudaSuccess)
      err = vdit_cuda_block_scores_from_rows_launch (scores + (size_t) h0 * n_scores, row_lse,
                                                     g.lse, a->nq, a->nk, g.heads, stream);
    if (err != cudaSuccess)
      return err;
  }
  return cudaSuccess;
}
