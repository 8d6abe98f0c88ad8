/* Where `vdit generate` puts frames: a .y4m file or a folder of PNG frames
 * (frame-0000.png, ...), chosen by the --out argument. */
#ifndef VDIT_TOOLS_FRAME_SINK_H
#define VDIT_TOOLS_FRAME_SINK_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct vdit_frame_sink vdit_frame_sink;

/* A folder when out ends in '/' or is an existing directory (created if needed), y4m
 * when it ends in ".y4m" (any case) or is "-" (stdout); anything else is an error. Opens the output now, so a bad
 * path fails before any work is done. */
vdit_frame_sink *vdit_frame_sink_open (const char *out, int width, int height, double fps,
                                       GError **error);
/* Whether out names a format, without touching the file system beyond a stat. */
gboolean vdit_frame_sink_check (const char *out, GError **error);
/* Frames must arrive in order, 0 first. */
gboolean vdit_frame_sink_write (vdit_frame_sink *sink, int index, const uint8_t *rgb,
                                int width, int height, int stride, GError **error);
int vdit_frame_sink_count (const vdit_frame_sink *sink);
/* Closes. With ok FALSE and no frame written, removes what open created. Frees sink. */
gboolean vdit_frame_sink_close (vdit_frame_sink *sink, gboolean ok, GError **error);

G_END_DECLS

#endif
