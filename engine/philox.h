/* Counter-based normal noise (Philox4x32-10 + Box–Muller), bit-identical to
 * train/vdit_torch/philox.py, so CPU, GPU and PyTorch draw the same latents. */
#ifndef VDIT_PHILOX_H
#define VDIT_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/* dst[j] = normal number first + j of stream `stream` under `seed`. */
void vdit_philox_normal (float *dst, size_t n, uint64_t seed, uint32_t stream, uint64_t first);

#endif
