/* CUDA backend slots at the two ends of a forward: the timestep embedding (no upload: the
 * timesteps travel as kernel arguments), RGB frames decoded on the device and copied out
 * as bytes, and page-locked host memory for them. */
#include "cuda_io.h"

#include "cuda_ctx.h"
#include "io_ops.h"
#include "vdit.h"

void
vdit_cuda_timestep_embedding_op (void *ctx, void *out, const float *timesteps, int n,
                                 int freq_dim)
{
  vdit_cuda_ctx *c = ctx;
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, vdit_cuda_timestep_embedding (out, timesteps, n, freq_dim, c->stream));
}

/* Kernel into stream-ordered device scratch, then one asynchronous copy of the bytes:
 * with page-locked rgb the call returns at once and sync waits for the copy. */
void
vdit_cuda_decode_rgb_op (void *ctx, uint8_t *rgb, const void *src, VditElem elem, int frame0,
                         int frames, int height, int width, const int patch[3])
{
  vdit_cuda_ctx *c = ctx;
  if (frames <= 0 || height <= 0 || width <= 0 || !vdit_cuda_enter (c))
    return;
  if (elem != VDIT_ELEM_F32 && elem != VDIT_ELEM_ACT) {
    vdit_cuda_record (c, __FILE__, __LINE__, "decode_rgb", "source must be F32 or ACT");
    return;
  }
  const size_t bytes = (size_t) frames * height * width * 3;
  void *dev = vdit_cuda_mem_scratch (c, bytes, "decoded frames");
  if (dev == NULL)
    return;
  if (VDIT_CUDA_CHECK (c, vdit_cuda_decode_rgb (dev, src, elem == VDIT_ELEM_ACT, frame0, frames,
                                                height, width, patch[0], patch[1], patch[2],
                                                c->stream)))
    VDIT_CUDA_CHECK (c, cudaMemcpyAsync (rgb, dev, bytes, cudaMemcpyDeviceToHost, c->stream));
  vdit_cuda_mem_free (c, dev);
}

void *
vdit_cuda_host_alloc (void *ctx, size_t bytes, GError **error)
{
  vdit_cuda_ctx *c = ctx;
  void *p = NULL;
  if (!vdit_cuda_enter (c)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "cannot select CUDA device %d",
                 c->device);
    return NULL;
  }
  const cudaError_t err = cudaHostAlloc (&p, MAX (bytes, 1), cudaHostAllocDefault);
  if (err != cudaSuccess) {
    cudaGetLastError (); /* not sticky: nothing to report from sync */
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "cannot allocate %zu bytes (%.1f MiB) of page-locked host memory: %s", bytes,
                 bytes / 1048576.0, cudaGetErrorString (err));
    return NULL;
  }
  return p;
}

void
vdit_cuda_host_free (void *ctx, void *p)
{
  vdit_cuda_ctx *c = ctx;
  if (p == NULL)
    return;
  /* a copy into p may still be queued; the memory is freed even where the device is
   * lost */
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, cudaStreamSynchronize (c->stream));
  VDIT_CUDA_CHECK (c, cudaFreeHost (p));
}
