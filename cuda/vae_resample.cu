// The decoder's two upsamplers, one thread per output value. The trilinear one repeats
// the host's arithmetic in the host's order (time first, then the bilinear ×2 of the
// mixed plane), so both sides round alike.
#include "common.cuh"
#include "vae_kernels.h"

namespace vdit {
namespace {

__global__ void
nearest2x_kernel (float *out, const float *in, int H, int W, size_t total)
{
  const int W2 = 2 * W, H2 = 2 * H;
  GRID_LOOP (i, total) {
    const int x = (int) (i % W2), y = (int) (i / W2 % H2);
    const size_t ct = i / ((size_t) W2 * H2);
    out[i] = in[ct * H * W + (size_t) (y / 2) * W + x / 2];
  }
}

// align_corners false, doubling: source (d + 0.5)/2 − 0.5 clamped at 0, neighbours i0
// and min(i0 + 1, n − 1) (vae_ops.c's linear_taps).
__device__ __forceinline__ void
taps (int d, int n, int &i0, int &i1, float &frac)
{
  float src = (d + 0.5f) * 0.5f - 0.5f;
  if (src < 0.0f)
    src = 0.0f;
  i0 = (int) src;
  i1 = i0 + (i0 < n - 1 ? 1 : 0);
  frac = src - (float) i0;
}

// Frame 0 ×(1, 2, 2); frames 1..T−1 ×(2, 2, 2) among themselves.
__global__ void
s2t2_kernel (float *out, const float *in, int T, int H, int W, size_t total)
{
  const int W2 = 2 * W, H2 = 2 * H, T2 = 1 + 2 * (T - 1), R = T - 1;
  const size_t plane = (size_t) H * W;
  GRID_LOOP (i, total) {
    const int x = (int) (i % W2), y = (int) (i / W2 % H2), t2 = (int) (i / W2 / H2 % T2);
    const size_t c = i / ((size_t) W2 * H2 * T2);
    const float *src = in + c * T * plane;
    int y0, y1, x0, x1;
    float ly, lx;
    taps (y, H, y0, y1, ly);
    taps (x, W, x0, x1, lx);
    const size_t p00 = (size_t) y0 * W + x0, p01 = (size_t) y0 * W + x1;
    const size_t p10 = (size_t) y1 * W + x0, p11 = (size_t) y1 * W + x1;
    float m00, m01, m10, m11;
    if (t2 == 0) {
      m00 = src[p00], m01 = src[p01], m10 = src[p10], m11 = src[p11];
    } else {
      int ta, tb;
      float lt;
      taps (t2 - 1, R, ta, tb, lt);
      const float *a = src + (size_t) (1 + ta) * plane, *b = src + (size_t) (1 + tb) * plane;
      m00 = (1.0f - lt) * a[p00] + lt * b[p00];
      m01 = (1.0f - lt) * a[p01] + lt * b[p01];
      m10 = (1.0f - lt) * a[p10] + lt * b[p10];
      m11 = (1.0f - lt) * a[p11] + lt * b[p11];
    }
    const float top = (1.0f - lx) * m00 + lx * m01;
    const float bot = (1.0f - lx) * m10 + lx * m11;
    out[i] = (1.0f - ly) * top + ly * bot;
  }
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_vae_upsample_nearest2x (float *out, const float *in, int C, int T, int H, int W,
                                  cudaStream_t s)
{
  const size_t total = (size_t) C * T * 4 * H * W;
  if (total == 0)
    return cudaSuccess;
  nearest2x_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (out, in, H, W, total);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_vae_upsample_s2t2 (float *out, const float *in, int C, int T, int H, int W,
                             cudaStream_t s)
{
  const size_t total = (size_t) C * (1 + 2 * (T - 1)) * 4 * H * W;
  if (T < 1 || total == 0)
    return cudaSuccess;
  s2t2_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (out, in, T, H, W, total);
  return cudaGetLastError ();
}
