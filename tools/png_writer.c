/* PNG output through libpng. libpng reports errors by longjmp; the handler keeps the
 * message so the caller gets an ordinary GError. */
#include "png_writer.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

typedef struct {
  char message[256];
} png_failure;

static void
on_png_error (png_structp png, png_const_charp message)
{
  png_failure *failure = png_get_error_ptr (png);
  g_strlcpy (failure->message, message, sizeof failure->message);
  png_longjmp (png, 1);
}

static void
on_png_warning (png_structp png, png_const_charp message)
{
  /* Warnings (e.g. about ancillary chunks) do not affect the pixels. */
}

gboolean
vdit_png_write_rgb (const char *path, const uint8_t *rgb, int width, int height, int stride,
                    GError **error)
{
  FILE *file = g_fopen (path, "wb");
  if (file == NULL) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create '%s': %s",
                 path, g_strerror (saved));
    return FALSE;
  }

  png_failure failure = { "" };
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &failure, on_png_error,
                                             on_png_warning);
  png_infop info = png ? png_create_info_struct (png) : NULL;
  /* volatile: read after longjmp. */
  volatile gboolean ok = FALSE;
  if (png == NULL || info == NULL) {
    g_strlcpy (failure.message, "out of memory", sizeof failure.message);
    goto out;
  }
  if (setjmp (png_jmpbuf (png)))
    goto out;

  png_init_io (png, file);
  png_set_IHDR (png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info (png, info);
  for (int row = 0; row < height; row++)
    png_write_row (png, (png_const_bytep) (rgb + (size_t) row * stride));
  png_write_end (png, NULL);
  ok = TRUE;

out:
  png_destroy_write_struct (png ? &png : NULL, info ? &info : NULL);
  if (fclose (file) != 0 && ok) {
    g_strlcpy (failure.message, g_strerror (errno), sizeof failure.message);
    ok = FALSE;
  }
  if (!ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot write PNG '%s': %s", path,
                 failure.message);
  return ok;
}
