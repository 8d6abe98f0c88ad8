/* vditsrc's instance struct, shared by the files that make up the element:
 * gstvditsrc.c (properties, caps, start/stop, fill) and gstvditsrcgen.c (the
 * generation thread). */
#pragma once

#include <gst/base/gstpushsrc.h>
#include <gst/video/video.h>

#include "gstvditframes.h"
#include "gstvditmodelcache.h"
#include "gstvditsrc.h"
#include "gstvdittimeline.h"
#include "comm_process.h"
#include "ctx.h"
#include "vdit.h"

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN (gst_vdit_src_debug);

struct _GstVditSrc
{
  GstPushSrc parent;

  /* properties, under the object lock */
  gchar *prompt;
  gchar *negative_prompt;
  gchar *model;
  gint frames;
  gint steps;
  gfloat guidance;
  guint64 seed;
  gint gpus;
  VditDevice device;
  gint cuda_device_id;
  VditAttention attention;
  gfloat sparsity;
  gint fps_n, fps_d;
  gboolean is_live;             /* applied to the base class at READY → PAUSED */
  gboolean loop;
  gchar *device_used;

  /* engine state, from start() to stop(); read-only while the thread runs */
  GstVditModelEntry *model_entry;  /* shared with other vditsrc using the model */
  vdit_ctx *ctx;
  const vdit_comm *job;         /* the mpirun job whose rank 0 this is, or NULL */
  vdit_gen_params gen;
  GstVideoInfo rgb_info;        /* frames as the engine hands them over */
  gint width, height;           /* 0 until a model is loaded */
  gint n_frames;
  gint model_fps_n, model_fps_d;
  gint rate_n, rate_d;          /* the one output rate: framerate, else the model's */

  /* the generation thread and the RGB frames it decoded; the pointer under
   * the object lock (unlock() uses it), the store has a lock of its own */
  GThread *thread;
  GstVditFrames *store;
  gint frames_done;             /* generation thread: of this clip */
  gboolean looping;             /* continuous mode, from start() to stop() */
  guint64 clip;                 /* generation thread: the clip being made */
  gchar *refused_prompt;        /* generation thread: the last prompt refused */
  GstClockTime latency;         /* LATENCY query answer: a frame, raised when late */

  /* generation thread only: the last progress report */
  VditStage stage;
  gint stage_step, stage_steps;

  /* streaming thread; info and convert also under the object lock */
  GstVideoInfo info;
  GstVideoConverter *convert;
  gint n_out;                   /* frames pushed since start */
  GstVditTimeline timeline;     /* the next frame and its timestamps */
};

/* gstvditsrcgen.c: the engine's callbacks and the generation thread */
void gst_vdit_src_on_log (void *user_data, GLogLevelFlags level,
    const char *message);
void gst_vdit_src_on_progress (void *user_data, VditStage stage, int step,
    int steps);
gboolean gst_vdit_src_on_frame (void *user_data, int index, int n_frames,
    const uint8_t * rgb, int width, int height, int stride);
gpointer gst_vdit_src_generate (gpointer data);
/* qdata of a clip's first frame in continuous mode: its vdit-clip structure */
GQuark gst_vdit_src_clip_quark (void);

G_END_DECLS
