/* Where vditsrc is on its clip and what each frame is stamped with.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvdittimeline.h"

#include <string.h>

void
gst_vdit_timeline_init (GstVditTimeline * tl, gint fps_n, gint fps_d,
    guint64 n_frames, gboolean endless)
{
  memset (tl, 0, sizeof (*tl));
  tl->fps_n = fps_n;
  tl->fps_d = fps_d;
  tl->n_frames = n_frames;
  tl->endless = endless;
}

GstClockTime
gst_vdit_timeline_frame_start (const GstVditTimeline * tl, guint64 index)
{
  return gst_util_uint64_scale (index, tl->fps_d * GST_SECOND, tl->fps_n);
}

GstClockTime
gst_vdit_timeline_duration (const GstVditTimeline * tl)
{
  if (tl->endless || tl->fps_n <= 0)
    return GST_CLOCK_TIME_NONE;
  return gst_vdit_timeline_frame_start (tl, tl->n_frames);
}

/* The frame a time falls in (frames start at n × duration). */
static guint64
gst_vdit_timeline_frame_at (const GstVditTimeline * tl, GstClockTime time)
{
  return gst_util_uint64_scale (time, tl->fps_n, tl->fps_d * GST_SECOND);
}

gboolean
gst_vdit_timeline_seek (GstVditTimeline * tl, GstSegment * segment)
{
  GstClockTime duration = gst_vdit_timeline_duration (tl);
  GstClockTime stop;
  guint64 after;

  if (segment->format != GST_FORMAT_TIME || tl->fps_n <= 0)
    return FALSE;

  segment->duration = duration;
  tl->reverse = segment->rate < 0.0;
  tl->done = FALSE;
  if (!tl->reverse) {
    guint64 first = gst_vdit_timeline_frame_at (tl, segment->start);

    tl->next = first;
    tl->done = !tl->endless && first >= tl->n_frames;
    return TRUE;
  }

  /* reverse: from the last frame that starts before the stop */
  stop = segment->stop;
  if (!GST_CLOCK_TIME_IS_VALID (stop)) {
    if (!GST_CLOCK_TIME_IS_VALID (duration))
      return FALSE;             /* an endless stream has no end to start from */
    stop = segment->stop = segment->position = duration;
  }
  if (GST_CLOCK_TIME_IS_VALID (duration))
    stop = MIN (stop, duration);
  after = gst_util_uint64_scale_ceil (stop, tl->fps_n, tl->fps_d * GST_SECOND);
  tl->done = after == 0;
  tl->next = tl->done ? 0 : after - 1;
  return TRUE;
}

gboolean
gst_vdit_timeline_peek (const GstVditTimeline * tl, guint64 * index)
{
  if (tl->done)
    return FALSE;
  *index = tl->next;
  return TRUE;
}

void
gst_vdit_timeline_advance (GstVditTimeline * tl)
{
  if (tl->reverse) {
    if (tl->next == 0)
      tl->done = TRUE;
    else
      tl->next--;
  } else {
    tl->next++;
    if (!tl->endless && tl->next >= tl->n_frames)
      tl->done = TRUE;
  }
}

void
gst_vdit_timeline_rebase (GstVditTimeline * tl, guint64 index, GstClockTime pts)
{
  tl->base = pts;
  tl->base_n = index;
}

void
gst_vdit_timeline_stamp (const GstVditTimeline * tl, GstBuffer * buffer,
    guint64 index)
{
  /* from the base frame, so that each frame ends where the next starts */
  GstClockTime start = gst_vdit_timeline_frame_start (tl, index - tl->base_n);
  GstClockTime end = gst_vdit_timeline_frame_start (tl, index + 1 - tl->base_n);

  GST_BUFFER_PTS (buffer) = tl->base + start;
  GST_BUFFER_DTS (buffer) = GST_CLOCK_TIME_NONE;
  GST_BUFFER_DURATION (buffer) = end - start;
  GST_BUFFER_OFFSET (buffer) = index;
  GST_BUFFER_OFFSET_END (buffer) = index + 1;
}

gboolean
gst_vdit_timeline_convert (const GstVditTimeline * tl, GstFormat src_format,
    gint64 src_value, GstFormat dest_format, gint64 * dest_value)
{
  if (src_format == dest_format || src_value == -1) {
    *dest_value = src_value;
    return TRUE;
  }
  if (tl->fps_n <= 0)
    return FALSE;
  if (src_format == GST_FORMAT_DEFAULT && dest_format == GST_FORMAT_TIME) {
    *dest_value = gst_vdit_timeline_frame_start (tl, src_value);
    return TRUE;
  }
  if (src_format == GST_FORMAT_TIME && dest_format == GST_FORMAT_DEFAULT) {
    *dest_value = gst_vdit_timeline_frame_at (tl, src_value);
    return TRUE;
  }
  return FALSE;
}
