// f32 <-> bf16 conversion for upload and download (round to nearest even).
#include "common.cuh"
#include "ops.h"

namespace vdit {
namespace {

__global__ void
f32_to_bf16_kernel (bf16 *dst, const float *src, size_t n)
{
  GRID_LOOP (i, n)
    dst[i] = __float2bfloat16_rn (src[i]);
}

__global__ void
bf16_to_f32_kernel (float *dst, const bf16 *src, size_t n)
{
  GRID_LOOP (i, n)
    dst[i] = __bfloat162float (src[i]);
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_f32_to_bf16 (void *dst, const float *src, size_t n, cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  f32_to_bf16_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (static_cast<bf16 *> (dst), src, n);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_bf16_to_f32 (float *dst, const void *src, size_t n, cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  bf16_to_f32_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (dst, static_cast<const bf16 *> (src),
                                                           n);
  return cudaGetLastError ();
}
