/* The decoded frames between the generation thread and the streaming thread.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvditframes.h"

struct _GstVditFrames
{
  GMutex lock;
  GCond cond;
  gboolean keep;
  guint window;
  GPtrArray *frames;            /* frame `first + i` at i; NULL once dropped */
  guint64 first;                /* index of frames[0] */
  gboolean flushing;
  gboolean closed;
  gboolean finished;
  GError *error;
};

GstVditFrames *
gst_vdit_frames_new (gboolean keep, guint window)
{
  GstVditFrames *self = g_new0 (GstVditFrames, 1);

  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  self->keep = keep;
  self->window = MAX (window, 1);
  self->frames = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  return self;
}

void
gst_vdit_frames_free (GstVditFrames * self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->frames);
  g_clear_error (&self->error);
  g_cond_clear (&self->cond);
  g_mutex_clear (&self->lock);
  g_free (self);
}

gboolean
gst_vdit_frames_keeps (const GstVditFrames * self)
{
  return self->keep;
}

gboolean
gst_vdit_frames_push (GstVditFrames * self, GstBuffer * frame)
{
  g_mutex_lock (&self->lock);
  while (!self->keep && self->frames->len >= self->window && !self->closed)
    g_cond_wait (&self->cond, &self->lock);
  if (self->closed) {
    g_mutex_unlock (&self->lock);
    gst_buffer_unref (frame);
    return FALSE;
  }
  g_ptr_array_add (self->frames, frame);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
  return TRUE;
}

void
gst_vdit_frames_finish (GstVditFrames * self, GError * error)
{
  g_mutex_lock (&self->lock);
  self->finished = TRUE;
  if (self->error == NULL)
    self->error = error;
  else
    g_clear_error (&error);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
}

guint64
gst_vdit_frames_pushed (GstVditFrames * self)
{
  guint64 n;

  g_mutex_lock (&self->lock);
  n = self->first + self->frames->len;
  g_mutex_unlock (&self->lock);
  return n;
}

/* A window drops what the reader has gone past, and the frame it takes. */
static void
gst_vdit_frames_drop_through (GstVditFrames * self, guint64 index)
{
  guint n = (guint) MIN (index + 1 - self->first, self->frames->len);

  g_ptr_array_remove_range (self->frames, 0, n);
  self->first += n;
  g_cond_broadcast (&self->cond);
}

GstVditFramesResult
gst_vdit_frames_get (GstVditFrames * self, guint64 index, GstBuffer ** frame,
    GError ** error)
{
  GstVditFramesResult res;

  *frame = NULL;
  g_mutex_lock (&self->lock);
  if (G_UNLIKELY (index < self->first))
    goto dropped;
  while (index >= self->first + self->frames->len && !self->finished &&
      !self->flushing && !self->closed)
    g_cond_wait (&self->cond, &self->lock);
  if (self->flushing || self->closed) {
    res = GST_VDIT_FRAMES_FLUSHING;
  } else if (index >= self->first + self->frames->len) {
    if (self->error != NULL)
      g_propagate_error (error, g_error_copy (self->error));
    res = GST_VDIT_FRAMES_ENDED;
  } else {
    *frame = gst_buffer_ref (g_ptr_array_index (self->frames,
            index - self->first));
    if (!self->keep)
      gst_vdit_frames_drop_through (self, index);
    res = GST_VDIT_FRAMES_OK;
  }
  g_mutex_unlock (&self->lock);
  return res;

dropped:
  {
    g_mutex_unlock (&self->lock);
    g_set_error (error, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
        "Frame %" G_GUINT64_FORMAT " is no longer kept (frames from %"
        G_GUINT64_FORMAT " are)", index, self->first);
    return GST_VDIT_FRAMES_ENDED;
  }
}

void
gst_vdit_frames_set_flushing (GstVditFrames * self, gboolean flushing)
{
  g_mutex_lock (&self->lock);
  self->flushing = flushing;
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
}

void
gst_vdit_frames_close (GstVditFrames * self)
{
  g_mutex_lock (&self->lock);
  self->closed = TRUE;
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
}
