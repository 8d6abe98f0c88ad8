/* Where vditsrc is on its clip and what each frame is stamped with: frame n
 * has PTS base + (n − base_n) × frame duration (base 0 unless live), in
 * increasing n, or decreasing after a reverse seek; seeks in TIME and DEFAULT
 * (frames) formats pick the frame to start from. Used by the streaming thread
 * only (and under the stream lock by do_seek). */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct
{
  gint fps_n, fps_d;            /* the clip's rate */
  guint64 n_frames;             /* frames of the clip (of each clip if endless) */
  gboolean endless;             /* continuous mode: no last frame */
  guint64 next;                 /* the next frame to push */
  gboolean reverse;             /* rate < 0: frames in decreasing order */
  gboolean done;                /* past the last frame (first, in reverse) */
  GstClockTime base;            /* PTS of frame base_n */
  guint64 base_n;
} GstVditTimeline;

void gst_vdit_timeline_init (GstVditTimeline * tl, gint fps_n, gint fps_d,
    guint64 n_frames, gboolean endless);

/* The clip's duration, NONE when endless. */
GstClockTime gst_vdit_timeline_duration (const GstVditTimeline * tl);

/* Start of frame `index` on the clip's own time line (no live base). */
GstClockTime gst_vdit_timeline_frame_start (const GstVditTimeline * tl,
    guint64 index);

/* do_seek: the frame holding segment's start (forward) or the last one before
 * its stop (reverse); a reverse segment without a stop gets the clip's end.
 * FALSE for a format other than TIME. */
gboolean gst_vdit_timeline_seek (GstVditTimeline * tl, GstSegment * segment);

/* The frame to push next; FALSE at the end of the clip. */
gboolean gst_vdit_timeline_peek (const GstVditTimeline * tl, guint64 * index);
/* That frame was pushed: move to the following one. */
void gst_vdit_timeline_advance (GstVditTimeline * tl);

/* Live: frame `index` is at `pts`, the frames after it one duration apart. */
void gst_vdit_timeline_rebase (GstVditTimeline * tl, guint64 index,
    GstClockTime pts);

/* Sets PTS, DURATION, OFFSET and OFFSET_END of frame `index`. */
void gst_vdit_timeline_stamp (const GstVditTimeline * tl, GstBuffer * buffer,
    guint64 index);

/* Between TIME and DEFAULT (frames) at the clip's rate. */
gboolean gst_vdit_timeline_convert (const GstVditTimeline * tl,
    GstFormat src_format, gint64 src_value, GstFormat dest_format,
    gint64 * dest_value);

G_END_DECLS
