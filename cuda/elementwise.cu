// Elementwise ops on bf16 buffers, computed in f32. Grid-stride loops; in-place use
// (out == a, out == in) is allowed. add_gated, the one that runs on whole activations
// twice a block (three times with a one-token caption: h NULL, the row alone), moves 16
// bytes per access when sizes and pointers allow.
#include "common.cuh"
#include "ops.h"

namespace vdit {
namespace {

__global__ void
add_gated_kernel (bf16 *x, const bf16 *h, const bf16 *gate, size_t n, int d)
{
  GRID_LOOP (i, n)
  {
    const float g = gate ? ldf (gate + i % d) : 1.0f;
    x[i] = __float2bfloat16 (ldf (x + i) + g * (h ? ldf (h + i) : 1.0f));
  }
}

// Eight values a thread: d % 8 == 0 and every pointer 16-byte aligned.
__global__ void
add_gated8_kernel (bf16 *x, const bf16 *h, const bf16 *gate, size_t n8, int d8)
{
  GRID_LOOP (i, n8)
  {
    float xv[8], hv[8], g[8];
    load8 (xv, x + 8 * i);
    if (h)
      load8 (hv, h + 8 * i);
    else
#pragma unroll
      for (int j = 0; j < 8; j++)
        hv[j] = 1.0f;
    if (gate)
      load8 (g, gate + 8 * (i % d8));
#pragma unroll
    for (int j = 0; j < 8; j++)
      xv[j] += (gate ? g[j] : 1.0f) * hv[j];
    store8 (x + 8 * i, xv);
  }
}

__global__ void
mul_kernel (bf16 *out, const bf16 *a, const bf16 *b, size_t n)
{
  GRID_LOOP (i, n) out[i] = __float2bfloat16 (ldf (a + i) * ldf (b + i));
}

__global__ void
add_kernel (bf16 *out, const bf16 *a, const bf16 *b, size_t n)
{
  GRID_LOOP (i, n) out[i] = __float2bfloat16 (ldf (a + i) + ldf (b + i));
}

__global__ void
activate_kernel (bf16 *out, const bf16 *in, size_t n, int act)
{
  GRID_LOOP (i, n) out[i] = __float2bfloat16 (activation (ldf (in + i), act));
}

__global__ void
bias_act_kernel (bf16 *out, int ldo, const bf16 *bias, int m, int n, int act)
{
  const size_t total = (size_t) m * n;
  GRID_LOOP (i, total)
  {
    const size_t r = i / n;
    const int c = (int) (i % n);
    bf16 *p = out + r * ldo + c;
    *p = __float2bfloat16 (activation (ldf (p) + (bias ? ldf (bias + c) : 0.0f), act));
  }
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_add_gated (void *x, const void *h, const void *gate, int m, int d, cudaStream_t s)
{
  const size_t n = (size_t) m * d;
  if (m <= 0 || d <= 0)
    return cudaSuccess;
  if (d % 8 == 0 && aligned16 (x, h, gate)) {
    add_gated8_kernel<<<ew_blocks (n / 8), EW_THREADS, 0, s>>> (
        static_cast<bf16 *> (x), static_cast<const bf16 *> (h),
        static_cast<const bf16 *> (gate), n / 8, d / 8);
    return cudaGetLastError ();
  }
  add_gated_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (
      static_cast<bf16 *> (x), static_cast<const bf16 *> (h), static_cast<const bf16 *> (gate),
      n, d);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_mul (void *out, const void *a, const void *b, size_t n, cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  mul_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (static_cast<bf16 *> (out),
                                                   static_cast<const bf16 *> (a),
                                                   static_cast<const bf16 *> (b), n);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_add (void *out, const void *a, const void *b, size_t n, cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  add_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (static_cast<bf16 *> (out),
                                                   static_cast<const bf16 *> (a),
                                                   static_cast<const bf16 *> (b), n);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_activate (void *out, const void *in, size_t n, int act, cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  activate_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (static_cast<bf16 *> (out),
                                                        static_cast<const bf16 *> (in), n, act);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_bias_act (void *out, int ldo, const void *bias, int m, int n, int act, cudaStream_t s)
{
  if (m <= 0 || n <= 0 || (bias == NULL && act == 0))
    return cudaSuccess;
  bias_act_kernel<<<ew_blocks ((size_t) m * n), EW_THREADS, 0, s>>> (
      static_cast<bf16 *> (out), ldo, static_cast<const bf16 *> (bias), m, n, act);
  return cudaGetLastError ();
}
