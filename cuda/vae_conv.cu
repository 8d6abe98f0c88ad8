// The causal conv3d's two memory-bound halves: im2col over a band of output rows (the
// GEMM is cuBLAS, vae_cuda.c) and the bias written or added before that GEMM
// accumulates into the output.
#include "common.cuh"
#include "vae_kernels.h"

namespace vdit {
namespace {

// One thread per column entry; consecutive threads walk x, so reads and writes coalesce.
// Col is f32, or bf16 for the tensor-core GEMM (half the bytes written and read).
template <typename Col>
__global__ void
im2col_kernel (Col *col, const float *in, int kt, int kh, int kw, int T, int H, int W,
               int row0, int rows, size_t total)
{
  const size_t n = (size_t) rows * W, plane = (size_t) H * W, frame_stride = T * plane;
  GRID_LOOP (i, total) {
    const size_t k = i / n, j = i % n;
    const int dx = (int) (k % kw), dy = (int) (k / kw % kh), dt = (int) (k / kw / kh % kt);
    const int ci = (int) (k / kw / kh / kt);
    const int r = row0 + (int) (j / W), x = (int) (j % W);
    const int t = r / H, y = r % H;
    const int ti = max (0, t + dt - (kt - 1)); // causal: frame 0 repeated
    const int yi = y + dy - kh / 2, xi = x + dx - kw / 2;
    const float v = (yi >= 0 && yi < H && xi >= 0 && xi < W)
                      ? in[ci * frame_stride + ti * plane + (size_t) yi * W + xi]
                      : 0.0f;
    col[i] = Col (v);
  }
}

__global__ void
bias_kernel (float *out, size_t ld, const float *b, size_t n, int accumulate)
{
  float *row = out + blockIdx.y * ld;
  const float v = b[blockIdx.y];
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    row[i] = accumulate ? row[i] + v : v;
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_vae_im2col (void *col, int col_bf16, const float *in, int cin, int kt, int kh, int kw,
                      int T, int H, int W, int row0, int rows, cudaStream_t s)
{
  const size_t total = (size_t) cin * kt * kh * kw * rows * W;
  if (col_bf16)
    im2col_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (static_cast<bf16 *> (col), in, kt,
                                                            kh, kw, T, H, W, row0, rows, total);
  else
    im2col_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (static_cast<float *> (col), in, kt,
                                                            kh, kw, T, H, W, row0, rows, total);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_vae_bias (float *out, size_t ld, const float *b, int cout, size_t n, int accumulate,
                    cudaStream_t s)
{
  if (cout <= 0 || n == 0)
    return cudaSuccess;
  const size_t want = (n + EW_THREADS - 1) / EW_THREADS;
  const unsigned per_row = (unsigned) (want < 1024 ? want : 1024);
  for (int c0 = 0; c0 < cout; c0 += 65535) { // grid.y's limit
    const int nc = cout - c0 < 65535 ? cout - c0 : 65535;
    bias_kernel<<<dim3 (per_row, (unsigned) nc), EW_THREADS, 0, s>>> (out + c0 * ld, ld, b + c0,
                                                                      n, accumulate);
  }
  return cudaGetLastError ();
}
