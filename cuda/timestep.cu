// Sinusoidal timestep embedding, one launch per row (a batch is a row or two). The
// arguments are made in double, as on the CPU, and rounded to f32 before bf16 so the
// bits are those of the host-computed embedding uploaded through convert.cu. The
// timesteps come as kernel arguments, or from device memory (a replayed graph reads the
// step's timestep there, its arguments being those recorded).
#include <math.h>

#include "common.cuh"
#include "io_ops.h"

namespace vdit {
namespace {

__device__ __forceinline__ void
embed (bf16 *out, double timestep, double neg_ln_period, int half, size_t i)
{
  // the CPU's expression, τ · exp(−ln(10000) · i / half) left to right, each product
  // rounded on its own (no fma contraction)
  const double a = __dmul_rn (timestep, exp (__dmul_rn (neg_ln_period, (double) i) / half));
  out[i] = __float2bfloat16_rn ((float) cos (a));
  out[half + i] = __float2bfloat16_rn ((float) sin (a));
}

// Row r of n from timesteps[r] in device memory: blockIdx.y is the row.
__global__ void
timestep_embedding_buf_kernel (bf16 *out, const float *timesteps, int freq_dim,
                               double neg_ln_period, int half)
{
  const int r = blockIdx.y;
  const double t = (double) timesteps[r];
  GRID_LOOP (i, (size_t) half)
    embed (out + (size_t) r * freq_dim, t, neg_ln_period, half, i);
}

__global__ void
timestep_embedding_kernel (bf16 *out, double timestep, double neg_ln_period, int half)
{
  GRID_LOOP (i, (size_t) half)
    embed (out, timestep, neg_ln_period, half, i);
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_timestep_embedding (void *out, const float *timesteps, int n, int freq_dim,
                              cudaStream_t s)
{
  const int half = freq_dim / 2;
  if (n <= 0 || half <= 0)
    return cudaSuccess;
  // folded on the host like the CPU's constant, not left to the device's log()
  const double neg_ln_period = -log (10000.0);
  for (int r = 0; r < n; r++) {
    timestep_embedding_kernel<<<ew_blocks ((size_t) half), EW_THREADS, 0, s>>> (
        static_cast<bf16 *> (out) + (size_t) r * freq_dim, (double) timesteps[r],
        neg_ln_period, half);
    const cudaError_t err = cudaGetLastError ();
    if (err != cudaSuccess)
      return err;
  }
  return cudaSuccess;
}

extern "C" cudaError_t
vdit_cuda_timestep_embedding_buf (void *out, const float *timesteps, int n, int freq_dim,
                                  cudaStream_t s)
{
  const int half = freq_dim / 2;
  if (n <= 0 || half <= 0)
    return cudaSuccess;
  const double neg_ln_period = -log (10000.0);
  const dim3 grid (ew_blocks ((size_t) half), (unsigned) n);
  timestep_embedding_buf_kernel<<<grid, EW_THREADS, 0, s>>> (static_cast<bf16 *> (out),
                                                             timesteps, freq_dim,
                                                             neg_ln_period, half);
  return cudaGetLastError ();
}
