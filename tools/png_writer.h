/* One RGB frame as a PNG image (libpng). */
#ifndef VDIT_TOOLS_PNG_WRITER_H
#define VDIT_TOOLS_PNG_WRITER_H

#include <glib.h>
#include <stdint.h>
#include <stdio.h>

G_BEGIN_DECLS

/* Writes packed RGB24 rows of `stride` bytes to file as an 8-bit RGB PNG; the caller
 * closes file (the last bytes may still be buffered). Messages name name, with the OS
 * error of a failed write. No time or text chunks, so equal pixels give equal files.
 * Sides below 1 or rows shorter than 3·width bytes are G_IO_ERROR_INVALID_ARGUMENT. */
gboolean vdit_png_write_rgb (FILE *file, const char *name, const uint8_t *rgb, int width,
                             int height, int stride, GError **error);

G_END_DECLS

#endif
