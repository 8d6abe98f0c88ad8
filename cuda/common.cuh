// Small device helpers for the memory-bound kernels.
#pragma once

#include <cuda_bf16.h>
#include <stddef.h>

namespace vdit {

typedef __nv_bfloat16 bf16;

constexpr int EW_THREADS = 256;

// A grid-stride loop: item i of n for every thread of a launch of ew_blocks (n) blocks.
#define GRID_LOOP(i, n)                                                                     \
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < (n);                 \
       i += (size_t) gridDim.x * blockDim.x)

// Grid for a grid-stride loop over n items: enough blocks to fill the GPU, no more.
inline unsigned
ew_blocks (size_t n)
{
  size_t b = (n + EW_THREADS - 1) / EW_THREADS;
  const size_t cap = 65535;
  return (unsigned) (b == 0 ? 1 : (b < cap ? b : cap));
}

__device__ __forceinline__ float
ldf (const bf16 *p)
{
  return __bfloat162float (*p);
}

__device__ __forceinline__ float
gelu_tanh (float x)
{
  const float k = 0.7978845608028654f; // sqrt(2/pi)
  return 0.5f * x * (1.0f + tanhf (k * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float
silu (float x)
{
  return x / (1.0f + __expf (-x));
}

// act: VditActivation (0 none, 1 gelu_tanh, 2 silu)
__device__ __forceinline__ float
activation (float x, int act)
{
  return act == 1 ? gelu_tanh (x) : act == 2 ? silu (x) : x;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets it.
__device__ __forceinline__ float
block_sum (float v, float *scratch /* 32 floats */)
{
  for (int off = 16; off > 0; off /= 2)
    v += __shfl_xor_sync (0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads (); // scratch may still be read from a previous call
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads ();
  v = lane < nw ? scratch[lane] : 0.0f;
  for (int off = 16; off > 0; off /= 2)
    v += __shfl_xor_sync (0xffffffffu, v, off);
  return v;
}


// Eight bf16 values moved as one 16-byte access (the memory-bound kernels' fast path).
__device__ __forceinline__ void
load8 (float (&v)[8], const bf16 *p) // p 16-byte aligned
{
  const uint4 r = *reinterpret_cast<const uint4 *> (p);
  const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *> (&r);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 f = __bfloat1622float2 (h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void
store8 (bf16 *p, const float (&v)[8]) // p 16-byte aligned
{
  uint4 r;
  __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *> (&r);
#pragma unroll
  for (int i = 0; i < 4; i++)
    h[i] = __floats2bfloat162_rn (v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4 *> (p) = r;
}

// True when every pointer given is 16-byte aligned (NULL counts as aligned).
inline bool
aligned16 (const void *a, const void *b = nullptr, const void *c = nullptr,
           const void *d = nullptr)
{
  return ((reinterpret_cast<size_t> (a) | reinterpret_cast<size_t> (b) |
           reinterpret_cast<size_t> (c) | reinterpret_cast<size_t> (d)) & 15) == 0;
}

} // namespace vdit
