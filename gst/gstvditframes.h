/* The decoded frames between the generation thread and the streaming thread.
 *
 * Frames are numbered from 0 on one timeline (in continuous mode clip after
 * clip). A store that keeps its frames serves any index again (seeking): its
 * memory is bounded by the clip, frames × width × height × 3 bytes. One that
 * does not (continuous mode, or a clip too big to keep) is a window: the
 * producer waits while `window` frames are ahead of the reader, and a frame is
 * dropped once read. */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _GstVditFrames GstVditFrames;

typedef enum
{
  GST_VDIT_FRAMES_OK,           /* *frame holds the frame */
  GST_VDIT_FRAMES_FLUSHING,     /* set_flushing (TRUE) woke the reader */
  GST_VDIT_FRAMES_ENDED,        /* no such frame will come; *error says why,
                                 * NULL when the generation simply ended */
} GstVditFramesResult;

GstVditFrames *gst_vdit_frames_new (gboolean keep, guint window);
void gst_vdit_frames_free (GstVditFrames * frames);
gboolean gst_vdit_frames_keeps (const GstVditFrames * frames);

/* Producer: appends the next frame (takes it), waiting while the window is
 * full; FALSE (frame dropped) once the store is closed. */
gboolean gst_vdit_frames_push (GstVditFrames * frames, GstBuffer * frame);
/* Producer: no more frames; takes error (NULL: a normal end). */
void gst_vdit_frames_finish (GstVditFrames * frames, GError * error);
/* Frames pushed so far. */
guint64 gst_vdit_frames_pushed (GstVditFrames * frames);

/* Reader: frame `index`, waiting until it is decoded. */
GstVditFramesResult gst_vdit_frames_get (GstVditFrames * frames,
    guint64 index, GstBuffer ** frame, GError ** error);
/* unlock/unlock_stop: wakes a waiting reader, which returns FLUSHING. */
void gst_vdit_frames_set_flushing (GstVditFrames * frames, gboolean flushing);
/* stop: wakes everyone for good; push returns FALSE from now on. */
void gst_vdit_frames_close (GstVditFrames * frames);

G_END_DECLS
