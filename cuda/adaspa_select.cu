// AdaSpa's pattern choice on the device: the same choice as engine/adaptive_select.c,
// bit for bit, without the block scores leaving the GPU.
//
//   row_sort      one block per (head, query block): sorts the row's key blocks (the
//                 sink first, then by falling score, ties by index) with a bitonic sort
//                 in shared memory and writes the order and the running sums of the
//                 sorted scores in double, summed in the host's order;
//   recall_sum    per (head, count): Σ over rows of those running sums, rows in order;
//   balance       one warp: recall normalised, then the host's greedy hand-over of blocks
//                 between heads (lanes over heads, ties to the lowest head);
//   build_rows    one block per row: the first keep[h] blocks of the order as a flag
//                 per key block, compacted in index order into the layout's tile list
//                 (64 × 64 tiles), and the kept bits.
#include <math_constants.h>
#include <stdint.h>

#include "adaspa_select.h"
#include "attention.h"

namespace vdit {
namespace {

constexpr int SELECT_THREADS = 256;

// Ascending key = falling score, then rising index (−0 counted as +0, as the host's
// float comparison does).
__device__ __forceinline__ uint64_t
sort_key (float score, int index)
{
  uint32_t u = __float_as_uint (score == 0.0f ? 0.0f : score);
  u = (u & 0x80000000u) ? ~u : u | 0x80000000u; // rising with the float
  return ((uint64_t) ~u << 32) | (uint32_t) index;
}

__global__ void __launch_bounds__ (SELECT_THREADS)
row_sort (int32_t *order, double *prefix, const float *scores, int nkb, int pow2)
{
  extern __shared__ uint64_t keys[]; // pow2
  const size_t row = blockIdx.x;
  const float *sc = scores + row * nkb;
  const int m = nkb - 1; // every block but the sink
  for (int i = threadIdx.x; i < pow2; i += blockDim.x)
    keys[i] = i < m ? sort_key (sc[i + 1], i + 1) : ~(uint64_t) 0;
  __syncthreads ();
  for (int size = 2; size <= pow2; size *= 2)
    for (int stride = size / 2; stride > 0; stride /= 2) {
      for (int i = threadIdx.x; i < pow2 / 2; i += blockDim.x) {
        const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
        const bool up = (lo & size) == 0;
        const uint64_t a = keys[lo], b = keys[hi];
        if ((a > b) == up) {
          keys[lo] = b;
          keys[hi] = a;
        }
      }
      __syncthreads ();
    }
  int32_t *o = order + row * nkb;
  for (int c = threadIdx.x; c < nkb; c += blockDim.x)
    o[c] = c == 0 ? 0 : (int32_t) (uint32_t) keys[c - 1];
  if (threadIdx.x == 0) { // the host's summation order, so the sums match it exactly
    double *pr = prefix + row * nkb, sum = (double) sc[0];
    pr[0] = sum;
    for (int c = 1; c < nkb; c++) {
      sum += (double) sc[(uint32_t) keys[c - 1]];
      pr[c] = sum;
    }
  }
}

// recall(h, c + 1) = Σ_rows prefix(h, row, c), rows in order; recall(h, 0) = 0.
__global__ void
recall_sum (double *recall, const double *prefix, int heads, int nqb, int nkb)
{
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= heads * nkb)
    return;
  const int h = i / nkb, c = i % nkb;
  const double *pr = prefix + (size_t) h * nqb * nkb + c;
  double acc = 0.0;
  for (int r = 0; r < nqb; r++)
    acc += pr[(size_t) r * nkb];
  recall[(size_t) h * (nkb + 1) + c + 1] = acc;
  if (c == 0)
    recall[(size_t) h * (nkb + 1)] = 0.0;
}

// The smaller (value, head) under `better`; ties to the lower head.
template <bool LOWEST>
__device__ __forceinline__ void
warp_pick (double *v, int *h)
{
  for (int off = 16; off > 0; off /= 2) {
    const double ov = __shfl_xor_sync (0xffffffffu, *v, off);
    const int oh = __shfl_xor_sync (0xffffffffu, *h, off);
    const bool take = oh >= 0 && (*h < 0 || (LOWEST ? ov < *v : ov > *v) || (ov == *v && oh < *h));
    if (take)
      *v = ov, *h = oh;
  }
}

// One warp. keep[h] per head, base[h] = its first column in the layout (heads + 1).
__global__ void
balance (int *keep, int *base, double *recall, int heads, int nqb, int nkb, int target,
         int min_keep, double bar)
{
  const int lane = threadIdx.x;
  for (int h = 0; h < heads; h++) {
    double *r = recall + (size_t) h * (nkb + 1);
    const double total = r[nkb];
    __syncwarp ();
    for (int c = lane; c <= nkb; c += 32)
      r[c] = total > 0.0 ? r[c] / total : 1.0;
  }
  for (int h = lane; h < heads; h += 32)
    keep[h] = target;
  __syncwarp ();
  for (;;) {
    double rv = 0.0;
    int recv = -1;
    for (int h = lane; h < heads; h += 32) {
      const double x = recall[(size_t) h * (nkb + 1) + keep[h]];
      if (keep[h] < nkb && x < bar && (recv < 0 || x < rv))
        rv = x, recv = h;
    }
    warp_pick<true> (&rv, &recv);
    double dv = 0.0;
    int donor = -1;
    for (int h = lane; h < heads; h += 32) {
      const double x = recall[(size_t) h * (nkb + 1) + keep[h] - 1];
      if (h != recv && keep[h] > min_keep && x >= bar && (donor < 0 || x > dv))
        dv = x, donor = h;
    }
    warp_pick<false> (&dv, &donor);
    if (recv < 0 || donor < 0)
      break;
    __syncwarp ();
    if (lane == 0)
      keep[recv]++, keep[donor]--;
    __syncwarp ();
  }
  if (lane == 0) {
    int n = 0;
    for (int h = 0; h < heads; h++) {
      base[h] = n;
      n += keep[h] * nqb;
    }
    base[heads] = n;
  }
}

// Row (h, i): its keep[h] first blocks, in index order, as 64-key tiles (the ragged last
// one partial), their kept bits, its row_ptr entry and its place in `order` (every row of
// a head keeps as many blocks, so rows stay in order).
__global__ void __launch_bounds__ (SELECT_THREADS)
build_rows (int32_t *row_ptr, int32_t *cols, int32_t *tile_order, uint32_t *bitmap,
            const int32_t *order, const int *keep, const int *base, int nqb, int nkb,
            bool ragged)
{
  extern __shared__ unsigned char flag[]; // nkb, then SELECT_THREADS ints
  int *count = reinterpret_cast<int *> (flag + ((nkb + 15) & ~15));
  const int row = blockIdx.x, h = row / nqb, i = row % nqb;
  const int k = keep[h];
  const int32_t *o = order + (size_t) row * nkb;
  for (int j = threadIdx.x; j < nkb; j += blockDim.x)
    flag[j] = 0;
  __syncthreads ();
  for (int c = threadIdx.x; c < k; c += blockDim.x)
    flag[o[c]] = 1;
  __syncthreads ();
  // each thread compacts a contiguous chunk; chunk offsets by a scan over the counts
  const int chunk = (nkb + blockDim.x - 1) / blockDim.x;
  const int j0 = threadIdx.x * chunk, j1 = min (nkb, j0 + chunk);
  int n = 0;
  for (int j = j0; j < j1; j++)
    n += flag[j];
  count[threadIdx.x] = n;
  __syncthreads ();
  if (threadIdx.x == 0) {
    int acc = 0;
    for (int t = 0; t < (int) blockDim.x; t++) {
      const int c = count[t];
      count[t] = acc;
      acc += c;
    }
  }
  __syncthreads ();
  const int start = base[h] + i * k;
  int at = start + count[threadIdx.x];
  for (int j = j0; j < j1; j++)
    if (flag[j]) {
      cols[at++] = j | (ragged && j == nkb - 1 ? VDIT_CUDA_ATTN_PARTIAL : 0);
      const size_t bit = (size_t) row * nkb + j;
      atomicOr (bitmap + (bit >> 5), 1u << (bit & 31));
    }
  if (threadIdx.x == 0) {
    row_ptr[(size_t) h * (nqb + 1) + i] = start;
    tile_order[row] = i;
    if (i == nqb - 1)
      row_ptr[(size_t) h * (nqb + 1) + nqb] = start + k;
  }
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" size_t
vdit_cuda_adaptive_scratch_bytes (int heads, int nqb, int nkb)
{
  const size_t cells = (size_t) heads * nqb * nkb;
  return cells * (sizeof (double) + sizeof (int32_t)) + 8 /* alignment of the recall */ +
         (size_t) heads * (nkb + 1) * sizeof (double) + ((size_t) heads + 1) * sizeof (int);
}

extern "C" cudaError_t
vdit_cuda_adaptive_rank_launch (void *scratch, int *keep_dev, const float *scores, int heads,
                                int nqb, int nkb, int target, int min_keep, double bar,
                                cudaStream_t stream)
{
  if (nkb < 1 || nkb > VDIT_CUDA_ADAPTIVE_MAX_BLOCKS || heads < 1 || nqb < 1)
    return cudaErrorInvalidValue;
  const size_t cells = (size_t) heads * nqb * nkb;
  double *prefix = static_cast<double *> (scratch);
  int32_t *order = reinterpret_cast<int32_t *> (prefix + cells);
  double *recall = reinterpret_cast<double *> (order + cells + (cells & 1)); // 8-aligned
  int *base = reinterpret_cast<int *> (recall + (size_t) heads * (nkb + 1));
  int pow2 = 1;
  while (pow2 < nkb - 1)
    pow2 *= 2;
  row_sort<<<heads * nqb, SELECT_THREADS, pow2 * sizeof (uint64_t), stream>>> (order, prefix, scores, nkb, pow2);
  const int n = heads * nkb;
  recall_sum<<<(n + 255) / 256, 256, 0, stream>>> (recall, prefix, heads, nqb, nkb);
  balance<<<1, 32, 0, stream>>> (keep_dev, base, recall, heads, nqb, nkb, target, min_keep, bar);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_adaptive_build_launch (int32_t *row_ptr, int32_t *cols, int32_t *tile_order,
                                 uint32_t *bitmap, const void *scratch, const int *keep_dev,
                                 int heads, int nqb, int nkb, int n_k, cudaStream_t stream)
{
  const size_t cells = (size_t) heads * nqb * nkb;
  const int32_t *order = reinterpret_cast<const int32_t *> (static_cast<const double *> (scratch) + cells);
  const double *recall = reinterpret_cast<const double *> (order + cells + (cells & 1));
  const int *base = reinterpret_cast<const int *> (recall + (size_t) heads * (nkb + 1));
  const size_t smem = ((nkb + 15) & ~15) + SELECT_THREADS * sizeof (int);
  build_rows<<<heads * nqb, SELECT_THREADS, smem, stream>>> (
      row_ptr, cols, tile_order, bitmap, order, keep_dev, base, nqb, nkb,
      n_k % VDIT_CUDA_ATTN_TILE_K != 0);
  return cudaGetLastError ();
}
