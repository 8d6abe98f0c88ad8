/* The identity decoder: the DiT works in pixel space, values in [−1, 1]. */
#include "decoder.h"

#include <math.h>

static inline uint8_t
to_u8 (float v)
{
  float p = roundf ((v + 1.0f) * 127.5f);
  return (uint8_t) (p < 0.0f ? 0.0f : p > 255.0f ? 255.0f : p);
}

void
vdit_decode_frame (const vdit_config *cfg, const float *latent, int index, uint8_t *rgb)
{
  const size_t pixels = (size_t) cfg->height * cfg->width;
  const float *src = latent + (size_t) index * pixels * 3;
  for (size_t i = 0; i < pixels * 3; i++)
    rgb[i] = to_u8 (isnan (src[i]) ? 0.0f : src[i]);
}
