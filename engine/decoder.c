/* The identity decoder: the DiT works in pixel space, values in [−1, 1]. */
#include "decoder.h"

void
vdit_decode_frame (const vdit_config *cfg, const float *latent, int index, uint8_t *rgb)
{
  const size_t pixels = (size_t) cfg->height * cfg->width;
  const float *src = latent + (size_t) index * pixels * 3;
  for (size_t i = 0; i < pixels * 3; i++)
    rgb[i] = vdit_rgb_byte (src[i]);
}
