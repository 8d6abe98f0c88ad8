// Latent tokens to 8-bit RGB: one thread per output byte, so writes are contiguous.
// The arithmetic is vdit_rgb_byte's (engine/decoder.h) with explicit f32 rounding, so
// the bytes equal the CPU's for the same input values.
#include "common.cuh"
#include "io_ops.h"

namespace vdit {
namespace {

__device__ __forceinline__ float
load (const float *p)
{
  return *p;
}

__device__ __forceinline__ float
load (const bf16 *p)
{
  return __bfloat162float (*p);
}

__device__ __forceinline__ uint8_t
rgb_byte (float v)
{
  if (isnan (v))
    v = 0.0f;
  // round((v + 1) * 127.5): add then multiply, each rounded (no contraction into an fma)
  const float p = roundf (__fmul_rn (__fadd_rn (v, 1.0f), 127.5f));
  return (uint8_t) (p < 0.0f ? 0.0f : p > 255.0f ? 255.0f : p);
}

template <typename T>
__global__ void
decode_rgb_kernel (uint8_t *rgb, const T *src, int frame0, size_t total, int height,
                   int width, int pt, int ph, int pw)
{
  const int gh = height / ph, gw = width / pw;
  const size_t per = (size_t) pt * ph * pw * 3;
  GRID_LOOP (i, total) {
    const int ch = (int) (i % 3);
    const size_t pix = i / 3; // (frame, y, x) within the output
    const int x = (int) (pix % width);
    const size_t fy = pix / width;
    const int y = (int) (fy % height);
    const int t = frame0 + (int) (fy / height);
    const size_t token = ((size_t) (t / pt) * gh + y / ph) * gw + x / pw;
    const size_t within = (size_t) (((t % pt) * ph + y % ph) * pw + x % pw) * 3 + ch;
    rgb[i] = rgb_byte (load (src + token * per + within));
  }
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_decode_rgb (uint8_t *rgb, const void *src, int src_bf16, int frame0, int frames,
                      int height, int width, int pt, int ph, int pw, cudaStream_t s)
{
  if (frames <= 0 || height <= 0 || width <= 0)
    return cudaSuccess;
  if (pt <= 0 || ph <= 0 || pw <= 0 || height % ph != 0 || width % pw != 0 || frame0 < 0)
    return cudaErrorInvalidValue;
  const size_t total = (size_t) frames * height * width * 3;
  if (src_bf16)
    decode_rgb_kernel<bf16><<<ew_blocks (total), EW_THREADS, 0, s>>> (
        rgb, static_cast<const bf16 *> (src), frame0, total, height, width, pt, ph, pw);
  else
    decode_rgb_kernel<float><<<ew_blocks (total), EW_THREADS, 0, s>>> (
        rgb, static_cast<const float *> (src), frame0, total, height, width, pt, ph, pw);
  return cudaGetLastError ();
}
