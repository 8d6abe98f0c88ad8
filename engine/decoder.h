/* Latent frames to 8-bit RGB. */
#ifndef VDIT_DECODER_H
#define VDIT_DECODER_H

#include "config.h"

#include <math.h>

G_BEGIN_DECLS

/* One latent value to a byte: round((v + 1)·127.5) in f32, half away from zero, clamped
 * to [0, 255]; NaN counts as 0. Shared with the backends' decode_rgb reference. */
static inline uint8_t
vdit_rgb_byte (float v)
{
  if (isnan (v))
    v = 0.0f;
  const float p = roundf ((v + 1.0f) * 127.5f);
  return (uint8_t) (p < 0.0f ? 0.0f : p > 255.0f ? 255.0f : p);
}

/* rgb (height, width, 3) of video frame `index` from latent (T, H, W, C). */
void vdit_decode_frame (const vdit_config *cfg, const float *latent, int index, uint8_t *rgb);

G_END_DECLS

#endif
