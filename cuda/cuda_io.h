/* CUDA backend slots at the two ends of a forward (cuda_io.c): the timestep embedding,
 * decoding to 8-bit RGB, and page-locked host memory for frames going out. */
#ifndef VDIT_CUDA_IO_H
#define VDIT_CUDA_IO_H

#include "backend.h"

G_BEGIN_DECLS

void vdit_cuda_timestep_embedding_op (void *ctx, void *out, const float *timesteps, int n,
                                      int freq_dim);
void vdit_cuda_decode_rgb_op (void *ctx, uint8_t *rgb, const void *src, VditElem elem,
                              int frame0, int frames, int height, int width,
                              const int patch[3]);
void *vdit_cuda_host_alloc (void *ctx, size_t bytes, GError **error);
void vdit_cuda_host_free (void *ctx, void *p);

G_END_DECLS

#endif
