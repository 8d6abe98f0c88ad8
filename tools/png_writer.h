/* One RGB frame to a PNG file (libpng). */
#ifndef VDIT_TOOLS_PNG_WRITER_H
#define VDIT_TOOLS_PNG_WRITER_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Writes packed RGB24 rows of `stride` bytes as an 8-bit RGB PNG. No time or text
 * chunks, so equal pixels give equal files. */
gboolean vdit_png_write_rgb (const char *path, const uint8_t *rgb, int width, int height,
                             int stride, GError **error);

G_END_DECLS

#endif
