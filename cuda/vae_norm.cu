// GroupNorm(32) + SiLU for the VAE: a group spans c/32 whole channels of a clip, up to
// hundreds of millions of values, so its statistics take a grid of blocks. As on the
// host: the mean in double, then the centred sum of squares in double, mean and
// 1/sqrt(var + eps) rounded to f32 once, then (x − mean)·inv·gamma + beta per value.
#include "common.cuh"
#include "vae_kernels.h"

namespace vdit {
namespace {

constexpr int GROUPS = 32;
constexpr int NORM_THREADS = 256;
constexpr int MAX_CHUNKS = 256; // blocks per group in a statistics pass

__device__ __forceinline__ double
block_sum_d (double v, double *scratch /* 32 doubles */)
{
  for (int off = 16; off > 0; off /= 2)
    v += __shfl_xor_sync (0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads ();
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads ();
  v = lane < nw ? scratch[lane] : 0.0;
  for (int off = 16; off > 0; off /= 2)
    v += __shfl_xor_sync (0xffffffffu, v, off);
  return v;
}

// partial[g·chunks + b] = Σ over block b's share of group g of x (mean NULL) or of
// (x − mean[g])².
__global__ void __launch_bounds__ (NORM_THREADS)
partial_kernel (double *partial, const float *x, const double *mean, size_t group_n)
{
  __shared__ double scratch[32];
  const int g = blockIdx.y, chunks = gridDim.x;
  const float *xs = x + g * group_n;
  const double m = mean ? mean[g] : 0.0;
  double acc = 0.0;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < group_n;
       i += (size_t) chunks * blockDim.x) {
    const double d = (double) xs[i] - m;
    acc += mean ? d * d : d;
  }
  acc = block_sum_d (acc, scratch);
  if (threadIdx.x == 0)
    partial[g * chunks + blockIdx.x] = acc;
}

// One thread per group: out[g] = Σ partial / n (the mean), or 1/sqrt(that + eps).
__global__ void
finish_kernel (double *out, const double *partial, int chunks, size_t group_n, int inv_std)
{
  const int g = threadIdx.x;
  if (g >= GROUPS)
    return;
  double s = 0.0;
  for (int b = 0; b < chunks; b++)
    s += partial[g * chunks + b];
  s /= (double) group_n;
  out[g] = inv_std ? 1.0 / sqrt (s + 1e-6) : s;
}

// grid.y = channel; x-blocks stride over its per_channel values.
__global__ void
apply_kernel (float *out, const float *x, const double *mean, const double *inv,
              const float *gamma, const float *beta, int cg, size_t per_channel, int silu_on)
{
  const int c = blockIdx.y, g = c / cg;
  const float fm = (float) mean[g], fi = (float) inv[g], ga = gamma[c], be = beta[c];
  const float *xs = x + c * per_channel;
  float *os = out + c * per_channel;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < per_channel;
       i += (size_t) gridDim.x * blockDim.x) {
    const float v = (xs[i] - fm) * fi * ga + be;
    os[i] = silu_on ? v / (1.0f + expf (-v)) : v;
  }
}

int
chunks_for (size_t group_n)
{
  const size_t want = (group_n + NORM_THREADS * 16 - 1) / (NORM_THREADS * 16);
  return (int) (want < 1 ? 1 : want > MAX_CHUNKS ? MAX_CHUNKS : want);
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" size_t
vdit_cuda_vae_group_norm_scratch (int c, size_t per_channel)
{
  (void) c;
  (void) per_channel;
  return (size_t) GROUPS * MAX_CHUNKS + 2 * GROUPS;
}

extern "C" cudaError_t
vdit_cuda_vae_group_norm (float *out, const float *x, const float *gamma, const float *beta, int c,
                          size_t per_channel, int silu, double *scratch, cudaStream_t s)
{
  if (c < GROUPS || c % GROUPS != 0 || c > 65535)
    return cudaErrorInvalidValue;
  if (per_channel == 0)
    return cudaSuccess;
  const int cg = c / GROUPS;
  const size_t group_n = (size_t) cg * per_channel;
  const int chunks = chunks_for (group_n);
  double *partial = scratch, *mean = scratch + (size_t) GROUPS * MAX_CHUNKS, *inv = mean + GROUPS;
  const dim3 grid (chunks, GROUPS);
  partial_kernel<<<grid, NORM_THREADS, 0, s>>> (partial, x, nullptr, group_n);
  finish_kernel<<<1, 32, 0, s>>> (mean, partial, chunks, group_n, 0);
  partial_kernel<<<grid, NORM_THREADS, 0, s>>> (partial, x, mean, group_n);
  finish_kernel<<<1, 32, 0, s>>> (inv, partial, chunks, group_n, 1);
  const size_t want = (per_channel + EW_THREADS - 1) / EW_THREADS;
  const unsigned per_c = (unsigned) (want < 512 ? want : 512);
  apply_kernel<<<dim3 (per_c, (unsigned) c), EW_THREADS, 0, s>>> (out, x, mean, inv, gamma, beta,
                                                                  cg, per_channel, silu);
  return cudaGetLastError ();
}
