/* gst-check tests of the vditsrc element with the shipped tiny model.
 *
 * The model is $VDIT_TEST_MODEL, else $VDIT_SOURCE_ROOT/models/tiny. */
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <string.h>
#include <unistd.h>

#include "vdit.h"
#include "test_model.h"

#define PROMPT "a red circle moving left"


/* A harness around vditsrc with the test model and `props` applied. */
static GstHarness *
harness_new (const gchar * props, const gchar * sink_caps)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" %s", model_dir,
      props);
  GstHarness *h = gst_harness_new_parse (launch);

  g_free (launch);
  if (sink_caps != NULL)
    gst_harness_set_sink_caps_str (h, sink_caps);
  return h;
}

/* Pulls every frame up to EOS, checking timestamps; returns their checksums. */
static GPtrArray *
pull_all (GstHarness * h, gint expected)
{
  GPtrArray *sums = g_ptr_array_new_with_free_func (g_free);
  GstClockTime last_end = 0;
  GstBuffer *buf = NULL;

  while (gst_harness_pull_until_eos (h, &buf) && buf != NULL) {
    GstMapInfo map;

    fail_unless (GST_BUFFER_PTS_IS_VALID (buf));
    fail_unless (GST_BUFFER_DURATION_IS_VALID (buf));
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), last_end);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), sums->len);
    last_end = GST_BUFFER_PTS (buf) + GST_BUFFER_DURATION (buf);

    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    g_ptr_array_add (sums, g_compute_checksum_for_data (G_CHECKSUM_SHA1,
            map.data, map.size));
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
    buf = NULL;
  }
  fail_unless (buf == NULL, "stream ended without EOS");
  if (expected >= 0)
    fail_unless_equals_int (sums->len, expected);
  return sums;
}

/* The harness wraps a parsed element in a bin: this is vditsrc itself. */
static GstElement *
harness_src (GstHarness * h)
{
  GstElement *src = gst_harness_find_element (h, "vditsrc");

  fail_unless (src != NULL);
  gst_object_unref (src);       /* the harness keeps it alive */
  return src;
}

static GPtrArray *
generate (const gchar * props)
{
  GstHarness *h = harness_new (props, "video/x-raw,format=RGB");
  GPtrArray *sums;

  gst_harness_play (h);
  sums = pull_all (h, -1);
  gst_harness_teardown (h);
  return sums;
}

static gboolean
sums_equal (GPtrArray * a, GPtrArray * b)
{
  if (a->len != b->len)
    return FALSE;
  for (guint i = 0; i < a->len; i++) {
    if (strcmp (g_ptr_array_index (a, i), g_ptr_array_index (b, i)) != 0)
      return FALSE;
  }
  return TRUE;
}

GST_START_TEST (test_properties)
{
  static const gchar *const names[] = { "prompt", "negative-prompt", "model",
    "frames", "steps", "guidance", "seed", "gpus", "device", "cuda-device-id",
    "attention", "sparsity", "framerate", "is-live", "loop", "device-used",
    NULL
  };
  GstElement *src = gst_element_factory_make ("vditsrc", NULL);
  gchar *model = NULL, *device_used = NULL;

  fail_unless (src != NULL);
  for (guint i = 0; names[i] != NULL; i++) {
    GParamSpec *spec = g_object_class_find_property (G_OBJECT_GET_CLASS (src),
        names[i]);

    fail_unless (spec != NULL, "no property %s", names[i]);
    /* every writable one is read when the element starts; the prompt also
     * at each clip boundary in continuous mode */
    if (g_str_equal (names[i], "prompt"))
      fail_unless (spec->flags & GST_PARAM_MUTABLE_PLAYING);
    else if (spec->flags & G_PARAM_WRITABLE)
      fail_unless (spec->flags & GST_PARAM_MUTABLE_READY, "%s", names[i]);
  }

  /* no machine path in the default: the model is looked up at start */
  g_object_get (src, "model", &model, "device-used", &device_used, NULL);
  fail_unless (model == NULL, "%s", model);
  fail_unless (device_used == NULL);

  gst_object_unref (src);
  g_free (model);
}

GST_END_TEST;

GST_START_TEST (test_frames_then_eos)
{
  static const gchar *const formats[] = { "RGB", "RGBA", "BGRx", "I420" };

  for (guint i = 0; i < G_N_ELEMENTS (formats); i++) {
    gchar *caps_str = g_strdup_printf ("video/x-raw,format=%s", formats[i]);
    GstHarness *h = harness_new ("frames=8 seed=3 prompt=\"" PROMPT "\"",
        caps_str);
    GPtrArray *sums;
    GstCaps *caps;
    GstVideoInfo info;
    gint64 duration;
    gchar *device_used = NULL;

    gst_harness_play (h);
    sums = pull_all (h, 8);

    caps = gst_pad_get_current_caps (h->sinkpad);
    fail_unless (caps != NULL);
    fail_unless (gst_video_info_from_caps (&info, caps));
    fail_unless_equals_string (gst_video_format_to_string
        (GST_VIDEO_INFO_FORMAT (&info)), formats[i]);
    fail_unless (info.fps_n > 0);
    fail_unless (gst_element_query_duration (h->element, GST_FORMAT_TIME,
            &duration));
    fail_unless_equals_uint64 (duration,
        gst_util_uint64_scale_int_round (8 * GST_SECOND, info.fps_d,
            info.fps_n));

    g_object_get (harness_src (h), "device-used", &device_used, NULL);
    fail_unless (device_used != NULL);
    fail_unless (g_str_equal (device_used, "cpu")
        || g_str_equal (device_used, "cuda"));

    g_free (device_used);
    gst_caps_unref (caps);
    g_ptr_array_unref (sums);
    gst_harness_teardown (h);
    g_free (caps_str);
  }
}

GST_END_TEST;

/* Downstream that supports GstVideoMeta gets it on every buffer. */
GST_START_TEST (test_video_meta)
{
  GstHarness *h = harness_new ("frames=2", "video/x-raw,format=I420");
  GstBuffer *buf;
  GstVideoMeta *meta;

  gst_harness_add_propose_allocation_meta (h, GST_VIDEO_META_API_TYPE, NULL);
  gst_harness_play (h);
  buf = gst_harness_pull (h);
  meta = gst_buffer_get_video_meta (buf);
  fail_unless (meta != NULL);
  fail_unless_equals_int (meta->format, GST_VIDEO_FORMAT_I420);
  fail_unless_equals_int (meta->n_planes, 3);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_framerate_property)
{
  GstHarness *h = harness_new ("frames=2 framerate=25/1", NULL);
  GstBuffer *buf;

  gst_harness_play (h);
  buf = gst_harness_pull (h);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), 0);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), GST_SECOND / 25);
  gst_buffer_unref (buf);
  buf = gst_harness_pull (h);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), GST_SECOND / 25);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_same_seed_same_frames)
{
  GPtrArray *a = generate ("frames=4 seed=42 prompt=\"" PROMPT "\"");
  GPtrArray *b = generate ("frames=4 seed=42 prompt=\"" PROMPT "\"");

  fail_unless_equals_int (a->len, 4);
  fail_unless (sums_equal (a, b), "same seed, different frames");
  g_ptr_array_unref (a);
  g_ptr_array_unref (b);
}

GST_END_TEST;

GST_START_TEST (test_different_prompts_differ)
{
  GPtrArray *a = generate ("frames=4 seed=42 prompt=\"a red circle moving "
      "left\"");
  GPtrArray *b = generate ("frames=4 seed=42 prompt=\"a blue square moving "
      "up\"");

  fail_unless_equals_int (a->len, 4);
  fail_if (sums_equal (a, b), "different prompts, same frames");
  g_ptr_array_unref (a);
  g_ptr_array_unref (b);
}

GST_END_TEST;

/* Every attention policy renders the full clip; the tile mask changes the result. */
GST_START_TEST (test_attention_policies)
{
  GPtrArray *full = generate ("frames=8 seed=3 attention=full prompt=\"" PROMPT "\"");
  GPtrArray *tile = generate ("frames=8 seed=3 attention=tile prompt=\"" PROMPT "\"");
  GPtrArray *adaptive = generate ("frames=8 seed=3 attention=adaptive sparsity=0.5 "
      "prompt=\"" PROMPT "\"");

  fail_unless_equals_int (full->len, 8);
  fail_unless_equals_int (tile->len, 8);
  fail_unless_equals_int (adaptive->len, 8);
  fail_if (sums_equal (full, tile), "tile attention gave the dense result");
  g_ptr_array_unref (full);
  g_ptr_array_unref (tile);
  g_ptr_array_unref (adaptive);
}

GST_END_TEST;

/* A change while generating applies to the next run, never to this one. */
GST_START_TEST (test_change_while_playing)
{
  GPtrArray *ref = generate ("frames=4 seed=5 prompt=\"" PROMPT "\"");
  GstHarness *h = harness_new ("frames=4 seed=5 prompt=\"" PROMPT "\"",
      "video/x-raw,format=RGB");
  GPtrArray *sums;

  gst_harness_play (h);
  g_object_set (harness_src (h), "prompt", "a green triangle", "seed",
      (guint64) 9, "frames", 2, NULL);
  sums = pull_all (h, 4);
  fail_unless (sums_equal (ref, sums));
  g_ptr_array_unref (sums);
  g_ptr_array_unref (ref);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* Runs `launch` to the first error or EOS; checks the error's domain and
 * code (-1: any code in the domain). */
static void
expect_error (const gchar * launch, GQuark domain, gint code)
{
  GError *parse_error = NULL;
  GstElement *pipeline = gst_parse_launch (launch, &parse_error);
  GstBus *bus;
  GstMessage *msg;
  GError *err = NULL;
  gchar *debug = NULL;

  fail_unless (pipeline != NULL, "%s", parse_error ? parse_error->message : "");
  bus = gst_element_get_bus (pipeline);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL, "no error or EOS from %s", launch);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "error");
  gst_message_parse_error (msg, &err, &debug);
  GST_INFO ("%s: %s (%s)", launch, err->message, debug);
  fail_unless (g_str_equal (GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), "src"),
      "error from %s", GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)));
  fail_unless (err->domain == domain, "%s: domain %s", err->message,
      g_quark_to_string (err->domain));
  if (code >= 0)
    fail_unless_equals_int (err->code, code);
  fail_unless (err->message != NULL && *err->message != '\0');

  g_error_free (err);
  g_free (debug);
  gst_message_unref (msg);
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
}

static void
expect_src_error (const gchar * props, GQuark domain, gint code)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src %s ! fakesink", props);

  expect_error (launch, domain, code);
  g_free (launch);
}

GST_START_TEST (test_error_missing_model)
{
  expect_src_error ("model=/nonexistent/vdit/model", GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_NOT_FOUND);
  expect_src_error ("model=no-such-model-name", GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_NOT_FOUND);
}

GST_END_TEST;

GST_START_TEST (test_error_malformed_model)
{
  gchar *dir = g_dir_make_tmp ("vditsrc-XXXXXX", NULL);
  gchar *config = g_build_filename (dir, "config.json", NULL);
  gchar *props;

  fail_unless (dir != NULL);
  fail_unless (g_file_set_contents (config, "{ \"format\": \"vdit\", ", -1,
          NULL));
  props = g_strdup_printf ("model=\"%s\"", dir);
  expect_src_error (props, GST_RESOURCE_ERROR, -1);

  /* a config without weights next to it */
  fail_unless (g_file_set_contents (config, "{ \"format\": \"vdit\" }", -1,
          NULL));
  expect_src_error (props, GST_RESOURCE_ERROR, -1);

  g_unlink (config);
  g_rmdir (dir);
  g_free (props);
  g_free (config);
  g_free (dir);
}

GST_END_TEST;

GST_START_TEST (test_error_bad_values)
{
  vdit_model *model = vdit_model_load (model_dir, NULL);
  const vdit_model_info *info;
  gchar *props;

  fail_unless (model != NULL);
  info = vdit_model_get_info (model);

  /* one frame past a valid count is invalid whenever counts are constrained */
  if (info->frame_multiple > 1) {
    props = g_strdup_printf ("model=\"%s\" frames=%d", model_dir,
        info->frame_offset + info->frame_multiple + 1);
    expect_src_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
    g_free (props);
  }

  props = g_strdup_printf ("model=\"%s\" prompt=\"\"", model_dir);
  expect_src_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
  g_free (props);

  props = g_strdup_printf ("model=\"%s\" prompt=\"   \"", model_dir);
  expect_src_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
  g_free (props);

  /* more GPUs than any test machine has */
  props = g_strdup_printf ("model=\"%s\" gpus=64", model_dir);
  expect_src_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
  g_free (props);

  vdit_model_free (model);
}

GST_END_TEST;

GST_START_TEST (test_error_cuda_without_gpu)
{
  gchar *props;

  if (vdit_cuda_available (NULL)) {
    GST_INFO ("a GPU is present: nothing to test");
    return;
  }
  props = g_strdup_printf ("model=\"%s\" device=cuda", model_dir);
  expect_src_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
  g_free (props);
}

GST_END_TEST;

/* `props` are refused when the element starts: the state change fails at once (no
 * thread is started), with an element error of domain/code whose message contains
 * `needle`. */
static void
expect_start_error (const gchar * props, GQuark domain, gint code,
    const gchar * needle)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src %s ! fakesink", props);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstBus *bus;
  GstMessage *msg;
  GError *err = NULL;
  gchar *debug = NULL;

  fail_unless (pipeline != NULL);
  bus = gst_element_get_bus (pipeline);
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_PAUSED),
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL, "no error from %s", launch);
  gst_message_parse_error (msg, &err, &debug);
  GST_INFO ("%s: %s (%s)", launch, err->message, debug);
  fail_unless (err->domain == domain, "%s: domain %s", err->message,
      g_quark_to_string (err->domain));
  fail_unless_equals_int (err->code, code);
  fail_unless (strstr (err->message, needle) != NULL,
      "\"%s\" does not mention \"%s\"", err->message, needle);
  /* the engine's message in the debug string, at the element's call site */
  fail_unless (debug != NULL && strstr (debug, needle) != NULL, "%s", debug);
  fail_unless (strstr (debug, "gstvditsrc.c") != NULL, "%s", debug);

  g_error_free (err);
  g_free (debug);
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (launch);
}

/* guidance: -1 is the model's default, 0 to 100 a scale; the property range stops
 * what lies outside, start() what lies between -1 and 0. */
GST_START_TEST (test_error_guidance)
{
  GstElement *src = gst_element_factory_make ("vditsrc", NULL);
  GParamSpecFloat *spec = G_PARAM_SPEC_FLOAT (g_object_class_find_property
      (G_OBJECT_GET_CLASS (src), "guidance"));
  gchar *props;

  fail_unless_equals_float (spec->minimum, -1.0f);
  fail_unless_equals_float (spec->maximum, 100.0f);
  fail_unless_equals_float (spec->default_value, -1.0f);
  gst_object_unref (src);

  props = g_strdup_printf ("model=\"%s\" guidance=-0.5", model_dir);
  expect_start_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "guidance = -0.5");
  g_free (props);
}

GST_END_TEST;

/* A request far beyond the host's memory is an element error with the engine's
 * numbers when the element starts, not a failed negotiation or an abort. */
GST_START_TEST (test_error_memory)
{
  gchar *dir = g_dir_make_tmp ("vditsrc-XXXXXX", NULL);
  gchar *src_config = g_build_filename (model_dir, "config.json", NULL);
  gchar *config = g_build_filename (dir, "config.json", NULL);
  const gchar *links[] = { "model.safetensors", "tokenizer.model" };
  gchar *text = NULL, *props;
  GString *edited;

  fail_unless (g_file_get_contents (src_config, &text, NULL, NULL));
  edited = g_string_new (text);
  fail_unless (g_string_replace (edited, "\"height\": 16", "\"height\": 8192",
          1) == 1);
  fail_unless (g_string_replace (edited, "\"width\": 16", "\"width\": 8192",
          1) == 1);
  fail_unless (g_file_set_contents (config, edited->str, -1, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (links); i++) {
    gchar *target = g_build_filename (model_dir, links[i], NULL);
    gchar *link = g_build_filename (dir, links[i], NULL);

    fail_unless (symlink (target, link) == 0);
    g_free (target);
    g_free (link);
  }

  props = g_strdup_printf ("model=\"%s\" frames=4096", dir);
  expect_start_error (props, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED,
      "GiB");

  for (guint i = 0; i < G_N_ELEMENTS (links); i++) {
    gchar *link = g_build_filename (dir, links[i], NULL);

    g_unlink (link);
    g_free (link);
  }
  g_unlink (config);
  g_rmdir (dir);
  g_string_free (edited, TRUE);
  g_free (props);
  g_free (text);
  g_free (config);
  g_free (src_config);
  g_free (dir);
}

GST_END_TEST;

typedef struct
{
  GMutex lock;
  GCond cond;
  gboolean denoising;
} stop_watch;

static GstBusSyncReply
note_encoded (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  stop_watch *w = user_data;
  const GstStructure *s = gst_message_get_structure (msg);
  gint step = 0, steps = -1;

  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT &&
      gst_structure_has_name (s, "vdit-progress") &&
      g_str_equal (gst_structure_get_string (s, "stage"), "encode-text") &&
      gst_structure_get (s, "step", G_TYPE_INT, &step, "steps", G_TYPE_INT,
          &steps, NULL) && step == steps) {
    g_mutex_lock (&w->lock);
    w->denoising = TRUE;
    g_cond_signal (&w->cond);
    g_mutex_unlock (&w->lock);
  }
  return GST_BUS_PASS;
}

/* Going to NULL in the middle of a long transformer block (4096 frames of the tiny
 * model: seconds per block on the CPU) returns within a bounded time. */
#define STOP_LATENCY_BOUND_MS 1000

GST_START_TEST (test_stop_latency)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" frames=4096 steps=1 "
      "device=cpu ! fakesink", model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstBus *bus = gst_element_get_bus (pipeline);
  stop_watch w;
  gint64 t0, ms;

  g_mutex_init (&w.lock);
  g_cond_init (&w.cond);
  w.denoising = FALSE;
  gst_bus_set_sync_handler (bus, note_encoded, &w, NULL);
  fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE);
  g_mutex_lock (&w.lock);
  while (!w.denoising)
    g_cond_wait (&w.cond, &w.lock);
  g_mutex_unlock (&w.lock);
  g_usleep (300 * 1000);        /* inside the first transformer block */

  t0 = g_get_monotonic_time ();
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  ms = (g_get_monotonic_time () - t0) / 1000;
  GST_INFO ("state change to NULL took %" G_GINT64_FORMAT " ms", ms);
  fail_unless (ms < STOP_LATENCY_BOUND_MS, "stop took %" G_GINT64_FORMAT
      " ms", ms);

  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  g_mutex_clear (&w.lock);
  g_cond_clear (&w.cond);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

static GstPadProbeReturn
count_buffer (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  GstClockTime *last = user_data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);

  fail_unless (GST_BUFFER_PTS_IS_VALID (buf));
  fail_unless (!GST_CLOCK_TIME_IS_VALID (*last) || GST_BUFFER_PTS (buf) > *last);
  *last = GST_BUFFER_PTS (buf);
  return GST_PAD_PROBE_OK;
}

/* A live source still gives every frame, with increasing timestamps. */
GST_START_TEST (test_live)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" frames=4 "
      "is-live=true ! fakesink name=sink sync=true", model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstPad *pad = gst_element_get_static_pad (sink, "sink");
  GstClockTime last = GST_CLOCK_TIME_NONE;
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;

  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, &last,
      NULL);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
  gst_message_unref (msg);
  fail_unless (GST_CLOCK_TIME_IS_VALID (last));

  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

/* Progress messages reach the bus and count frames up to the total. */
GST_START_TEST (test_progress_messages)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" frames=4 ! fakesink",
      model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstBus *bus = gst_element_get_bus (pipeline);
  gboolean loaded = FALSE, saw_denoise = FALSE;
  gint last_frame = 0;

  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  for (;;) {
    GstMessage *msg = gst_bus_timed_pop (bus, 60 * GST_SECOND);
    const GstStructure *s;

    fail_unless (msg != NULL);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS) {
      gst_message_unref (msg);
      break;
    }
    fail_if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_PROGRESS) {
      GstProgressType type;
      gchar *code = NULL, *text = NULL;

      gst_message_parse_progress (msg, &type, &code, &text);
      fail_unless_equals_string (code, "load-model");
      if (type == GST_PROGRESS_TYPE_COMPLETE)
        loaded = TRUE;
      g_free (code);
      g_free (text);
    }
    s = gst_message_get_structure (msg);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT &&
        gst_structure_has_name (s, "vdit-progress")) {
      gint frame = -1, frames = -1, step = -1, steps = -1;
      const gchar *stage = gst_structure_get_string (s, "stage");

      fail_unless (stage != NULL);
      fail_unless (gst_structure_get (s, "frame", G_TYPE_INT, &frame,
              "frames", G_TYPE_INT, &frames, "step", G_TYPE_INT, &step,
              "steps", G_TYPE_INT, &steps, NULL));
      fail_unless_equals_int (frames, 4);
      fail_unless (frame >= last_frame && frame <= frames);
      fail_unless (step >= 0 && step <= steps);
      if (g_str_equal (stage, "denoise"))
        saw_denoise = TRUE;
      last_frame = frame;
    }
    gst_message_unref (msg);
  }
  fail_unless (loaded);
  fail_unless (saw_denoise);
  fail_unless_equals_int (last_frame, 4);

  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

static GstBusSyncReply
note_step (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  gint *steps_seen = user_data;

  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT &&
      gst_message_has_name (msg, "vdit-progress"))
    g_atomic_int_inc (steps_seen);
  return GST_BUS_PASS;
}

/* Stopping in the middle of a generation, again and again: no deadlock, no
 * thread left behind, every state change completes. */
GST_START_TEST (test_start_stop_cycles)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" ! "
      "fakesink sync=false", model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstBus *bus = gst_element_get_bus (pipeline);
  gint steps_seen = 0;

  gst_bus_set_sync_handler (bus, note_step, &steps_seen, NULL);
  for (gint i = 0; i < 50; i++) {
    GstStateChangeReturn ret;
    gint64 deadline = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

    /* mostly long denoising; every third run short, to stop while pushing */
    g_object_set (src, "steps", i % 3 == 2 ? 1 : 50, NULL);
    g_atomic_int_set (&steps_seen, 0);
    ret = gst_element_set_state (pipeline, GST_STATE_PLAYING);
    fail_if (ret == GST_STATE_CHANGE_FAILURE, "cycle %d", i);

    /* stop at varied points: at once, or after a few progress reports */
    while (g_atomic_int_get (&steps_seen) < i % 5 &&
        g_get_monotonic_time () < deadline)
      g_usleep (200);
    if (i % 3 == 1)
      g_usleep (1000 * (i % 7));

    ret = gst_element_set_state (pipeline, i % 4 == 3 ? GST_STATE_READY :
        GST_STATE_NULL);
    fail_unless_equals_int (ret, GST_STATE_CHANGE_SUCCESS);
    ret = gst_element_set_state (pipeline, GST_STATE_NULL);
    fail_unless_equals_int (ret, GST_STATE_CHANGE_SUCCESS);
  }
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_object_unref (bus);
  gst_object_unref (src);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

typedef struct
{
  GstElement *capsfilter;       /* switched to 25/1 after two frames */
  guint n;
  GstClockTime first, last_end;
  gboolean contiguous;          /* each PTS is the previous frame's end */
  gboolean monotonic;
  gint fps_n, fps_d;            /* the source's caps at the last frame */
} ts_watch;

static GstPadProbeReturn
watch_timestamps (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  ts_watch *w = user_data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstCaps *caps = gst_pad_get_current_caps (pad);
  GstStructure *s = gst_caps_get_structure (caps, 0);

  fail_unless (GST_BUFFER_PTS_IS_VALID (buf));
  fail_unless (GST_BUFFER_DURATION_IS_VALID (buf));
  if (w->n == 0)
    w->first = GST_BUFFER_PTS (buf);
  else {
    if (GST_BUFFER_PTS (buf) != w->last_end)
      w->contiguous = FALSE;
    if (GST_BUFFER_PTS (buf) < w->last_end)
      w->monotonic = FALSE;
  }
  GST_INFO ("frame %u pts %" GST_TIME_FORMAT " duration %" GST_TIME_FORMAT,
      w->n, GST_TIME_ARGS (GST_BUFFER_PTS (buf)),
      GST_TIME_ARGS (GST_BUFFER_DURATION (buf)));
  w->last_end = GST_BUFFER_PTS (buf) + GST_BUFFER_DURATION (buf);
  fail_unless (gst_structure_get_fraction (s, "framerate", &w->fps_n,
          &w->fps_d));
  gst_caps_unref (caps);
  if (++w->n == 2 && w->capsfilter != NULL) {
    GstCaps *to = gst_caps_from_string ("video/x-raw,framerate=25/1");

    g_object_set (w->capsfilter, "caps", to, NULL);
    gst_caps_unref (to);
  }
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn
count_out (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  g_atomic_int_inc ((gint *) user_data);
  return GST_PAD_PROBE_OK;
}

/* Runs `launch` (vditsrc named src) to EOS, watching the timestamps vditsrc
 * pushes in `w`; a capsfilter named cf is switched to 25/1 after two frames;
 * `out` (if not NULL) counts the buffers reaching the element named sink. */
static void
run_to_eos (const gchar * launch, ts_watch * w, gint * out)
{
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstPad *pad = gst_element_get_static_pad (src, "src");
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;

  fail_unless (pipeline != NULL, "%s", launch);
  w->capsfilter = gst_bin_get_by_name (GST_BIN (pipeline), "cf");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, watch_timestamps, w,
      NULL);
  if (out != NULL) {
    GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
    GstPad *sinkpad = gst_element_get_static_pad (sink, "sink");

    gst_pad_add_probe (sinkpad, GST_PAD_PROBE_TYPE_BUFFER, count_out, out,
        NULL);
    gst_object_unref (sinkpad);
    gst_object_unref (sink);
  }
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  if (w->capsfilter != NULL)
    gst_object_unref (w->capsfilter);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (src);
  gst_object_unref (pipeline);
}

/* Live: frame 0 at the running time it was produced, then exactly one frame
 * duration per frame, whatever the pipeline latency, so a syncing sink plays a
 * burst at the frame rate (it was stamped with the clock after each push). */
GST_START_TEST (test_live_timestamps)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" frames=4 "
      "is-live=true ! fakesink name=sink sync=true", model_dir);
  ts_watch w = { NULL, 0, 0, 0, TRUE, TRUE, 0, 1 };

  run_to_eos (launch, &w, NULL);
  fail_unless_equals_int (w.n, 4);
  fail_unless (w.contiguous, "live frames not spaced by the frame duration");
  fail_unless_equals_uint64 (w.last_end - w.first,
      gst_util_uint64_scale_int (4 * GST_SECOND, w.fps_d, w.fps_n));
  g_free (launch);
}

GST_END_TEST;

static GstBusSyncReply
count_latency (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  /* only vditsrc's own (the bin may post some too) */
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_LATENCY &&
      g_str_equal (GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), "src"))
    g_atomic_int_inc ((gint *) user_data);
  return GST_BUS_PASS;
}

static GstClockTime
query_latency (GstElement * src)
{
  GstQuery *query = gst_query_new_latency ();
  GstClockTime min = GST_CLOCK_TIME_NONE, max = 0;
  gboolean live = FALSE;

  fail_unless (gst_element_query (src, query));
  gst_query_parse_latency (query, &live, &min, &max);
  fail_unless (live);
  gst_query_unref (query);
  return min;
}

/* Live latency: at least one frame, and the answer never changes without a
 * LATENCY message (it was the measured time per frame, new at every frame). */
GST_START_TEST (test_live_latency)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" frames=4 "
      "framerate=1000/1 is-live=true ! fakesink sync=true", model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstPad *pad = gst_element_get_static_pad (src, "src");
  GstBus *bus = gst_element_get_bus (pipeline);
  GstClockTime before, after;
  GstMessage *msg;
  gint posted = 0;

  gst_bus_set_sync_handler (bus, count_latency, &posted, NULL);
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_PAUSED),
      GST_STATE_CHANGE_NO_PREROLL);
  for (gint i = 0; i < 500 && !gst_pad_has_current_caps (pad); i++)
    g_usleep (10 * 1000);
  before = query_latency (src);
  fail_unless (before >= GST_MSECOND);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
  gst_message_unref (msg);
  after = query_latency (src);
  GST_INFO ("latency %" GST_TIME_FORMAT " then %" GST_TIME_FORMAT ", %d "
      "LATENCY messages", GST_TIME_ARGS (before), GST_TIME_ARGS (after),
      g_atomic_int_get (&posted));
  fail_unless (after == before || g_atomic_int_get (&posted) > 0,
      "latency changed without a LATENCY message");

  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (src);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

typedef struct
{
  GstElement *pipeline;
  GArray *rendered;             /* clock time each frame was rendered at */
} render_watch;

static void
note_render (GstElement * sink, GstBuffer * buf, GstPad * pad,
    gpointer user_data)
{
  render_watch *w = user_data;
  GstClock *clock = gst_element_get_clock (w->pipeline);
  GstClockTime now = gst_clock_get_time (clock);

  g_array_append_val (w->rendered, now);
  gst_object_unref (clock);
}

/* Live, behind a syncing sink with a processing deadline of 500 ms: the
 * frames are rendered one frame duration apart (they were 625 ms apart when
 * each was stamped with the clock after the previous push). The clip is
 * decoded in one burst well before it plays, so the spacing is the sink's
 * clock waits, not the generation's pace. */
GST_START_TEST (test_live_spacing_with_deadline)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" frames=6 "
      "steps=1 is-live=true ! fakesink name=sink sync=true "
      "processing-deadline=500000000 signal-handoffs=true", model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstBus *bus = gst_element_get_bus (pipeline);
  render_watch w = { pipeline, g_array_new (FALSE, FALSE,
          sizeof (GstClockTime)) };
  GstClockTime frame = GST_SECOND / 8, t0 = GST_CLOCK_TIME_NONE;
  GstMessage *msg;

  g_signal_connect (sink, "handoff", G_CALLBACK (note_render), &w);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
  gst_message_unref (msg);
  /* decoded in time: a push blocked by the sink is not a late frame, so the
   * latency stays one frame */
  fail_unless_equals_uint64 (query_latency (src), frame);
  gst_element_set_state (pipeline, GST_STATE_NULL);

  /* frame i is rendered at t0 + i × 125 ms: measured from the least delayed
   * frame, so that one late wake-up of a loaded machine counts once; the
   * frames were 625 ms apart */
  fail_unless_equals_int (w.rendered->len, 6);
  for (guint i = 0; i < w.rendered->len; i++) {
    GstClockTime t = g_array_index (w.rendered, GstClockTime, i) - i * frame;

    t0 = MIN (t0, t);
  }
  for (guint i = 0; i < w.rendered->len; i++) {
    GstClockTime late = g_array_index (w.rendered, GstClockTime, i) -
        i * frame - t0;

    GST_INFO ("frame %u rendered %" GST_TIME_FORMAT " after its slot", i,
        GST_TIME_ARGS (late));
    fail_unless (late < 150 * GST_MSECOND, "frame %u rendered %"
        GST_TIME_FORMAT " after its slot", i, GST_TIME_ARGS (late));
  }

  g_array_unref (w.rendered);
  gst_object_unref (bus);
  gst_object_unref (sink);
  gst_object_unref (src);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

/* Downstream asks for 25/1 in the middle of the stream: the source's
 * timestamps go on forward (they restarted from n × 40 ms). */
GST_START_TEST (test_renegotiate_monotonic)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" frames=8 ! "
      "videorate ! capsfilter name=cf caps=video/x-raw,framerate=8/1 ! "
      "fakesink sync=false", model_dir);
  ts_watch w = { NULL, 0, 0, 0, TRUE, TRUE, 0, 1 };

  run_to_eos (launch, &w, NULL);
  fail_unless_equals_int (w.n, 8);
  fail_unless (w.monotonic, "timestamps went backwards");
  g_free (launch);
}

GST_END_TEST;

/* The source offers only the clip's rate: videorate makes 30/1 out of the
 * tiny model's 8/1 (the source itself output 30/1, 3.75x too fast). */
GST_START_TEST (test_videorate_converts)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" frames=8 ! "
      "videorate ! video/x-raw,framerate=30/1 ! fakesink name=sink "
      "sync=false", model_dir);
  ts_watch w = { NULL, 0, 0, 0, TRUE, TRUE, 0, 1 };
  gint out = 0;

  run_to_eos (launch, &w, &out);
  fail_unless_equals_int (w.n, 8);
  fail_unless_equals_int (w.fps_n, 8);
  fail_unless_equals_int (w.fps_d, 1);
  fail_unless_equals_uint64 (w.last_end, GST_SECOND);
  /* about one second at 30/1 (videorate stops at the last frame's start);
   * 8 when the source itself ran at 30/1 */
  fail_unless (out >= 26 && out <= 31, "%d frames out", out);
  g_free (launch);
}

GST_END_TEST;

static Suite *
vditsrc_suite (void)
{
  Suite *s = suite_create ("vditsrc");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_properties);
  tcase_add_test (tc, test_frames_then_eos);
  tcase_add_test (tc, test_video_meta);
  tcase_add_test (tc, test_framerate_property);
  tcase_add_test (tc, test_same_seed_same_frames);
  tcase_add_test (tc, test_different_prompts_differ);
  tcase_add_test (tc, test_attention_policies);
  tcase_add_test (tc, test_change_while_playing);
  tcase_add_test (tc, test_error_missing_model);
  tcase_add_test (tc, test_error_malformed_model);
  tcase_add_test (tc, test_error_bad_values);
  tcase_add_test (tc, test_error_cuda_without_gpu);
  tcase_add_test (tc, test_error_guidance);
  tcase_add_test (tc, test_error_memory);
  tcase_add_test (tc, test_stop_latency);
  tcase_add_test (tc, test_live);
  tcase_add_test (tc, test_live_timestamps);
  tcase_add_test (tc, test_live_latency);
  tcase_add_test (tc, test_live_spacing_with_deadline);
  tcase_add_test (tc, test_renegotiate_monotonic);
  tcase_add_test (tc, test_videorate_converts);
  tcase_add_test (tc, test_progress_messages);
  tcase_add_test (tc, test_start_stop_cycles);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (vditsrc);
