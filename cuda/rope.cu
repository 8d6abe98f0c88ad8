// Rotate-half RoPE in place: one thread per (token, head, rotated pair), or per eight
// neighbouring pairs (16-byte accesses) when the half-chunks, strides and pointers allow.
#include "common.cuh"
#include "ops.h"

namespace vdit {
namespace {

__global__ void
rope_kernel (bf16 *x, int ld, const float *cos_t, const float *sin_t, int n, int heads,
             int head_dim, int n_chunks)
{
  const int pairs = head_dim / 2, chunk = head_dim / n_chunks, half = chunk / 2;
  const size_t total = (size_t) n * heads * pairs;
  GRID_LOOP (idx, total) {
    const int j = (int) (idx % pairs); // pair: chunk j / half, position j % half
    const size_t ih = idx / pairs;
    const int h = (int) (ih % heads);
    const size_t i = ih / heads;
    bf16 *a = x + i * ld + (size_t) h * head_dim + (j / half) * chunk + j % half;
    bf16 *b = a + half;
    const float c = cos_t[i * pairs + j], s = sin_t[i * pairs + j];
    const float av = ldf (a), bv = ldf (b);
    *a = __float2bfloat16 (av * c - bv * s);
    *b = __float2bfloat16 (bv * c + av * s);
  }
}

// Eight pairs a thread: half % 8 == 0, ld % 8 == 0, pairs % 4 == 0, x 16-byte aligned.
__global__ void
rope8_kernel (bf16 *x, int ld, const float *cos_t, const float *sin_t, int n, int heads,
              int head_dim, int n_chunks)
{
  const int pairs = head_dim / 2, chunk = head_dim / n_chunks, half = chunk / 2;
  const int groups = pairs / 8;
  const size_t total = (size_t) n * heads * groups;
  GRID_LOOP (idx, total) {
    const int j = (int) (idx % groups) * 8; // first pair of the eight
    const size_t ih = idx / groups;
    const int h = (int) (ih % heads);
    const size_t i = ih / heads;
    bf16 *a = x + i * ld + (size_t) h * head_dim + (j / half) * chunk + j % half;
    bf16 *b = a + half;
    const float4 *c4 = reinterpret_cast<const float4 *> (cos_t + i * pairs + j);
    const float4 *s4 = reinterpret_cast<const float4 *> (sin_t + i * pairs + j);
    const float4 c0 = c4[0], c1 = c4[1], s0 = s4[0], s1 = s4[1];
    const float c[8] = { c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w };
    const float sn[8] = { s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w };
    float av[8], bv[8], ao[8], bo[8];
    load8 (av, a);
    load8 (bv, b);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      ao[k] = av[k] * c[k] - bv[k] * sn[k];
      bo[k] = bv[k] * c[k] + av[k] * sn[k];
    }
    store8 (a, ao);
    store8 (b, bo);
  }
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_rope (void *x, int ld, const float *cos_t, const float *sin_t, int n, int heads,
                int head_dim, int n_chunks, cudaStream_t s)
{
  if (n <= 0 || heads <= 0 || head_dim <= 0)
    return cudaSuccess;
  if (n_chunks <= 0 || head_dim % n_chunks != 0 || (head_dim / n_chunks) % 2 != 0)
    return cudaErrorInvalidValue;
  const int pairs = head_dim / 2, half = head_dim / n_chunks / 2;
  if (half % 8 == 0 && ld % 8 == 0 && head_dim % 8 == 0 && pairs % 4 == 0 &&
      aligned16 (x, cos_t, sin_t)) {
    rope8_kernel<<<ew_blocks ((size_t) n * heads * (pairs / 8)), EW_THREADS, 0, s>>> (
        static_cast<bf16 *> (x), ld, cos_t, sin_t, n, heads, head_dim, n_chunks);
    return cudaGetLastError ();
  }
  rope_kernel<<<ew_blocks ((size_t) n * heads * (head_dim / 2)), EW_THREADS, 0, s>>> (
      static_cast<bf16 *> (x), ld, cos_t, sin_t, n, heads, head_dim, n_chunks);
  return cudaGetLastError ();
}
