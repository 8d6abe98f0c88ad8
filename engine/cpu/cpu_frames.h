/* CPU reference ops at the two ends of a forward: the timestep embedding going in and
 * 8-bit RGB frames coming out. Same contracts as the slots of engine/backend.h. */
#ifndef VDIT_CPU_FRAMES_H
#define VDIT_CPU_FRAMES_H

#include "backend.h"

void cpu_timestep_embedding (void *ctx, void *out, const float *timesteps, int n, int freq_dim);
void cpu_decode_rgb (void *ctx, uint8_t *rgb, const void *src, VditElem elem, int frame0,
                     int frames, int height, int width, const int patch[3]);

#endif
