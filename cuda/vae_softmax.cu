// Row softmax of the VAE's per-frame attention scores (rows of up to a few thousand
// pixels), one block a row: max, then the sum of exp(x − max), then the scaling.
#include "common.cuh"
#include "vae_kernels.h"

namespace vdit {
namespace {

constexpr int SM_THREADS = 256;

__device__ __forceinline__ float
block_max (float v, float *scratch /* 32 floats */)
{
  for (int off = 16; off > 0; off /= 2)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads ();
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads ();
  v = lane < nw ? scratch[lane] : -INFINITY;
  for (int off = 16; off > 0; off /= 2)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, off));
  return v;
}

__global__ void __launch_bounds__ (SM_THREADS)
softmax_kernel (float *s, int cols)
{
  __shared__ float scratch[32];
  float *row = s + (size_t) blockIdx.x * cols;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < cols; j += blockDim.x)
    m = fmaxf (m, row[j]);
  m = block_max (m, scratch);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    const float e = expf (row[j] - m);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum (sum, scratch);
  for (int j = threadIdx.x; j < cols; j += blockDim.x)
    row[j] *= inv;
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_vae_softmax_rows (float *s, int rows, int cols, cudaStream_t st)
{
  if (rows <= 0 || cols <= 0)
    return cudaSuccess;
  softmax_kernel<<<rows, SM_THREADS, 0, st>>> (s, cols);
  return cudaGetLastError ();
}
