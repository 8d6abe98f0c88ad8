// Sinusoidal timestep embedding, one launch per row (a batch is a row or two). The
// arguments are made in double, as on the CPU, and rounded to f32 before bf16 so the
// bits are those of the host-computed embedding uploaded through convert.cu.
#include <math.h>

#include "common.cuh"
#include "io_ops.h"

namespace vdit {
namespace {

__global__ void
timestep_embedding_kernel (bf16 *out, double timestep, double neg_ln_period, int half)
{
  GRID_LOOP (i, (size_t) half) {
    // the CPU's expression, τ · exp(−ln(10000) · i / half) left to right, each product
    // rounded on its own (no fma contraction)
    const double a = __dmul_rn (timestep, exp (__dmul_rn (neg_ln_period, (double) i) / half));
    out[i] = __float2bfloat16_rn ((float) cos (a));
    out[half + i] = __float2bfloat16_rn ((float) sin (a));
  }
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
