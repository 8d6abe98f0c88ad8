// Rotate-half RoPE in place: one thread per (token, head, rotated pair).
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
  rope_kernel<<<ew_blocks ((size_t) n * heads * (head_dim / 2)), EW_THREADS, 0, s>>> (
      static_cast<bf16 *> (x), ld, cos_t, sin_t, n, heads, head_dim, n_chunks);
  return cudaGetLastError ();
}
