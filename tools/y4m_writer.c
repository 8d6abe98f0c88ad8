/* YUV4MPEG2 writer. 4:4:4 keeps every pixel's colour (4:2:0 would average 2×2 blocks,
 * which at the small sizes of test models is most of the picture). The conversion is
 * BT.601 limited range, what players assume for a y4m stream without colour tags,
 * done in integers so output bytes do not depend on the compiler. */
#include "y4m_writer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <gio/gio.h>

struct vdit_y4m_writer {
  FILE *file; /* not owned */
  char *name; /* for messages */
  int width, height;
  uint8_t *plane; /* (3, height, width) Y, Cb, Cr */
};

void
vdit_y4m_fps_ratio (double fps, int *num, int *den)
{
  static const int dens[] = { 1, 1001, 2, 4, 5, 10, 100, 1000 };
  for (guint i = 0; i < G_N_ELEMENTS (dens); i++) {
    double n = fps * dens[i];
    if (fabs (n - round (n)) < 1e-6 * dens[i] && n >= 1 && n < G_MAXINT) {
      *num = (int) round (n);
      *den = dens[i];
      return;
    }
  }
  *num = (int) round (fps * 1000);
  *den = 1000;
}

static gboolean
set_io_error (GError **error, const char *name, const char *what)
{
  int saved = errno;
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot %s '%s': %s", what,
               name, g_strerror (saved));
  return FALSE;
}

vdit_y4m_writer *
vdit_y4m_writer_new (FILE *file, const char *name, int width, int height, double fps,
                     GError **error)
{
  int num, den;
  /* the frame rate becomes an integer ratio in the header: out of these bounds it
   * would overflow, or round to 0 */
  if (width < 1 || height < 1 || width > VDIT_Y4M_MAX_SIDE || height > VDIT_Y4M_MAX_SIDE ||
      !(fps >= VDIT_Y4M_MIN_FPS && fps <= VDIT_Y4M_MAX_FPS)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "cannot write '%s': %d×%d at %g frames/s is not a valid y4m stream (sides "
                 "1 to %d, %g to %g frames/s)", name, width, height, fps, VDIT_Y4M_MAX_SIDE,
                 VDIT_Y4M_MIN_FPS, VDIT_Y4M_MAX_FPS);
    return NULL;
  }
  vdit_y4m_fps_ratio (fps, &num, &den);
  if (fprintf (file, "YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 C444\n", width, height, num,
               den) < 0) {
    set_io_error (error, name, "write");
    return NULL;
  }
  vdit_y4m_writer *w = g_new0 (vdit_y4m_writer, 1);
  w->file = file;
  w->name = g_strdup (name);
  w->width = width;
  w->height = height;
  w->plane = g_malloc ((size_t) 3 * width * height);
  return w;
}

/* BT.601, limited range, coefficients scaled by 2^16 and rounded. */
static inline uint8_t
to_y (int r, int g, int b)
{
  return (uint8_t) ((16829 * r + 33039 * g + 6416 * b + (16 << 16) + 32768) >> 16);
}

static inline uint8_t
to_cb (int r, int g, int b)
{
  return (uint8_t) ((-9714 * r - 19070 * g + 28784 * b + (128 << 16) + 32768) >> 16);
}

static inline uint8_t
to_cr (int r, int g, int b)
{
  return (uint8_t) ((28784 * r - 24103 * g - 4681 * b + (128 << 16) + 32768) >> 16);
}

gboolean
vdit_y4m_writer_write_rgb (vdit_y4m_writer *w, const uint8_t *rgb, int stride, GError **error)
{
  size_t n = (size_t) w->width * w->height;
  if (stride < 3 * w->width) { /* rows would overlap: the caller's buffer is too short */
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "cannot write '%s': rows of %d bytes are shorter than %d pixels", w->name,
                 stride, w->width);
    return FALSE;
  }
  uint8_t *y = w->plane, *cb = y + n, *cr = cb + n;
  for (int row = 0; row < w->height; row++) {
    const uint8_t *p = rgb + (size_t) row * stride;
    for (int col = 0; col < w->width; col++, p += 3) {
      size_t i = (size_t) row * w->width + col;
      y[i] = to_y (p[0], p[1], p[2]);
      cb[i] = to_cb (p[0], p[1], p[2]);
      cr[i] = to_cr (p[0], p[1], p[2]);
    }
  }
  if (fputs ("FRAME\n", w->file) == EOF || fwrite (w->plane, 1, 3 * n, w->file) != 3 * n)
    return set_io_error (error, w->name, "write");
  /* Each frame leaves the process as it is made: a pipe's reader gets it at once, and a
   * write error (disk full) is seen at the frame that caused it. */
  if (fflush (w->file) != 0)
    return set_io_error (error, w->name, "write");
  return TRUE;
}

void
vdit_y4m_writer_free (vdit_y4m_writer *w)
{
  g_free (w->plane);
  g_free (w->name);
  g_free (w);
}
