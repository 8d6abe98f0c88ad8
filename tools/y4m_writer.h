/* YUV4MPEG2 output: 4:4:4 (C444), progressive, BT.601 limited range. */
#ifndef VDIT_TOOLS_Y4M_WRITER_H
#define VDIT_TOOLS_Y4M_WRITER_H

#include <glib.h>
#include <stdint.h>
#include <stdio.h>

G_BEGIN_DECLS

typedef struct vdit_y4m_writer vdit_y4m_writer;

/* What a stream may have: larger sides or rates out of range are refused. */
#define VDIT_Y4M_MAX_SIDE 16384
#define VDIT_Y4M_MIN_FPS 0.001
#define VDIT_Y4M_MAX_FPS 1e6

/* Writes the stream header to file, which stays the caller's to close; messages name
 * name. Sides and fps out of the bounds above are G_IO_ERROR_INVALID_ARGUMENT. */
vdit_y4m_writer *vdit_y4m_writer_new (FILE *file, const char *name, int width, int height,
                                      double fps, GError **error);
/* Appends one frame given as packed RGB24 rows of `stride` bytes (at least 3·width),
 * and flushes it. */
gboolean vdit_y4m_writer_write_rgb (vdit_y4m_writer *w, const uint8_t *rgb, int stride,
                                    GError **error);
void vdit_y4m_writer_free (vdit_y4m_writer *w);

/* fps as an exact ratio over one of the denominators 1, 1001, 2, 4, 5, 10, 100, 1000
 * (24 → 24:1, 29.97 → 30000:1001), else the nearest thousandth (8.0625 → 8063:1000). */
void vdit_y4m_fps_ratio (double fps, int *num, int *den);

G_END_DECLS

#endif
