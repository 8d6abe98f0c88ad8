/* A clip's frames kept in one packed RGB array (vdit_gen_params' on_frame with a
 * frames_out as user_data), for the sequence-parallel checks that compare clips. */
#ifndef VDIT_TESTS_FRAMES_OUT_H
#define VDIT_TESTS_FRAMES_OUT_H

#include <glib.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  uint8_t *rgb; /* (frames, h, w, 3) */
  int frames;
} frames_out;

static inline gboolean
keep_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int width,
            int height, int stride)
{
  frames_out *f = user_data;
  const size_t size = (size_t) width * height * 3;
  if (f->rgb == NULL)
    f->rgb = g_new0 (uint8_t, size * n_frames);
  for (int y = 0; y < height; y++)
    memcpy (f->rgb + size * index + (size_t) y * width * 3, rgb + (size_t) y * stride,
            (size_t) width * 3);
  f->frames = index + 1;
  return TRUE;
}

#endif
