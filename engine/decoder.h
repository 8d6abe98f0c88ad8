/* Latent frames to 8-bit RGB. */
#ifndef VDIT_DECODER_H
#define VDIT_DECODER_H

#include "config.h"

G_BEGIN_DECLS

/* rgb (height, width, 3) of video frame `index` from latent (T, H, W, C). */
void vdit_decode_frame (const vdit_config *cfg, const float *latent, int index, uint8_t *rgb);

G_END_DECLS

#endif
