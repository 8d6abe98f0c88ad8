/* vditsrc's generation thread: runs the engine, clip after clip in
 * continuous mode, and hands each decoded frame to the frame store.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvditsrcpriv.h"

#include <string.h>

#define GST_CAT_DEFAULT gst_vdit_src_debug

GQuark
gst_vdit_src_clip_quark (void)
{
  return g_quark_from_static_string ("vdit-clip");
}

static const gchar *
gst_vdit_src_stage_name (VditStage stage)
{
  switch (stage) {
    case VDIT_STAGE_ENCODE_TEXT:
      return "encode-text";
    case VDIT_STAGE_DENOISE:
      return "denoise";
    case VDIT_STAGE_DECODE:
      return "decode";
  }
  return "unknown";
}

/* Element message for progress bars; posted from the generation thread. */
static void
gst_vdit_src_post_step (GstVditSrc * self)
{
  GstStructure *s;
  gint frame;

  GST_OBJECT_LOCK (self);
  frame = self->frames_done;
  GST_OBJECT_UNLOCK (self);

  s = gst_structure_new ("vdit-progress",
      "stage", G_TYPE_STRING, gst_vdit_src_stage_name (self->stage),
      "step", G_TYPE_INT, self->stage_step,
      "steps", G_TYPE_INT, self->stage_steps,
      "frame", G_TYPE_INT, frame, "frames", G_TYPE_INT, self->n_frames, NULL);
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

void
gst_vdit_src_on_progress (void *user_data, VditStage stage, int step,
    int steps)
{
  GstVditSrc *self = GST_VDIT_SRC (user_data);

  self->stage = stage;
  self->stage_step = step;
  self->stage_steps = steps;
  gst_vdit_src_post_step (self);
}

/* Copies the engine's frame (valid only during the call) into the queue,
 * waiting while the queue is full; returns FALSE to end the generation. */
gboolean
gst_vdit_src_on_frame (void *user_data, int index, int n_frames,
    const uint8_t * rgb, int width, int height, int stride)
{
  GstVditSrc *self = GST_VDIT_SRC (user_data);
  GstBuffer *buf;
  GstMapInfo map;
  GstClock *clock;
  GstClockTime ready = GST_CLOCK_TIME_NONE;
  gsize row = (gsize) width * 3;

  if (G_UNLIKELY (width != self->width || height != self->height))
    goto wrong_size;

  /* live: the clock time each frame was decoded at tells a late frame from
   * one that only waited for downstream */
  if ((clock = gst_element_get_clock (GST_ELEMENT (self))) != NULL) {
    ready = gst_clock_get_time (clock);
    gst_object_unref (clock);
  }

  buf = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&self->rgb_info),
      NULL);
  gst_buffer_map (buf, &map, GST_MAP_WRITE);
  for (gint y = 0; y < height; y++) {
    memcpy (map.data + y * GST_VIDEO_INFO_PLANE_STRIDE (&self->rgb_info, 0),
        rgb + (gsize) y * stride, row);
  }
  gst_buffer_unmap (buf, &map);
  GST_BUFFER_PTS (buf) = ready;        /* internal: not a stream timestamp */

  /* continuous mode: the streaming thread announces each clip as it starts */
  if (self->looping && index == 0)
    gst_mini_object_set_qdata (GST_MINI_OBJECT_CAST (buf), gst_vdit_src_clip_quark (),
        gst_structure_new ("vdit-clip", "clip", G_TYPE_UINT64, self->clip,
            "prompt", G_TYPE_STRING, self->gen.prompt, "seed", G_TYPE_UINT64,
            (guint64) self->gen.seed, NULL), (GDestroyNotify) gst_structure_free);

  /* counted and announced before the store has it: once it does, the streaming
   * thread may push it and, for the last frame, EOS before this thread runs on */
  GST_OBJECT_LOCK (self);
  self->frames_done++;
  GST_OBJECT_UNLOCK (self);
  GST_LOG_OBJECT (self, "frame %d/%d ready", index + 1, n_frames);
  gst_vdit_src_post_step (self);

  /* waits while downstream is behind (unless the clip is kept) */
  return gst_vdit_frames_push (self->store, buf);

wrong_size:
  {
    gst_vdit_frames_finish (self->store, g_error_new (GST_STREAM_ERROR,
            GST_STREAM_ERROR_FORMAT, "The engine produced %dx%d frames, the "
            "model says %dx%d", width, height, self->width, self->height));
    return FALSE;
  }
}

void
gst_vdit_src_on_log (void *user_data, GLogLevelFlags level,
    const char *message)
{
  GstVditSrc *self = GST_VDIT_SRC (user_data);

  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    GST_ERROR_OBJECT (self, "%s", message);
  else if (level & G_LOG_LEVEL_WARNING)
    GST_WARNING_OBJECT (self, "%s", message);
  else if (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO))
    GST_INFO_OBJECT (self, "%s", message);
  else
    GST_DEBUG_OBJECT (self, "%s", message);
}

/* Continuous mode, between two clips: seed + 1, and the prompt property if it
 * changed (a prompt the engine refuses is reported and the last one kept). */
static gboolean
gst_vdit_src_next_clip (GstVditSrc * self)
{
  const gchar *old = self->gen.prompt;
  GError *err = NULL;
  gchar *prompt;

  GST_OBJECT_LOCK (self);
  prompt = g_strdup (self->prompt);
  GST_OBJECT_UNLOCK (self);

  self->clip++;
  self->gen.seed++;
  self->frames_done = 0;
  /* a prompt refused once is not tried (nor reported) again at every clip */
  if (prompt != NULL && g_strcmp0 (g_strstrip (prompt), old) != 0 &&
      g_strcmp0 (prompt, self->refused_prompt) != 0) {
    self->gen.prompt = prompt;
    if (*prompt == '\0' || !vdit_gen_params_check (self->ctx, &self->gen,
            &err)) {
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("Prompt \"%s\" refused: clip %" G_GUINT64_FORMAT " keeps \"%s\"",
              prompt, self->clip, old), ("%s", err != NULL ? err->message :
              "the prompt is empty"));
      self->gen.prompt = old;
      g_clear_error (&err);
      g_free (self->refused_prompt);
      self->refused_prompt = prompt;
    } else {
      GST_INFO_OBJECT (self, "clip %" G_GUINT64_FORMAT ": \"%s\"", self->clip,
          prompt);
      g_free ((gchar *) old);
    }
  } else {
    g_free (prompt);
  }
  return TRUE;
}

gpointer
gst_vdit_src_generate (gpointer data)
{
  GstVditSrc *self = GST_VDIT_SRC (data);
  GError *err = NULL;
  gboolean ok;

  /* one clip, or in continuous mode clip after clip until stopped */
  do {
    ok = vdit_generate (self->ctx, &self->gen, &err);
  } while (ok && self->looping && gst_vdit_src_next_clip (self));

  /* the other ranks of a parallel job are left inside the clip: end them all */
  if (!ok && self->job != NULL && vdit_ctx_out_of_step (self->ctx))
    vdit_comm_abort (self->job, 1, g_error_matches (err, VDIT_ERROR,
            VDIT_ERROR_CANCELLED) ? "the pipeline stopped before the clip was "
        "done, leaving the other ranks inside it" : "the clip failed");

  /* no GST_MESSAGE_PROGRESS here: gst-launch would wait for it to complete
   * before PLAYING, and the generation needs PLAYING to drain its queue */
  if (ok)
    GST_DEBUG_OBJECT (self, "generation done");
  else if (g_error_matches (err, VDIT_ERROR, VDIT_ERROR_CANCELLED))
    GST_DEBUG_OBJECT (self, "generation cancelled");
  else
    GST_WARNING_OBJECT (self, "generation failed: %s", err->message);
  gst_vdit_frames_finish (self->store, g_steal_pointer (&err));
  return NULL;
}
