// RMSNorm and LayerNorm with adaLN modulation: one block per row, statistics in f32
// (LayerNorm two-pass: mean, then the centred sum of squares, as the CPU reference).
// LayerNorm rows of up to 8,192 values whose sizes and pointers allow it are read once
// into registers, eight values (16 bytes) a thread; other rows take the plain kernel.
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

// One 8-value vector of the row per thread (blockDim.x = d/8 rounded up to a warp).
__global__ void __launch_bounds__ (1024)
layernorm_modulate8_kernel (bf16 *out, const bf16 *x, const bf16 *shift, const bf16 *scale,
                            int d, float eps)
{
  __shared__ float scratch[32];
  const int j = threadIdx.x * 8;
  const bool mine = j < d;
  const bf16 *xi = x + (size_t) blockIdx.x * d;
  float v[8] = {};
  if (mine)
    load8 (v, xi + j);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; i++)
    sum += v[i];
  const float mean = block_sum (sum, scratch) / d;
  float var = 0.0f;
  if (mine) {
#pragma unroll
    for (int i = 0; i < 8; i++)
      var += (v[i] - mean) * (v[i] - mean);
  }
  const float r = rsqrtf (block_sum (var, scratch) / d + eps);
  if (!mine)
    return;
  float sh[8], sc[8];
  load8 (sh, shift + j);
  load8 (sc, scale + j);
#pragma unroll
  for (int i = 0; i < 8; i++)
    v[i] = (v[i] - mean) * r * (1.0f + sc[i]) + sh[i];
  store8 (out + (size_t) blockIdx.x * d + j, v);
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
  if (d % 8 == 0 && d / 8 <= 1024 && aligned16 (out, x, shift, scale)) {
    const int threads = (d / 8 + 31) / 32 * 32;
    layernorm_modulate8_kernel<<<m, threads, 0, s>>> (
        static_cast<bf16 *> (out), static_cast<const bf16 *> (x),
        static_cast<const bf16 *> (shift), static_cast<const bf16 *> (scale), d, eps);
    return cudaGetLastError ();
  }
  layernorm_modulate_kernel<<<m, NORM_THREADS, 0, s>>> (
      static_cast<bf16 *> (out), static_cast<const bf16 *> (x),
      static_cast<const bf16 *> (shift), static_cast<const bf16 *> (scale), d, eps);
  return cudaGetLastError ();
}
