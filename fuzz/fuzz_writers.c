/* libFuzzer target: the y4m and PNG writers of `vdit generate` on arbitrary frames.
 * Input: selector, width, height, row padding, 8 bytes of frame rate (any double:
 * NaN, ±inf, denormals), an output capacity, then pixels (repeated to fill the
 * frames). Bit 0 of the selector picks y4m or PNG; bit 1 writes into a buffer of the
 * given capacity (a full disk part way) instead of a growing one; bit 2 gives rows
 * one byte short. Checked: a refusal or a write error says why; a y4m stream that
 * was written has the header's size and rate and every frame's bytes; a PNG that
 * was written decodes (libpng) back to the input pixels. */
#include "png_writer.h"
#include "y4m_writer.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#define HEAD 15

static void
check_error (GError *error)
{
  if (error == NULL || error->message == NULL || *error->message == '\0')
    abort ();
  g_error_free (error);
}

static void
check_y4m (const uint8_t *out, size_t len, int width, int height, double fps, int frames)
{
  int w = 0, h = 0, num = 0, den = 0, used = 0;
  if (len == 0 || memchr (out, '\n', MIN (len, 128)) == NULL)
    abort ();
  char *line = g_strndup ((const char *) out, (const char *) memchr (out, '\n', len) -
                                              (const char *) out);
  if (sscanf (line, "YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 C444%n", &w, &h, &num, &den, &used) != 4 ||
      line[used] != '\0' || w != width || h != height || num <= 0 || den <= 0)
    abort ();
  /* the ratio is the rate, or its nearest thousandth (8.0625 → 8063:1000) */
  if (fabs ((double) num / den - fps) > MAX (fps * 1e-6, 0.5 / den) * (1 + 1e-9))
    abort ();
  const size_t frame = 6 + (size_t) 3 * width * height;
  if (len != strlen (line) + 1 + frames * frame)
    abort ();
  for (int f = 0; f < frames; f++)
    if (memcmp (out + strlen (line) + 1 + f * frame, "FRAME\n", 6) != 0)
      abort ();
  g_free (line);
}

static void
check_png (const uint8_t *out, size_t len, const uint8_t *rgb, int width, int height,
           int stride)
{
  png_image image;
  memset (&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory (&image, out, len))
    abort ();
  image.format = PNG_FORMAT_RGB;
  if ((int) image.width != width || (int) image.height != height)
    abort ();
  uint8_t *back = g_malloc (PNG_IMAGE_SIZE (image));
  if (!png_image_finish_read (&image, NULL, back, 0, NULL))
    abort ();
  for (int row = 0; row < height; row++)
    if (memcmp (back + (size_t) row * 3 * width, rgb + (size_t) row * stride, 3 * width) != 0)
      abort ();
  g_free (back);
  png_image_free (&image);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < HEAD)
    return 0;
  const int mode = data[0];
  const int width = 1 + data[1] % 48, height = 1 + data[2] % 48;
  const int stride = 3 * width + data[3] % 8 - ((mode & 4) ? 1 + data[3] % 8 : 0);
  double fps;
  memcpy (&fps, data + 4, sizeof fps);
  const size_t capacity = data[12] | (size_t) data[13] << 8;
  const int frames = 1 + data[14] % 3;
  const uint8_t *pixels = data + HEAD;
  const size_t n_pixels = size - HEAD;

  /* frames of stride × height bytes, the input's pixels over and over */
  const size_t frame_bytes = (size_t) MAX (stride, 3 * width) * height;
  uint8_t *rgb = g_malloc0 (frame_bytes * frames);
  for (size_t i = 0; n_pixels > 0 && i < frame_bytes * frames; i++)
    rgb[i] = pixels[i % n_pixels];

  /* a growing buffer, or one of a fixed capacity whose writes fail past it */
  char *buf = NULL, *fixed = (mode & 2) ? g_malloc0 (capacity + 1) : NULL;
  size_t len = 0;
  FILE *f = fixed ? fmemopen (fixed, capacity + 1, "w") : open_memstream (&buf, &len);
  if (f == NULL)
    abort ();
  GError *error = NULL;
  gboolean ok = TRUE;
  if (mode & 1) {
    vdit_y4m_writer *w = vdit_y4m_writer_new (f, "fuzz.y4m", width, height, fps, &error);
    if (w == NULL) {
      ok = FALSE;
      if (fps >= VDIT_Y4M_MIN_FPS && fps <= VDIT_Y4M_MAX_FPS && !(mode & 2))
        abort (); /* a valid stream must be accepted */
      check_error (error);
    }
    for (int i = 0; ok && i < frames; i++) {
      ok = vdit_y4m_writer_write_rgb (w, rgb + i * frame_bytes, stride, &error);
      if (!ok)
        check_error (error);
    }
    if (w != NULL)
      vdit_y4m_writer_free (w);
    if (ok && !(mode & 2)) {
      fflush (f);
      check_y4m ((const uint8_t *) buf, len, width, height, fps, frames);
    }
  } else {
    ok = vdit_png_write_rgb (f, "fuzz.png", rgb, width, height, stride, &error);
    if (!ok)
      check_error (error);
    if (ok && !(mode & 2)) {
      fflush (f);
      check_png ((const uint8_t *) buf, len, rgb, width, height, stride);
    }
  }
  if (ok && (mode & 4))
    abort (); /* short rows must be refused */
  fclose (f);
  free (buf);
  g_free (fixed);
  g_free (rgb);
  return 0;
}
