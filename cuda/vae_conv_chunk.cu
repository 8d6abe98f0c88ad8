// The memory-bound halves of the VAE's cuDNN convolution (vae_conv_cudnn.c): a chunk of
// the input copied out with the causal frames and the row halo in place, in bf16 or f32,
// channels first (N C D H W) or last (N D H W C); the weights in the same layout; the
// chunk's result added into the f32 (C, T, H, W) output, which holds bias + residual.
// The channels-last copies are 32 × 32 tile transposes through shared memory, so reads
// and writes both coalesce.
#include "common.cuh"
#include "vae_kernels.h"

namespace vdit {
namespace {

constexpr int TILE = 32, TILE_ROWS = 8;

// dst (cols × rows, row stride ld) ← srcᵀ (src rows × cols, row stride ls; NULL: zeros),
// added to dst when Add. One 32 × 32 tile per block, blockDim (32, 8).
template <typename In, typename Out, bool Add>
__device__ __forceinline__ void
transpose_tile (Out *dst, size_t ld, const In *src, size_t ls, int rows, int cols)
{
  __shared__ float tile[TILE][TILE + 1];
  const int c0 = blockIdx.x * TILE, r0 = blockIdx.y * TILE;
  for (int i = threadIdx.y; i < TILE; i += TILE_ROWS) {
    const int r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols)
      tile[i][threadIdx.x] = src ? float (src[(size_t) r * ls + c]) : 0.0f;
  }
  __syncthreads ();
  for (int i = threadIdx.y; i < TILE; i += TILE_ROWS) {
    const int c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) {
      Out *d = dst + (size_t) c * ld + r;
      const float v = tile[threadIdx.x][i];
      *d = Out (Add ? float (*d) + v : v);
    }
  }
}

// Plane z = (j, yy) of the chunk: input frame max(0, t0 − pad_t + j), row y0 − pad_h + yy.
__device__ __forceinline__ const float *
chunk_source (const float *in, int T, int H, int W, int t0, int pad_t, int y0, int pad_h, int j,
              int yy)
{
  const int t = max (0, t0 - pad_t + j), y = y0 - pad_h + yy;
  return (y >= 0 && y < H) ? in + ((size_t) t * H + y) * W : nullptr;
}

// channels last: dst[j][yy][x][ci]; grid (W / 32, cin / 32, frames · rows)
template <typename Out>
__global__ void
pack_last_kernel (Out *dst, const float *in, int cin, int T, int H, int W, int t0, int pad_t,
                  int y0, int pad_h, int rows)
{
  const int j = blockIdx.z / rows, yy = blockIdx.z % rows;
  const float *src = chunk_source (in, T, H, W, t0, pad_t, y0, pad_h, j, yy);
  // src viewed as (cin × W) with row stride T·H·W; dst plane as (W × cin)
  transpose_tile<float, Out, false> (dst + (size_t) blockIdx.z * W * cin, cin, src,
                                     (size_t) T * H * W, cin, W);
}

// channels first: dst[ci][j][yy][x]
template <typename Out>
__global__ void
pack_first_kernel (Out *dst, const float *in, int cin, int T, int H, int W, int t0, int pad_t,
                   int y0, int pad_h, int frames, int rows, size_t total)
{
  GRID_LOOP (i, total) {
    const int x = (int) (i % W);
    const size_t plane = i / W; // (ci, j, yy)
    const int yy = (int) (plane % rows), j = (int) (plane / rows % frames);
    const int ci = (int) (plane / rows / frames);
    const float *src = chunk_source (in, T, H, W, t0, pad_t, y0, pad_h, j, yy);
    dst[i] = Out (src ? src[(size_t) ci * T * H * W + x] : 0.0f);
  }
}

// out[co][t0 + j][y0 + r][x] += y[j][r][x][co]; grid (cout / 32, W / 32, frames · rows)
template <typename In>
__global__ void
add_last_kernel (float *out, const In *y, int cout, int T, int H, int W, int t0, int y0,
                 int rows)
{
  const int j = blockIdx.z / rows, r = blockIdx.z % rows;
  transpose_tile<In, float, true> (out + ((size_t) (t0 + j) * H + y0 + r) * W,
                                   (size_t) T * H * W, y + (size_t) blockIdx.z * W * cout,
                                   cout, W, cout);
}

// out[co][t0 + j][y0 + r][x] += y[co][j][r][x]
template <typename In>
__global__ void
add_first_kernel (float *out, const In *y, int T, int H, int W, int t0, int y0, int frames,
                  int rows, size_t total)
{
  GRID_LOOP (i, total) {
    const int x = (int) (i % W);
    const size_t plane = i / W;
    const int r = (int) (plane % rows), j = (int) (plane / rows % frames);
    const size_t co = plane / rows / frames;
    out[((co * T + t0 + j) * H + y0 + r) * W + x] += float (y[i]);
  }
}

// w (cout, cin, k) → (cout, k, cin); grid (k / 32, cin / 32, cout)
template <typename Out>
__global__ void
weights_last_kernel (Out *dst, const float *w, int cin, int k)
{
  const size_t per = (size_t) cin * k;
  transpose_tile<float, Out, false> (dst + blockIdx.z * per, cin, w + blockIdx.z * per, k, cin,
                                     k);
}

inline dim3
tiles (int cols, int rows, int planes)
{
  return dim3 ((cols + TILE - 1) / TILE, (rows + TILE - 1) / TILE, planes);
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_vae_pack_chunk (void *dst, int bf16_out, int channels_last, const float *in, int cin,
                          int T, int H, int W, int t0, int frames, int pad_t, int y0, int rows,
                          int pad_h, cudaStream_t s)
{
  if (channels_last) {
    const dim3 grid = tiles (W, cin, frames * rows), block (TILE, TILE_ROWS);
    if (bf16_out)
      pack_last_kernel<<<grid, block, 0, s>>> (static_cast<bf16 *> (dst), in, cin, T, H, W, t0,
                                               pad_t, y0, pad_h, rows);
    else
      pack_last_kernel<<<grid, block, 0, s>>> (static_cast<float *> (dst), in, cin, T, H, W, t0,
                                               pad_t, y0, pad_h, rows);
  } else {
    const size_t total = (size_t) cin * frames * rows * W;
    if (bf16_out)
      pack_first_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (
          static_cast<bf16 *> (dst), in, cin, T, H, W, t0, pad_t, y0, pad_h, frames, rows, total);
    else
      pack_first_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (
          static_cast<float *> (dst), in, cin, T, H, W, t0, pad_t, y0, pad_h, frames, rows, total);
  }
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_vae_add_chunk (float *out, const void *y, int bf16_in, int channels_last, int cout,
                         int T, int H, int W, int t0, int frames, int y0, int rows,
                         cudaStream_t s)
{
  if (channels_last) {
    const dim3 grid = tiles (cout, W, frames * rows), block (TILE, TILE_ROWS);
    if (bf16_in)
      add_last_kernel<<<grid, block, 0, s>>> (out, static_cast<const bf16 *> (y), cout, T, H, W,
                                              t0, y0, rows);
    else
      add_last_kernel<<<grid, block, 0, s>>> (out, static_cast<const float *> (y), cout, T, H, W,
                                              t0, y0, rows);
  } else {
    const size_t total = (size_t) cout * frames * rows * W;
    if (bf16_in)
      add_first_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (
          out, static_cast<const bf16 *> (y), T, H, W, t0, y0, frames, rows, total);
    else
      add_first_kernel<<<ew_blocks (total), EW_THREADS, 0, s>>> (
          out, static_cast<const float *> (y), T, H, W, t0, y0, frames, rows, total);
  }
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_vae_weights_last (void *dst, int bf16_out, const float *w, int cout, int cin, int k,
                            cudaStream_t s)
{
  const dim3 grid = tiles (k, cin, cout), block (TILE, TILE_ROWS);
  if (bf16_out)
    weights_last_kernel<<<grid, block, 0, s>>> (static_cast<bf16 *> (dst), w, cin, k);
  else
    weights_last_kernel<<<grid, block, 0, s>>> (static_cast<float *> (dst), w, cin, k);
  return cudaGetLastError ();
}
