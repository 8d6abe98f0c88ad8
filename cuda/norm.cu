// RMSNorm and LayerNorm with adaLN modulation: one block per row, statistics in f32
// (LayerNorm two-pass: mean, then the centred sum of squares, as the CPU reference).
#include "common.cuh"
#include "ops.h"

namespace vdit {
namespace {

constexpr int NORM_THREADS = 256;

__global__ void __launch_bounds__ (NORM_THREADS)
rmsnorm_kernel (bf16 *out, const bf16 *x, const bf16 *w, int d, float eps)
{
  __shared__ float scratch[32];
  const bf16 *xi = x + (size_t) blockIdx.x * d;
  bf16 *oi = out + (size_t) blockIdx.x * d;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = ldf (xi + j);
    ss += v * v;
  }
  const float r = rsqrtf (block_sum (ss, scratch) / d + eps);
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    oi[j] = __float2bfloat16 (ldf (xi + j) * r * ldf (w + j));
}

__global__ void __launch_bounds__ (NORM_THREADS)
layernorm_modulate_kernel (bf16 *out, const bf16 *x, const bf16 *shift, const bf16 *scale,
                           int d, float eps)
{
  __shared__ float scratch[32];
  const bf16 *xi = x + (size_t) blockIdx.x * d;
  bf16 *oi = out + (size_t) blockIdx.x * d;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    sum += ldf (xi + j);
  const float mean = block_sum (sum, scratch) / d;
  float var = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float c = ldf (xi + j) - mean;
    var += c * c;
  }
  const float r = rsqrtf (block_sum (var, scratch) / d + eps);
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    oi[j] = __float2bfloat16 ((ldf (xi + j) - mean) * r * (1.0f + ldf (scale + j)) + ldf (shift + j));
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_rmsnorm (void *out, const void *x, const void *w, int m, int d, float eps,
                   cudaStream_t s)
{
  if (m <= 0 || d <= 0)
    return cudaSuccess;
  rmsnorm_kernel<<<m, NORM_THREADS, 0, s>>> (static_cast<bf16 *> (out),
                                             static_cast<const bf16 *> (x),
                                             static_cast<const bf16 *> (w), d, eps);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_layernorm_modulate (void *out, const void *x, const void *shift, const void *scale,
                              int m, int d, float eps, cudaStream_t s)
{
  if (m <= 0 || d <= 0)
    return cudaSuccess;
  layernorm_modulate_kernel<<<m, NORM_THREADS, 0, s>>> (
      static_cast<bf16 *> (out), static_cast<const bf16 *> (x),
      static_cast<const bf16 *> (shift), static_cast<const bf16 *> (scale), d, eps);
  return cudaGetLastError ();
}
