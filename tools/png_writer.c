/* PNG output through libpng. libpng reports errors by longjmp; the handlers keep the
 * message (and the OS error of a failed write) so the caller gets an ordinary GError. */
#include "png_writer.h"

#include <errno.h>
#include <png.h>

#include <gio/gio.h>

typedef struct {
  FILE *file;
  int os_error; /* errno of the write that failed, or 0 */
  char message[256];
} png_output;

static void
on_png_error (png_structp png, png_const_charp message)
{
  png_output *out = png_get_error_ptr (png);
  g_strlcpy (out->message, message, sizeof out->message);
  png_longjmp (png, 1);
}

static void
on_png_warning (png_structp png, png_const_charp message)
{
  /* Warnings (e.g. about ancillary chunks) do not affect the pixels. */
}

/* libpng's own writer says only "Write Error"; this one keeps errno (ENOSPC...). */
static void
on_png_write (png_structp png, png_bytep data, size_t length)
{
  png_output *out = png_get_io_ptr (png);
  if (fwrite (data, 1, length, out->file) != length) {
    out->os_error = errno;
    png_error (png, "write failed");
  }
}

static void
on_png_flush (png_structp png)
{
  png_output *out = png_get_io_ptr (png);
  if (fflush (out->file) != 0) {
    out->os_error = errno;
    png_error (png, "write failed");
  }
}

gboolean
vdit_png_write_rgb (FILE *file, const char *name, const uint8_t *rgb, int width, int height,
                    int stride, GError **error)
{
  png_output out = { file, 0, "" };
  if (width < 1 || height < 1 || stride / 3 < width) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "cannot write PNG '%s': %d×%d with rows of %d bytes", name, width, height,
                 stride);
    return FALSE;
  }
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &out, on_png_error,
                                             on_png_warning);
  png_infop info = png ? png_create_info_struct (png) : NULL;
  /* volatile: read after longjmp. */
  volatile gboolean ok = FALSE;
  if (png == NULL || info == NULL) {
    g_strlcpy (out.message, "out of memory", sizeof out.message);
    goto done;
  }
  if (setjmp (png_jmpbuf (png)))
    goto done;

  png_set_write_fn (png, &out, on_png_write, on_png_flush);
  png_set_IHDR (png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info (png, info);
  for (int row = 0; row < height; row++)
    png_write_row (png, (png_const_bytep) (rgb + (size_t) row * stride));
  png_write_end (png, NULL);
  ok = TRUE;

done:
  png_destroy_write_struct (png ? &png : NULL, info ? &info : NULL);
  if (!ok && out.os_error != 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (out.os_error),
                 "cannot write '%s': %s", name, g_strerror (out.os_error));
  else if (!ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot write PNG '%s': %s", name,
                 out.message);
  return ok;
}
