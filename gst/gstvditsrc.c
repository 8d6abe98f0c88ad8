/* vditsrc: a GStreamer source that turns a text prompt into video frames
 * computed by the vdit engine.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */

/**
 * SECTION:element-vditsrc
 * @title: vditsrc
 *
 * vditsrc generates a short video from a text prompt with a video diffusion
 * transformer and pushes the frames downstream as raw video, each frame as soon
 * as the engine has decoded it. It produces exactly #GstVditSrc:frames buffers,
 * timestamped from 0 at #GstVditSrc:framerate, then EOS. That rate (else the
 * model's) is the only one offered: put videorate downstream for another.
 * With #GstVditSrc:is-live, timestamps are running times one frame duration
 * apart, from the running time the first frame was produced at.
 *
 * The clip's frames are kept, so it is seekable in TIME and DEFAULT (frames)
 * formats, forwards and in reverse. `vdit:///?prompt=...&seed=3` URIs set the
 * properties (playbin, gst-play-1.0). With #GstVditSrc:loop the element makes
 * clip after clip on one timeline (seed + 1 each, a new prompt from the next
 * clip) and posts a `vdit-clip` element message as each starts.
 *
 * The model is loaded when the element goes from READY to PAUSED, and
 * generation starts right away on a thread of its own. Progress is posted on the
 * bus as element messages named `vdit-progress` with the fields `stage`
 * (`encode-text`, `denoise` or `decode`), `step`, `steps`, `frame` (frames done)
 * and `frames`; the model load is announced with GST_MESSAGE_PROGRESS messages
 * (code `load-model`).
 *
 * Generation parameters are read when the element starts: a change made while
 * PAUSED or PLAYING applies the next time it goes through READY, so a frame is
 * never computed from mixed settings.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 vditsrc prompt="a red circle moving left" ! videoconvert ! autovideosink
 * ]| Generates the model's default number of frames and shows them.
 * |[
 * gst-launch-1.0 -e vditsrc prompt="a blue square moving up" frames=8 seed=7 ! \
 *     videoconvert ! vp8enc ! webmmux ! filesink location=out.webm
 * ]| Encodes 8 generated frames to a WebM file.
 * |[
 * gst-launch-1.0 vditsrc model=/path/to/model device=cuda attention=adaptive \
 *     sparsity=0.8 ! video/x-raw,format=I420 ! fakesink
 * ]| Runs a bigger model on the GPU with adaptive sparse attention.
 */

#include "gstvditsrc.h"
#include "gstvditsrcpriv.h"
#include "gstvditerror.h"
#include "gstvditframes.h"
#include "gstvditmodel.h"
#include "gstvditsrcuri.h"
#include "gstvdittimeline.h"
#include "gstvditmodelcache.h"

#include <gio/gio.h>
#include <gst/video/video.h>
#include <string.h>

#include "vdit.h"

GST_DEBUG_CATEGORY (gst_vdit_src_debug);
#define GST_CAT_DEFAULT gst_vdit_src_debug

#define DEFAULT_PROMPT            "a red circle moving left"
#define DEFAULT_MODEL             NULL
#define DEFAULT_NEGATIVE_PROMPT   NULL
#define DEFAULT_FRAMES            0
#define DEFAULT_STEPS             0
#define DEFAULT_GUIDANCE          VDIT_GUIDANCE_DEFAULT
#define DEFAULT_SEED              0
#define DEFAULT_GPUS              1
#define DEFAULT_DEVICE            VDIT_DEVICE_AUTO
#define DEFAULT_CUDA_DEVICE_ID    -1
#define DEFAULT_ATTENTION         VDIT_ATTENTION_DEFAULT
#define DEFAULT_SPARSITY          -1.0f
#define DEFAULT_FPS_N             0
#define DEFAULT_FPS_D             1
#define DEFAULT_IS_LIVE           FALSE
#define DEFAULT_LOOP              FALSE
#define DEFAULT_DEVICE_USED       NULL

/* Frames decoded ahead of downstream when they are not kept; bounds memory
 * when downstream is slow. */
#define MAX_QUEUED_FRAMES         4
/* A clip is kept whole (and is seekable) up to this many bytes of RGB frames;
 * a bigger one streams through MAX_QUEUED_FRAMES and cannot seek. */
#define MAX_KEPT_BYTES            (G_GUINT64_CONSTANT (1) << 30)

enum
{
  PROP_0,
  PROP_PROMPT,
  PROP_NEGATIVE_PROMPT,
  PROP_MODEL,
  PROP_FRAMES,
  PROP_STEPS,
  PROP_GUIDANCE,
  PROP_SEED,
  PROP_GPUS,
  PROP_DEVICE,
  PROP_CUDA_DEVICE_ID,
  PROP_ATTENTION,
  PROP_SPARSITY,
  PROP_FRAMERATE,
  PROP_IS_LIVE,
  PROP_LOOP,
  PROP_DEVICE_USED,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

#define VDIT_SRC_CAPS GST_VIDEO_CAPS_MAKE ("{ RGB, BGR, RGBA, BGRA, ARGB, " \
    "ABGR, RGBx, BGRx, xRGB, xBGR, I420, YV12, NV12, NV21, Y42B, Y444, " \
    "YUY2, UYVY, GRAY8 }")

static GstStaticPadTemplate gst_vdit_src_template =
GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC,
    GST_PAD_ALWAYS,
    GST_STATIC_CAPS (VDIT_SRC_CAPS));

#define gst_vdit_src_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstVditSrc, gst_vdit_src, GST_TYPE_PUSH_SRC,
    G_IMPLEMENT_INTERFACE (GST_TYPE_URI_HANDLER,
        gst_vdit_src_uri_handler_init));
GST_ELEMENT_REGISTER_DEFINE (vditsrc, "vditsrc", GST_RANK_NONE,
    GST_TYPE_VDIT_SRC);

static void gst_vdit_src_finalize (GObject * object);
static void gst_vdit_src_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_vdit_src_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);

static GstCaps *gst_vdit_src_get_caps (GstBaseSrc * bsrc, GstCaps * filter);
static GstCaps *gst_vdit_src_fixate (GstBaseSrc * bsrc, GstCaps * caps);
static gboolean gst_vdit_src_set_caps (GstBaseSrc * bsrc, GstCaps * caps);
static gboolean gst_vdit_src_decide_allocation (GstBaseSrc * bsrc,
    GstQuery * query);
static gboolean gst_vdit_src_is_seekable (GstBaseSrc * bsrc);
static gboolean gst_vdit_src_do_seek (GstBaseSrc * bsrc, GstSegment * segment);
static gboolean gst_vdit_src_query (GstBaseSrc * bsrc, GstQuery * query);
static void gst_vdit_src_get_times (GstBaseSrc * bsrc, GstBuffer * buffer,
    GstClockTime * start, GstClockTime * end);
static gboolean gst_vdit_src_start (GstBaseSrc * bsrc);
static gboolean gst_vdit_src_stop (GstBaseSrc * bsrc);
static gboolean gst_vdit_src_unlock (GstBaseSrc * bsrc);
static gboolean gst_vdit_src_unlock_stop (GstBaseSrc * bsrc);
static GstStateChangeReturn gst_vdit_src_change_state (GstElement * element,
    GstStateChange transition);
static GstFlowReturn gst_vdit_src_fill (GstPushSrc * psrc, GstBuffer * buffer);

GType
gst_vdit_src_device_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    {VDIT_DEVICE_AUTO, "CUDA when a GPU is present, else the CPU", "auto"},
    {VDIT_DEVICE_CPU, "CPU reference backend", "cpu"},
    {VDIT_DEVICE_CUDA, "CUDA GPU backend", "cuda"},
    {0, NULL, NULL}
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVditSrcDevice", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

GType
gst_vdit_src_attention_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    {VDIT_ATTENTION_DEFAULT, "What the model's config.json says", "default"},
    {VDIT_ATTENTION_FULL, "Dense attention", "full"},
    {VDIT_ATTENTION_TILE, "Tile-sparse k:(T-k) frame masks", "tile"},
    {VDIT_ATTENTION_ADAPTIVE, "Adaptive block-sparse attention", "adaptive"},
    {0, NULL, NULL}
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVditSrcAttention", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

static void
gst_vdit_src_class_init (GstVditSrcClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS (klass);
  GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS (klass);
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
      GST_PARAM_MUTABLE_READY;

  GST_DEBUG_CATEGORY_INIT (gst_vdit_src_debug, "vditsrc", 0,
      "Video diffusion source");

  gobject_class->set_property = gst_vdit_src_set_property;
  gobject_class->get_property = gst_vdit_src_get_property;
  gobject_class->finalize = gst_vdit_src_finalize;

  properties[PROP_PROMPT] =
      g_param_spec_string ("prompt", "Prompt",
          "Text describing the video to generate (read at start; with "
          "loop=true also from the next clip on)", DEFAULT_PROMPT,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING);
  properties[PROP_NEGATIVE_PROMPT] =
      g_param_spec_string ("negative-prompt", "Negative prompt",
          "Text describing what to steer away from (empty = unconditional)",
          DEFAULT_NEGATIVE_PROMPT, rw);
  properties[PROP_MODEL] =
      g_param_spec_string ("model", "Model",
          "Model directory, or the name of an installed model (NULL = the "
          "default model, looked up when the element starts)", DEFAULT_MODEL,
          rw);
  properties[PROP_FRAMES] =
      g_param_spec_int ("frames", "Frames",
          "Number of frames to generate (0 = the model's default)",
          0, G_MAXINT, DEFAULT_FRAMES, rw);
  properties[PROP_STEPS] =
      g_param_spec_int ("steps", "Steps",
          "Sampling steps (0 = the model's default)",
          0, 10000, DEFAULT_STEPS, rw);
  properties[PROP_GUIDANCE] =
      g_param_spec_float ("guidance", "Guidance",
          "Classifier-free guidance scale: 0 to 1 disables guidance, -1 = the "
          "model's default; other values below 0 are refused when the element "
          "starts", VDIT_GUIDANCE_DEFAULT, VDIT_GUIDANCE_MAX, DEFAULT_GUIDANCE,
          rw);
  properties[PROP_SEED] =
      g_param_spec_uint64 ("seed", "Seed",
          "Seed of the initial noise; the same seed gives the same video",
          0, G_MAXUINT64, DEFAULT_SEED, rw);
  properties[PROP_GPUS] =
      g_param_spec_int ("gpus", "GPUs",
          "Number of GPUs to split each step over (sequence parallelism)",
          1, 64, DEFAULT_GPUS, rw);
  properties[PROP_DEVICE] =
      g_param_spec_enum ("device", "Device",
          "Where to run the model", GST_TYPE_VDIT_SRC_DEVICE, DEFAULT_DEVICE,
          rw);
  properties[PROP_CUDA_DEVICE_ID] =
      g_param_spec_int ("cuda-device-id", "CUDA device ID",
          "First CUDA device to use (-1 = auto)",
          -1, G_MAXINT, DEFAULT_CUDA_DEVICE_ID, rw);
  properties[PROP_ATTENTION] =
      g_param_spec_enum ("attention", "Attention",
          "Self-attention policy of the transformer",
          GST_TYPE_VDIT_SRC_ATTENTION, DEFAULT_ATTENTION, rw);
  properties[PROP_SPARSITY] =
      g_param_spec_float ("sparsity", "Sparsity",
          "Target fraction of attention blocks skipped with attention=adaptive "
          "(-1 = the model's default)", -1.0f, 0.99f, DEFAULT_SPARSITY, rw);
  properties[PROP_FRAMERATE] =
      gst_param_spec_fraction ("framerate", "Frame rate",
          "Frame rate of the clip, the only one offered (0/1 = the model's)",
          0, 1, G_MAXINT, 1, DEFAULT_FPS_N, DEFAULT_FPS_D, rw);
  properties[PROP_IS_LIVE] =
      g_param_spec_boolean ("is-live", "Is live",
          "Whether to act as a live source", DEFAULT_IS_LIVE, rw);
  properties[PROP_LOOP] =
      g_param_spec_boolean ("loop", "Loop",
          "Continuous mode: clip after clip on one timeline, never ending; "
          "the seed goes up by one each clip and a changed prompt is used "
          "from the next clip the engine starts", DEFAULT_LOOP, rw);
  properties[PROP_DEVICE_USED] =
      g_param_spec_string ("device-used", "Device used",
          "Backend the running model uses (cpu or cuda), known once started",
          DEFAULT_DEVICE_USED, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (gobject_class, N_PROPS, properties);

  gst_element_class_set_static_metadata (element_class,
      "Video diffusion source", "Source/Video",
      "Generates video from a text prompt with a diffusion transformer",
      "The vdit developers");
  gst_element_class_add_static_pad_template (element_class,
      &gst_vdit_src_template);

  basesrc_class->get_caps = GST_DEBUG_FUNCPTR (gst_vdit_src_get_caps);
  basesrc_class->fixate = GST_DEBUG_FUNCPTR (gst_vdit_src_fixate);
  basesrc_class->set_caps = GST_DEBUG_FUNCPTR (gst_vdit_src_set_caps);
  basesrc_class->decide_allocation =
      GST_DEBUG_FUNCPTR (gst_vdit_src_decide_allocation);
  basesrc_class->is_seekable = GST_DEBUG_FUNCPTR (gst_vdit_src_is_seekable);
  basesrc_class->do_seek = GST_DEBUG_FUNCPTR (gst_vdit_src_do_seek);
  basesrc_class->query = GST_DEBUG_FUNCPTR (gst_vdit_src_query);
  basesrc_class->get_times = GST_DEBUG_FUNCPTR (gst_vdit_src_get_times);
  basesrc_class->start = GST_DEBUG_FUNCPTR (gst_vdit_src_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR (gst_vdit_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR (gst_vdit_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR (gst_vdit_src_unlock_stop);

  pushsrc_class->fill = GST_DEBUG_FUNCPTR (gst_vdit_src_fill);
  element_class->change_state = GST_DEBUG_FUNCPTR (gst_vdit_src_change_state);

  gst_type_mark_as_plugin_api (GST_TYPE_VDIT_SRC_DEVICE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_VDIT_SRC_ATTENTION, 0);
}

static void
gst_vdit_src_init (GstVditSrc * self)
{
  self->prompt = g_strdup (DEFAULT_PROMPT);
  self->negative_prompt = g_strdup (DEFAULT_NEGATIVE_PROMPT);
  self->model = g_strdup (DEFAULT_MODEL);
  self->frames = DEFAULT_FRAMES;
  self->steps = DEFAULT_STEPS;
  self->guidance = DEFAULT_GUIDANCE;
  self->seed = DEFAULT_SEED;
  self->gpus = DEFAULT_GPUS;
  self->device = DEFAULT_DEVICE;
  self->cuda_device_id = DEFAULT_CUDA_DEVICE_ID;
  self->attention = DEFAULT_ATTENTION;
  self->sparsity = DEFAULT_SPARSITY;
  self->fps_n = DEFAULT_FPS_N;
  self->fps_d = DEFAULT_FPS_D;
  self->is_live = DEFAULT_IS_LIVE;
  self->loop = DEFAULT_LOOP;
  self->device_used = g_strdup (DEFAULT_DEVICE_USED);

  gst_video_info_init (&self->info);
  gst_video_info_init (&self->rgb_info);
  self->model_fps_d = 1;
  self->rate_d = 1;
  self->latency = GST_CLOCK_TIME_NONE;

  /* generation is slower than real time: a non-live source stamping from 0 */
  gst_base_src_set_format (GST_BASE_SRC (self), GST_FORMAT_TIME);
  gst_base_src_set_live (GST_BASE_SRC (self), DEFAULT_IS_LIVE);
}

static void
gst_vdit_src_finalize (GObject * object)
{
  GstVditSrc *self = GST_VDIT_SRC (object);

  g_free (self->prompt);
  g_free (self->negative_prompt);
  g_free (self->model);
  g_free (self->device_used);

  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_vdit_src_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstVditSrc *self = GST_VDIT_SRC (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_PROMPT:
      g_free (self->prompt);
      self->prompt = g_value_dup_string (value);
      break;
    case PROP_NEGATIVE_PROMPT:
      g_free (self->negative_prompt);
      self->negative_prompt = g_value_dup_string (value);
      break;
    case PROP_MODEL:
      g_free (self->model);
      self->model = g_value_dup_string (value);
      break;
    case PROP_FRAMES:
      self->frames = g_value_get_int (value);
      break;
    case PROP_STEPS:
      self->steps = g_value_get_int (value);
      break;
    case PROP_GUIDANCE:
      self->guidance = g_value_get_float (value);
      break;
    case PROP_SEED:
      self->seed = g_value_get_uint64 (value);
      break;
    case PROP_GPUS:
      self->gpus = g_value_get_int (value);
      break;
    case PROP_DEVICE:
      self->device = g_value_get_enum (value);
      break;
    case PROP_CUDA_DEVICE_ID:
      self->cuda_device_id = g_value_get_int (value);
      break;
    case PROP_ATTENTION:
      self->attention = g_value_get_enum (value);
      break;
    case PROP_SPARSITY:
      self->sparsity = g_value_get_float (value);
      break;
    case PROP_FRAMERATE:
      self->fps_n = gst_value_get_fraction_numerator (value);
      self->fps_d = gst_value_get_fraction_denominator (value);
      break;
    case PROP_IS_LIVE:
      self->is_live = g_value_get_boolean (value);
      break;
    case PROP_LOOP:
      self->loop = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_vdit_src_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstVditSrc *self = GST_VDIT_SRC (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_PROMPT:
      g_value_set_string (value, self->prompt);
      break;
    case PROP_NEGATIVE_PROMPT:
      g_value_set_string (value, self->negative_prompt);
      break;
    case PROP_MODEL:
      g_value_set_string (value, self->model);
      break;
    case PROP_FRAMES:
      g_value_set_int (value, self->frames);
      break;
    case PROP_STEPS:
      g_value_set_int (value, self->steps);
      break;
    case PROP_GUIDANCE:
      g_value_set_float (value, self->guidance);
      break;
    case PROP_SEED:
      g_value_set_uint64 (value, self->seed);
      break;
    case PROP_GPUS:
      g_value_set_int (value, self->gpus);
      break;
    case PROP_DEVICE:
      g_value_set_enum (value, self->device);
      break;
    case PROP_CUDA_DEVICE_ID:
      g_value_set_int (value, self->cuda_device_id);
      break;
    case PROP_ATTENTION:
      g_value_set_enum (value, self->attention);
      break;
    case PROP_SPARSITY:
      g_value_set_float (value, self->sparsity);
      break;
    case PROP_FRAMERATE:
      gst_value_set_fraction (value, self->fps_n, self->fps_d);
      break;
    case PROP_IS_LIVE:
      g_value_set_boolean (value, self->is_live);
      break;
    case PROP_LOOP:
      g_value_set_boolean (value, self->loop);
      break;
    case PROP_DEVICE_USED:
      g_value_set_string (value, self->device_used);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_vdit_src_post_progress (GstVditSrc * self, GstProgressType type,
    const gchar * code, const gchar * text)
{
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_progress (GST_OBJECT (self), type, code, text));
}

static GstCaps *
gst_vdit_src_get_caps (GstBaseSrc * bsrc, GstCaps * filter)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  GstCaps *caps = gst_pad_get_pad_template_caps (GST_BASE_SRC_PAD (bsrc));

  /* with a model loaded the size is the model's and the rate the clip's (the
   * framerate property, else the model's): another rate would play the clip
   * faster or slower, so videorate downstream converts instead */
  GST_OBJECT_LOCK (self);
  if (self->width > 0) {
    caps = gst_caps_make_writable (caps);
    gst_caps_set_simple (caps, "width", G_TYPE_INT, self->width,
        "height", G_TYPE_INT, self->height,
        "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1,
        "framerate", GST_TYPE_FRACTION, self->rate_n, self->rate_d, NULL);
  }
  GST_OBJECT_UNLOCK (self);

  if (filter != NULL) {
    GstCaps *tmp = gst_caps_intersect_full (filter, caps,
        GST_CAPS_INTERSECT_FIRST);

    gst_caps_unref (caps);
    caps = tmp;
  }
  GST_LOG_OBJECT (self, "caps %" GST_PTR_FORMAT, caps);
  return caps;
}

static GstCaps *
gst_vdit_src_fixate (GstBaseSrc * bsrc, GstCaps * caps)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  GstStructure *s;
  gint width, height, fps_n, fps_d;

  GST_OBJECT_LOCK (self);
  width = self->width > 0 ? self->width : 320;
  height = self->height > 0 ? self->height : 240;
  fps_n = self->rate_n > 0 ? self->rate_n : 30;
  fps_d = self->rate_n > 0 ? self->rate_d : 1;
  GST_OBJECT_UNLOCK (self);

  caps = gst_caps_make_writable (caps);
  s = gst_caps_get_structure (caps, 0);

  gst_structure_fixate_field_nearest_int (s, "width", width);
  gst_structure_fixate_field_nearest_int (s, "height", height);
  if (gst_structure_has_field (s, "framerate"))
    gst_structure_fixate_field_nearest_fraction (s, "framerate", fps_n, fps_d);
  else
    gst_structure_set (s, "framerate", GST_TYPE_FRACTION, fps_n, fps_d, NULL);
  if (gst_structure_has_field (s, "pixel-aspect-ratio"))
    gst_structure_fixate_field_nearest_fraction (s, "pixel-aspect-ratio", 1, 1);
  else
    gst_structure_set (s, "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
  if (gst_structure_has_field (s, "colorimetry"))
    gst_structure_fixate_field_string (s, "colorimetry", "bt601");
  if (gst_structure_has_field (s, "chroma-site"))
    gst_structure_fixate_field_string (s, "chroma-site", "mpeg2");
  if (gst_structure_has_field (s, "interlace-mode"))
    gst_structure_fixate_field_string (s, "interlace-mode", "progressive");
  else
    gst_structure_set (s, "interlace-mode", G_TYPE_STRING, "progressive", NULL);

  return GST_BASE_SRC_CLASS (parent_class)->fixate (bsrc, caps);
}

static gboolean
gst_vdit_src_set_caps (GstBaseSrc * bsrc, GstCaps * caps)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  GstVideoConverter *convert;
  GstVideoInfo info, in_info;

  if (!gst_video_info_from_caps (&info, caps))
    goto invalid_caps;

  GST_OBJECT_LOCK (self);
  if (G_UNLIKELY (self->width == 0 || info.width != self->width ||
          info.height != self->height || info.fps_n <= 0 ||
          info.fps_n != self->rate_n || info.fps_d != self->rate_d))
    goto wrong_size;

  /* the converter wants the same timing on both sides */
  in_info = self->rgb_info;
  GST_VIDEO_INFO_FPS_N (&in_info) = GST_VIDEO_INFO_FPS_N (&info);
  GST_VIDEO_INFO_FPS_D (&in_info) = GST_VIDEO_INFO_FPS_D (&info);
  GST_VIDEO_INFO_PAR_N (&in_info) = GST_VIDEO_INFO_PAR_N (&info);
  GST_VIDEO_INFO_PAR_D (&in_info) = GST_VIDEO_INFO_PAR_D (&info);
  GST_VIDEO_INFO_INTERLACE_MODE (&in_info) =
      GST_VIDEO_INFO_INTERLACE_MODE (&info);

  /* no dithering: the same frames give the same bytes */
  convert = gst_video_converter_new (&in_info, &info,
      gst_structure_new ("GstVideoConverter",
          GST_VIDEO_CONVERTER_OPT_DITHER_METHOD, GST_TYPE_VIDEO_DITHER_METHOD,
          GST_VIDEO_DITHER_NONE, GST_VIDEO_CONVERTER_OPT_THREADS, G_TYPE_UINT,
          1, NULL));
  if (convert == NULL)
    goto no_converter;

  if (self->convert != NULL)
    gst_video_converter_free (self->convert);
  self->convert = convert;
  /* the rate is the clip's (checked above), so only the format changes
   * mid-stream and the timestamps go on from where they were */
  self->info = info;
  GST_OBJECT_UNLOCK (self);

  GST_DEBUG_OBJECT (self, "negotiated %s %dx%d at %d/%d fps",
      gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (&info)), info.width,
      info.height, info.fps_n, info.fps_d);
  return TRUE;

invalid_caps:
  {
    GST_ERROR_OBJECT (self, "invalid caps %" GST_PTR_FORMAT, caps);
    return FALSE;
  }
wrong_size:
  {
    GST_OBJECT_UNLOCK (self);
    GST_ERROR_OBJECT (self, "caps %" GST_PTR_FORMAT " do not match the model",
        caps);
    return FALSE;
  }
no_converter:
  {
    GST_OBJECT_UNLOCK (self);
    GST_ERROR_OBJECT (self, "cannot convert RGB to %" GST_PTR_FORMAT, caps);
    return FALSE;
  }
}

static gboolean
gst_vdit_src_decide_allocation (GstBaseSrc * bsrc, GstQuery * query)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  GstBufferPool *pool = NULL;
  GstStructure *config;
  GstCaps *caps = NULL;
  guint size, min = 0, max = 0;
  gboolean update = FALSE;

  GST_OBJECT_LOCK (self);
  size = GST_VIDEO_INFO_SIZE (&self->info);
  GST_OBJECT_UNLOCK (self);

  if (gst_query_get_n_allocation_pools (query) > 0) {
    gst_query_parse_nth_allocation_pool (query, 0, &pool, &size, &min, &max);
    GST_OBJECT_LOCK (self);
    size = MAX (size, GST_VIDEO_INFO_SIZE (&self->info));
    GST_OBJECT_UNLOCK (self);
    update = TRUE;
  }
  if (pool == NULL)
    pool = gst_video_buffer_pool_new ();

  config = gst_buffer_pool_get_config (pool);
  gst_query_parse_allocation (query, &caps, NULL);
  if (caps != NULL)
    gst_buffer_pool_config_set_params (config, caps, size, min, max);
  if (gst_query_find_allocation_meta (query, GST_VIDEO_META_API_TYPE, NULL)) {
    gst_buffer_pool_config_add_option (config,
        GST_BUFFER_POOL_OPTION_VIDEO_META);
    if (gst_buffer_pool_has_option (pool,
            GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT))
      gst_buffer_pool_config_add_option (config,
          GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT);
  }
  if (!gst_buffer_pool_set_config (pool, config))
    GST_WARNING_OBJECT (self, "pool did not take our configuration");

  if (update)
    gst_query_set_nth_allocation_pool (query, 0, pool, size, min, max);
  else
    gst_query_add_allocation_pool (query, pool, size, min, max);
  gst_object_unref (pool);

  return GST_BASE_SRC_CLASS (parent_class)->decide_allocation (bsrc, query);
}

/* Frame k cannot be computed without the whole generation, but the clip is
 * deterministic and finite: seekable while its frames are kept (not live, not
 * too big). */
static gboolean
gst_vdit_src_is_seekable (GstBaseSrc * bsrc)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  gboolean seekable;

  GST_OBJECT_LOCK (self);
  seekable = self->store != NULL && gst_vdit_frames_keeps (self->store);
  GST_OBJECT_UNLOCK (self);
  return seekable;
}

/* Called under the stream lock (the streaming thread is stopped), also for
 * the initial segment at start. */
static gboolean
gst_vdit_src_do_seek (GstBaseSrc * bsrc, GstSegment * segment)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);

  if (!gst_vdit_timeline_seek (&self->timeline, segment))
    goto refused;
  GST_DEBUG_OBJECT (self, "from frame %" G_GUINT64_FORMAT "%s, segment %"
      GST_SEGMENT_FORMAT, self->timeline.next, self->timeline.reverse ?
      " backwards" : "", segment);
  return TRUE;

refused:
  {
    GST_WARNING_OBJECT (self, "cannot seek to %" GST_SEGMENT_FORMAT, segment);
    return FALSE;
  }
}

static gboolean
gst_vdit_src_query (GstBaseSrc * bsrc, GstQuery * query)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  gboolean res = FALSE;

  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_DURATION:{
      GstFormat format;
      GstClockTime duration;

      gst_query_parse_duration (query, &format, NULL);
      GST_OBJECT_LOCK (self);
      duration = gst_vdit_timeline_duration (&self->timeline);
      if (GST_CLOCK_TIME_IS_VALID (duration) && format == GST_FORMAT_TIME) {
        gst_query_set_duration (query, GST_FORMAT_TIME, duration);
        res = TRUE;
      } else if (GST_CLOCK_TIME_IS_VALID (duration) &&
          format == GST_FORMAT_DEFAULT) {
        gst_query_set_duration (query, GST_FORMAT_DEFAULT,
            self->timeline.n_frames);
        res = TRUE;
      }
      GST_OBJECT_UNLOCK (self);
      if (!res)
        res = GST_BASE_SRC_CLASS (parent_class)->query (bsrc, query);
      break;
    }
    case GST_QUERY_SEEKING:{
      GstFormat format;
      GstClockTime duration;
      gint64 end = -1;

      /* frames (DEFAULT) as well as TIME: seeks in frames are converted */
      gst_query_parse_seeking (query, &format, NULL, NULL, NULL);
      if (format != GST_FORMAT_TIME && format != GST_FORMAT_DEFAULT) {
        res = GST_BASE_SRC_CLASS (parent_class)->query (bsrc, query);
        break;
      }
      GST_OBJECT_LOCK (self);
      duration = gst_vdit_timeline_duration (&self->timeline);
      if (GST_CLOCK_TIME_IS_VALID (duration))
        end = format == GST_FORMAT_TIME ? (gint64) duration :
            (gint64) self->timeline.n_frames;
      GST_OBJECT_UNLOCK (self);
      gst_query_set_seeking (query, format, gst_vdit_src_is_seekable (bsrc), 0,
          end);
      res = TRUE;
      break;
    }
    case GST_QUERY_CONVERT:{
      GstFormat src_fmt, dest_fmt;
      gint64 src_val, dest_val;

      /* frames and time at the clip's rate once started; bytes once
       * negotiated */
      gst_query_parse_convert (query, &src_fmt, &src_val, &dest_fmt, &dest_val);
      GST_OBJECT_LOCK (self);
      res = gst_vdit_timeline_convert (&self->timeline, src_fmt, src_val,
          dest_fmt, &dest_val) || (GST_VIDEO_INFO_FORMAT (&self->info) !=
          GST_VIDEO_FORMAT_UNKNOWN && gst_video_info_convert (&self->info,
              src_fmt, src_val, dest_fmt, &dest_val));
      GST_OBJECT_UNLOCK (self);
      if (res)
        gst_query_set_convert (query, src_fmt, src_val, dest_fmt, dest_val);
      break;
    }
    case GST_QUERY_LATENCY:{
      GstClockTime latency = GST_CLOCK_TIME_NONE;

      /* live: one frame duration, raised (with a LATENCY message) only when a
       * frame turned out later than that; never the raw measured time per
       * frame, which changes at every frame */
      GST_OBJECT_LOCK (self);
      latency = self->latency;
      GST_OBJECT_UNLOCK (self);
      if (GST_CLOCK_TIME_IS_VALID (latency)) {
        gst_query_set_latency (query, gst_base_src_is_live (bsrc), latency,
            GST_CLOCK_TIME_NONE);
        GST_DEBUG_OBJECT (self, "latency %" GST_TIME_FORMAT,
            GST_TIME_ARGS (latency));
        res = TRUE;
      }
      break;
    }
    default:
      res = GST_BASE_SRC_CLASS (parent_class)->query (bsrc, query);
      break;
  }
  return res;
}

static void
gst_vdit_src_get_times (GstBaseSrc * bsrc, GstBuffer * buffer,
    GstClockTime * start, GstClockTime * end)
{
  /* only a live source waits for the clock */
  if (gst_base_src_is_live (bsrc) && GST_BUFFER_PTS_IS_VALID (buffer)) {
    *start = GST_BUFFER_PTS (buffer);
    if (GST_BUFFER_DURATION_IS_VALID (buffer))
      *end = *start + GST_BUFFER_DURATION (buffer);
  } else {
    *start = GST_CLOCK_TIME_NONE;
    *end = GST_CLOCK_TIME_NONE;
  }
}

/* Undoes start(): ends the generation thread and frees the engine. Safe to
 * call on a partly started element. */
static void
gst_vdit_src_reset (GstVditSrc * self)
{
  gboolean had_device;

  GstVditFrames *frames;

  /* the store wakes a generation waiting for room, the engine stops at its
   * next cancel check */
  if (self->store != NULL)
    gst_vdit_frames_close (self->store);
  if (self->ctx != NULL)
    vdit_cancel (self->ctx);
  if (self->thread != NULL) {
    g_thread_join (self->thread);
    self->thread = NULL;
  }

  GST_OBJECT_LOCK (self);
  frames = g_steal_pointer (&self->store);
  self->frames_done = 0;
  self->looping = FALSE;
  self->clip = 0;
  g_clear_pointer (&self->refused_prompt, g_free);
  self->latency = GST_CLOCK_TIME_NONE;
  self->width = self->height = 0;
  self->n_frames = 0;
  self->model_fps_n = 0;
  self->model_fps_d = 1;
  self->rate_n = 0;
  self->rate_d = 1;
  self->n_out = 0;
  gst_vdit_timeline_init (&self->timeline, 0, 1, 0, FALSE);
  gst_video_info_init (&self->info);
  gst_video_info_init (&self->rgb_info);
  if (self->convert != NULL) {
    gst_video_converter_free (self->convert);
    self->convert = NULL;
  }
  GST_OBJECT_UNLOCK (self);

  gst_vdit_frames_free (frames);

  GST_OBJECT_LOCK (self);
  had_device = self->device_used != NULL;
  g_clear_pointer (&self->device_used, g_free);
  GST_OBJECT_UNLOCK (self);
  if (had_device)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_DEVICE_USED]);

  g_clear_pointer (&self->ctx, vdit_ctx_free);
  g_clear_pointer (&self->model_entry, gst_vdit_model_cache_release);
  self->job = NULL;
  g_free ((gchar *) self->gen.prompt);
  g_free ((gchar *) self->gen.negative_prompt);
  vdit_gen_params_init (&self->gen);
}

/* Rank 0 of an mpirun job hands each clip to the ranks serving it (docs/multi-gpu.md). */
static gboolean
gst_vdit_src_join_job (GstVditSrc * self, GError ** err)
{
  const vdit_comm *comm = vdit_comm_process (err);

  if (comm == NULL)
    return FALSE;
  if (vdit_comm_rank (comm) != 0) {
    g_set_error (err, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
        "vditsrc runs on rank 0 of an mpirun job, not rank %d: start the other "
        "ranks with 'vdit worker' (mpirun -np 1 gst-launch-1.0 ... : -np N vdit worker)",
        vdit_comm_rank (comm));
    return FALSE;
  }
  GST_INFO_OBJECT (self, "sharing each clip with %d MPI ranks",
      vdit_comm_size (comm));
  if (!vdit_ctx_set_comm (self->ctx, comm, err))
    return FALSE;
  self->job = vdit_comm_size (comm) > 1 ? comm : NULL;
  return TRUE;
}

static gboolean
gst_vdit_src_start (GstBaseSrc * bsrc)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);
  const vdit_model_info *minfo;
  vdit_ctx_params cparams;
  GError *err = NULL;
  gboolean loaded;
  gchar *prompt, *negative, *name, *path = NULL, *text;
  gint frames, fps_n, fps_d;
  gboolean keep, fits;

  GST_OBJECT_LOCK (self);
  prompt = g_strdup (self->prompt);
  negative = g_strdup (self->negative_prompt);
  name = g_strdup (self->model);
  frames = self->frames;
  vdit_ctx_params_init (&cparams);
  cparams.device = self->device;
  cparams.device_id = self->cuda_device_id;
  cparams.gpus = self->gpus;
  cparams.log = gst_vdit_src_on_log;
  cparams.log_user_data = self;
  vdit_gen_params_init (&self->gen);
  self->gen.steps = self->steps;
  self->gen.guidance = self->guidance;
  self->gen.seed = self->seed;
  self->gen.attention = self->attention;
  self->gen.sparsity = self->sparsity;
  GST_OBJECT_UNLOCK (self);

  if (prompt == NULL || *g_strstrip (prompt) == '\0')
    goto no_prompt;
  /* no model set: the default one, looked up now so that VDIT_MODEL_PATH set
   * after the plug-in was loaded counts */
  if (name != NULL && *name == '\0')
    g_clear_pointer (&name, g_free);
  path = gst_vdit_model_find (name);
  if (path == NULL && name == NULL)
    goto no_model;
  /* a directory, or a config.json alone (random weights: timing a model's shape) */
  if (path == NULL || !(g_file_test (path, G_FILE_TEST_IS_DIR) ||
          (g_str_has_suffix (path, ".json") &&
              g_file_test (path, G_FILE_TEST_IS_REGULAR))))
    goto model_not_found;

  /* refuse an impossible device before loading anything */
  if (!vdit_ctx_params_check (&cparams, NULL, &err))
    goto bad_device;

  text = g_strdup_printf ("Loading model %s", path);
  gst_vdit_src_post_progress (self, GST_PROGRESS_TYPE_START, "load-model",
      text);
  g_free (text);
  /* loaded once per process: another vditsrc on the same model and device
   * shares it */
  self->model_entry = gst_vdit_model_cache_acquire (path, &cparams, &self->ctx,
      &loaded, &err);
  if (self->model_entry == NULL)
    goto load_failed;
  minfo = vdit_model_get_info (gst_vdit_model_entry_get_model
      (self->model_entry));
  if (frames == 0)
    frames = minfo->frames;
  if (!vdit_model_check_frames (gst_vdit_model_entry_get_model
          (self->model_entry), frames, &err))
    goto bad_frames;
  /* started by mpirun as rank 0: the other ranks (vdit worker) share each clip */
  if (vdit_comm_mpi_launched () && !gst_vdit_src_join_job (self, &err))
    goto parallel_failed;

  self->gen.prompt = g_steal_pointer (&prompt);
  self->gen.negative_prompt = g_steal_pointer (&negative);
  self->gen.frames = frames;
  self->gen.progress = gst_vdit_src_on_progress;
  self->gen.on_frame = gst_vdit_src_on_frame;
  self->gen.user_data = self;
  self->stage = VDIT_STAGE_ENCODE_TEXT;
  self->stage_step = self->stage_steps = 0;

  /* every setting, and the memory the clip needs against the host's, before the
   * generation allocates any of it */
  if (!vdit_gen_params_check (self->ctx, &self->gen, &err))
    goto bad_request;

  text = g_strdup_printf ("%s model %s (%" G_GINT64_FORMAT
      " parameters, %dx%d) on %s%s", loaded ? "Loaded" : "Using", minfo->name,
      (gint64) minfo->n_params, minfo->width, minfo->height,
      vdit_ctx_get_device_name (self->ctx),
      loaded ? "" : ", already loaded by another element");
  gst_vdit_src_post_progress (self, GST_PROGRESS_TYPE_COMPLETE, "load-model",
      text);
  GST_INFO_OBJECT (self, "%s", text);
  g_free (text);

  gst_util_double_to_fraction (minfo->fps > 0 ? minfo->fps : 8.0, &fps_n,
      &fps_d);

  GST_OBJECT_LOCK (self);
  self->width = minfo->width;
  self->height = minfo->height;
  self->model_fps_n = fps_n;
  self->model_fps_d = fps_d;
  self->rate_n = self->fps_n > 0 ? self->fps_n : fps_n;
  self->rate_d = self->fps_n > 0 ? self->fps_d : fps_d;
  /* live: frame n is pushed at PTS(0) + n frames, a burst is ready by then */
  self->latency = gst_util_uint64_scale_int (GST_SECOND, self->rate_d,
      self->rate_n);
  self->n_frames = frames;
  gst_video_info_set_format (&self->rgb_info, GST_VIDEO_FORMAT_RGB,
      minfo->width, minfo->height);
  g_free (self->device_used);
  self->device_used = g_strdup (vdit_ctx_get_device_name (self->ctx));
  GST_OBJECT_UNLOCK (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_DEVICE_USED]);

  /* keep the clip's frames (seekable) when they fit; live: stream them;
   * continuous: room for a whole clip, so the next one is made while the
   * current one plays */
  fits = (guint64) frames * GST_VIDEO_INFO_SIZE (&self->rgb_info) <=
      MAX_KEPT_BYTES;
  keep = !gst_base_src_is_live (bsrc) && fits;
  GST_OBJECT_LOCK (self);
  self->looping = self->loop;
  self->clip = 0;
  keep = keep && !self->looping;
  self->store = gst_vdit_frames_new (keep, self->looping && fits ?
      MAX (frames, MAX_QUEUED_FRAMES) : MAX_QUEUED_FRAMES);
  gst_vdit_timeline_init (&self->timeline, self->rate_n, self->rate_d, frames,
      self->looping);
  GST_OBJECT_UNLOCK (self);
  GST_DEBUG_OBJECT (self, "%s the clip's frames", keep ? "keeping" :
      "streaming");

  /* generation starts now, so the first frame is ready as early as possible */
  self->thread = g_thread_try_new ("vditsrc", gst_vdit_src_generate, self,
      &err);
  if (self->thread == NULL)
    goto no_thread;

  g_free (name);
  g_free (path);
  return TRUE;

no_prompt:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("The prompt is empty."),
        ("Set the prompt property to a description of the video."));
    goto failed;
  }
no_model:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No model was found."),
        ("Set the model property, or VDIT_MODEL_PATH to a directory of "
            "models."));
    goto failed;
  }
model_not_found:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("Model \"%s\" does not exist.", name),
        ("Neither a directory nor a model name found in " VDIT_MODELS_DIR
            " or VDIT_MODEL_PATH."));
    goto failed;
  }
bad_device:
  {
    gst_vdit_post_error (self, "Cannot use the requested device", err);
    goto failed;
  }
load_failed:
  {
    /* the model loaded, but no context could be made for it */
    if (g_error_matches (err, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY) ||
        g_error_matches (err, VDIT_ERROR, VDIT_ERROR_NO_DEVICE) ||
        g_error_matches (err, VDIT_ERROR, VDIT_ERROR_BACKEND))
      goto ctx_failed;
    gst_vdit_src_post_progress (self, GST_PROGRESS_TYPE_ERROR, "load-model",
        "Model failed to load");
    gst_vdit_post_error (self, "Could not load the model", err);
    goto failed;
  }
bad_frames:
  {
    gst_vdit_src_post_progress (self, GST_PROGRESS_TYPE_ERROR, "load-model",
        "Invalid frame count");
    gst_vdit_post_error (self, "Invalid number of frames", err);
    goto failed;
  }
ctx_failed:
  {
    gst_vdit_src_post_progress (self, GST_PROGRESS_TYPE_ERROR, "load-model",
        "No backend for the model");
    gst_vdit_post_error (self, g_error_matches (err, VDIT_ERROR,
            VDIT_ERROR_OUT_OF_MEMORY) ? "Not enough memory for the model" :
        "Could not set up the device", err);
    goto failed;
  }
parallel_failed:
  {
    gst_vdit_post_error (self, "Cannot share the clip with the other MPI ranks",
        err);
    goto failed;
  }
bad_request:
  {
    gst_vdit_src_post_progress (self, GST_PROGRESS_TYPE_ERROR, "load-model",
        "The generation cannot run");
    gst_vdit_post_error (self, "Cannot generate this clip", err);
    goto failed;
  }
no_thread:
  {
    GST_ELEMENT_ERROR (self, CORE, THREAD,
        ("Could not start the generation thread: %s", err->message), (NULL));
    goto failed;
  }
failed:
  {
    g_clear_error (&err);
    g_free (prompt);
    g_free (negative);
    g_free (name);
    g_free (path);
    gst_vdit_src_reset (self);
    return FALSE;
  }
}

static gboolean
gst_vdit_src_stop (GstBaseSrc * bsrc)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);

  GST_DEBUG_OBJECT (self, "stopping");
  gst_vdit_src_reset (self);
  return TRUE;
}

/* is-live is GST_PARAM_MUTABLE_READY: the base class learns it as the element
 * leaves READY, before it decides whether to preroll, and never mid-stream. */
static GstStateChangeReturn
gst_vdit_src_change_state (GstElement * element, GstStateChange transition)
{
  GstVditSrc *self = GST_VDIT_SRC (element);

  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    gboolean live;

    GST_OBJECT_LOCK (self);
    live = self->is_live;
    GST_OBJECT_UNLOCK (self);
    gst_base_src_set_live (GST_BASE_SRC (self), live);
  }
  return GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
}

/* Wakes fill(); the generation goes on, stop() is what ends it. */
static gboolean
gst_vdit_src_unlock (GstBaseSrc * bsrc)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);

  GST_DEBUG_OBJECT (self, "unlock");
  GST_OBJECT_LOCK (self);
  if (self->store != NULL)
    gst_vdit_frames_set_flushing (self->store, TRUE);
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_vdit_src_unlock_stop (GstBaseSrc * bsrc)
{
  GstVditSrc *self = GST_VDIT_SRC (bsrc);

  GST_DEBUG_OBJECT (self, "unlock stop");
  GST_OBJECT_LOCK (self);
  if (self->store != NULL)
    gst_vdit_frames_set_flushing (self->store, FALSE);
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

/* The running time now, NONE without a clock. */
static GstClockTime
gst_vdit_src_running_time (GstVditSrc * self)
{
  GstClock *clock = gst_element_get_clock (GST_ELEMENT (self));
  GstClockTime now, base_time;

  if (clock == NULL)
    return GST_CLOCK_TIME_NONE;
  now = gst_clock_get_time (clock);
  base_time = gst_element_get_base_time (GST_ELEMENT (self));
  gst_object_unref (clock);
  return now >= base_time ? now - base_time : 0;
}

/* A live frame was handed over `delay` after its timestamp: when that is more
 * than the latency, raise the latency to the next whole number of frames and
 * post a LATENCY message, so the query answer only changes with one. */
static void
gst_vdit_src_check_latency (GstVditSrc * self, GstClockTime delay)
{
  GstClockTime frame, latency;

  GST_OBJECT_LOCK (self);
  if (!GST_CLOCK_TIME_IS_VALID (self->latency) || delay <= self->latency) {
    GST_OBJECT_UNLOCK (self);
    return;
  }
  frame = gst_util_uint64_scale_int (GST_SECOND, self->info.fps_d,
      self->info.fps_n);
  latency = (delay + frame - 1) / frame * frame;
  self->latency = latency;
  GST_OBJECT_UNLOCK (self);

  GST_INFO_OBJECT (self, "frame %" GST_TIME_FORMAT " late: latency now %"
      GST_TIME_FORMAT, GST_TIME_ARGS (delay), GST_TIME_ARGS (latency));
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_latency (GST_OBJECT (self)));
}

/* The running time a frame was decoded at (its RGB buffer carries the clock
 * time); NONE when that was before PLAYING or without a clock. */
static GstClockTime
gst_vdit_src_ready_time (GstVditSrc * self, GstBuffer * rgb)
{
  GstClockTime ready = GST_BUFFER_PTS (rgb);
  GstClockTime base_time = gst_element_get_base_time (GST_ELEMENT (self));

  if (!GST_CLOCK_TIME_IS_VALID (ready) || ready < base_time)
    return GST_CLOCK_TIME_NONE;
  return ready - base_time;
}

static GstFlowReturn
gst_vdit_src_fill (GstPushSrc * psrc, GstBuffer * buffer)
{
  GstVditSrc *self = GST_VDIT_SRC (psrc);
  GstVideoFrame in_frame, out_frame;
  GstClockTime now = GST_CLOCK_TIME_NONE, ready = GST_CLOCK_TIME_NONE;
  GstBuffer *rgb = NULL;
  GstStructure *clip_info;
  GError *err = NULL;
  guint64 index;

  /* info, convert, the timeline and the store pointer change only in this
   * thread (set_caps, do_seek under the stream lock) or while it is stopped
   * (start, stop), so they are used here without the object lock */
  if (G_UNLIKELY (self->convert == NULL))
    goto not_negotiated;
  if (!gst_vdit_timeline_peek (&self->timeline, &index))
    goto eos;
  /* after a seek before the generation got there, this waits for the frame */
  switch (gst_vdit_frames_get (self->store, index, &rgb, &err)) {
    case GST_VDIT_FRAMES_OK:
      break;
    case GST_VDIT_FRAMES_FLUSHING:
      goto flushing;
    case GST_VDIT_FRAMES_ENDED:
      goto finished;
  }

  clip_info = gst_mini_object_get_qdata (GST_MINI_OBJECT_CAST (rgb),
      gst_vdit_src_clip_quark ());
  if (clip_info != NULL)
    clip_info = gst_structure_copy (clip_info);
  if (!gst_video_frame_map (&in_frame, &self->rgb_info, rgb, GST_MAP_READ))
    goto map_failed;
  if (!gst_video_frame_map (&out_frame, &self->info, buffer, GST_MAP_WRITE)) {
    gst_video_frame_unmap (&in_frame);
    goto map_failed;
  }
  gst_video_converter_frame (self->convert, &in_frame, &out_frame);
  gst_video_frame_unmap (&out_frame);
  gst_video_frame_unmap (&in_frame);

  if (gst_base_src_is_live (GST_BASE_SRC (self))) {
    now = gst_vdit_src_running_time (self);
    ready = gst_vdit_src_ready_time (self, rgb);
  }
  gst_buffer_unref (rgb);
  /* live: frame 0 at the running time the engine produced it (the time it is
   * taken here when that was before PLAYING), then one frame duration per
   * frame, as videotestsrc does: a syncing sink plays a burst of frames at the
   * frame rate */
  if (self->n_out == 0 && GST_CLOCK_TIME_IS_VALID (now))
    gst_vdit_timeline_rebase (&self->timeline, index,
        GST_CLOCK_TIME_IS_VALID (ready) ? MIN (now, ready) : now);
  gst_vdit_timeline_stamp (&self->timeline, buffer, index);
  gst_vdit_timeline_advance (&self->timeline);
  self->n_out++;

  /* live: a frame decoded later than its timestamp plus the latency would be
   * late at a syncing sink; raise the latency to whole frames and say so. One
   * decoded in time that only waited for downstream (a blocking push) is not
   * late. */
  if (GST_CLOCK_TIME_IS_VALID (ready) && ready > GST_BUFFER_PTS (buffer))
    gst_vdit_src_check_latency (self, ready - GST_BUFFER_PTS (buffer));

  /* continuous mode: a clip starts with this frame */
  if (clip_info != NULL) {
    gst_structure_set (clip_info, "timestamp", G_TYPE_UINT64,
        GST_BUFFER_PTS (buffer), "frame", G_TYPE_UINT64, index, NULL);
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_element (GST_OBJECT (self), clip_info));
  }

  GST_LOG_OBJECT (self, "frame %" G_GUINT64_FORMAT " pts %" GST_TIME_FORMAT,
      index, GST_TIME_ARGS (GST_BUFFER_PTS (buffer)));
  return GST_FLOW_OK;

not_negotiated:
  {
    return GST_FLOW_NOT_NEGOTIATED;
  }
eos:
  {
    GST_DEBUG_OBJECT (self, "end of the clip after %d frames", self->n_out);
    return GST_FLOW_EOS;
  }
flushing:
  {
    GST_DEBUG_OBJECT (self, "flushing");
    return GST_FLOW_FLUSHING;
  }
map_failed:
  {
    gst_buffer_unref (rgb);
    if (clip_info != NULL)
      gst_structure_free (clip_info);
    GST_ELEMENT_ERROR (self, CORE, FAILED, ("Could not map a video frame."),
        (NULL));
    return GST_FLOW_ERROR;
  }
finished:
  {
    if (err == NULL) {
      /* the engine ended early without an error: end the stream honestly */
      GST_WARNING_OBJECT (self, "the engine gave no frame %" G_GUINT64_FORMAT
          " of %d", index, self->n_frames);
      return GST_FLOW_EOS;
    }
    if (g_error_matches (err, VDIT_ERROR, VDIT_ERROR_CANCELLED)) {
      g_error_free (err);
      return GST_FLOW_FLUSHING;
    }
    gst_vdit_post_error (self, g_error_matches (err, VDIT_ERROR,
            VDIT_ERROR_OUT_OF_MEMORY) ? "Ran out of memory while generating" :
        "Generation failed", err);
    g_error_free (err);
    return GST_FLOW_ERROR;
  }
}
