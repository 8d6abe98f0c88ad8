/* Where `vdit generate` puts frames: a .y4m file or a folder of PNG frames
 * (frame-0000.png, ...), chosen by the --out argument.
 *
 * Nothing the user already has is touched until the sink is committed: the frames go to
 * temporary files beside their targets (".clip.y4m.XXXXXX", ".frame-0000.png.XXXXXX"),
 * which are renamed over the targets by vdit_frame_sink_close (sink, TRUE, ...), and
 * removed by vdit_frame_sink_close (sink, FALSE, ...). Standard output ("-") and an
 * existing file that is no regular file (a device, a FIFO) are written in place. */
#ifndef VDIT_TOOLS_FRAME_SINK_H
#define VDIT_TOOLS_FRAME_SINK_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct vdit_frame_sink vdit_frame_sink;

/* A folder when out ends in '/' or is an existing directory (created now if needed), y4m
 * when it ends in ".y4m" (any case) or is "-" (stdout); anything else is an error. Makes
 * the temporary file now, so a bad path fails before any work is done. */
vdit_frame_sink *vdit_frame_sink_open (const char *out, int width, int height, double fps,
                                       GError **error);
/* Whether out names a format, without touching the file system beyond a stat. */
gboolean vdit_frame_sink_check (const char *out, GError **error);
/* Frames must arrive in order, 0 first. A write error (disk full) names the file and the
 * OS error and leaves no partial frame behind. */
gboolean vdit_frame_sink_write (vdit_frame_sink *sink, int index, const uint8_t *rgb,
                                int width, int height, int stride, GError **error);
int vdit_frame_sink_count (const vdit_frame_sink *sink);
/* Ends the output and frees sink. commit TRUE: the frames written so far replace the
 * output (FALSE, with *error set, when the last write, sync or rename fails; the
 * temporaries are removed). commit FALSE: every temporary, and the folders open
 * created, are removed; the output stays as it was. */
gboolean vdit_frame_sink_close (vdit_frame_sink *sink, gboolean commit, GError **error);

G_END_DECLS

#endif
