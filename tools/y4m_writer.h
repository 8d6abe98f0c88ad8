/* YUV4MPEG2 output: 4:4:4 (C444), progressive, BT.601 limited range. */
#ifndef VDIT_TOOLS_Y4M_WRITER_H
#define VDIT_TOOLS_Y4M_WRITER_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct vdit_y4m_writer vdit_y4m_writer;

/* Creates (truncates) path, or uses stdout for "-", and writes the stream header. */
vdit_y4m_writer *vdit_y4m_writer_open (const char *path, int width, int height, double fps,
                                       GError **error);
/* Appends one frame given as packed RGB24 rows of `stride` bytes. */
gboolean vdit_y4m_writer_write_rgb (vdit_y4m_writer *w, const uint8_t *rgb, int stride,
                                    GError **error);
/* Flushes and closes; FALSE if a write failed late (disk full). Frees w. */
gboolean vdit_y4m_writer_close (vdit_y4m_writer *w, GError **error);

/* fps as the smallest exact ratio (24 → 24:1, 29.97 → 30000:1001). */
void vdit_y4m_fps_ratio (double fps, int *num, int *den);

G_END_DECLS

#endif
