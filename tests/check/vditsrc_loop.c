/* gst-check tests of vditsrc's continuous mode (loop=true): clip after clip
 * on one timeline, the seed going up by one, a changed prompt taken at a clip
 * boundary, a `vdit-clip` element message as each clip starts. */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <string.h>

#include "test_model.h"

#define PROMPT_A "a red circle moving left"
#define PROMPT_B "a blue square moving up"
#define CLIP 2                  /* frames of a clip */
#define CLIPS 8                 /* clips pulled */

static GstHarness *
harness_new (const gchar * props)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" frames=%d steps=1 %s",
      model_dir, CLIP, props);
  GstHarness *h = gst_harness_new_parse (launch);

  gst_harness_set_sink_caps_str (h, "video/x-raw,format=RGB");
  g_free (launch);
  return h;
}

static gchar *
checksum (GstBuffer * buf)
{
  GstMapInfo map;
  gchar *sum;

  fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
  sum = g_compute_checksum_for_data (G_CHECKSUM_SHA1, map.data, map.size);
  gst_buffer_unmap (buf, &map);
  return sum;
}

/* The frames of a single clip made on its own. */
static GPtrArray *
single_clip (const gchar * prompt, guint64 seed)
{
  gchar *props = g_strdup_printf ("seed=%" G_GUINT64_FORMAT " prompt=\"%s\"",
      seed, prompt);
  GstHarness *h = harness_new (props);
  GPtrArray *sums = g_ptr_array_new_with_free_func (g_free);

  gst_harness_play (h);
  for (gint i = 0; i < CLIP; i++) {
    GstBuffer *buf = gst_harness_pull (h);

    g_ptr_array_add (sums, checksum (buf));
    gst_buffer_unref (buf);
  }
  gst_harness_teardown (h);
  g_free (props);
  return sums;
}

typedef struct
{
  gint clips;                   /* vdit-clip messages seen */
  gint switched;                /* the first clip with PROMPT_B, -1: none yet */
} clip_watch;

/* Checks the vdit-clip messages on the bus so far. */
static void
check_clip_messages (GstBus * bus, clip_watch * w, guint64 base_seed)
{
  GstMessage *msg;

  while ((msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT)) != NULL) {
    const GstStructure *s = gst_message_get_structure (msg);
    guint64 clip, seed, timestamp, start_frame;
    const gchar *prompt;

    if (gst_structure_has_name (s, "vdit-clip")) {
      fail_unless (gst_structure_get (s, "clip", G_TYPE_UINT64, &clip,
              "seed", G_TYPE_UINT64, &seed, "timestamp", G_TYPE_UINT64,
              &timestamp, "frame", G_TYPE_UINT64, &start_frame, NULL));
      prompt = gst_structure_get_string (s, "prompt");
      GST_INFO ("clip %" G_GUINT64_FORMAT " at %" GST_TIME_FORMAT ": %s",
          clip, GST_TIME_ARGS (timestamp), prompt);
      fail_unless_equals_uint64 (clip, w->clips);
      fail_unless_equals_uint64 (seed, base_seed + clip);
      fail_unless_equals_uint64 (start_frame, clip * CLIP);
      fail_unless_equals_uint64 (timestamp, clip * CLIP * GST_SECOND / 8);
      /* the prompt changes once, at a boundary, and stays */
      if (w->switched < 0 && g_str_equal (prompt, PROMPT_B))
        w->switched = w->clips;
      fail_unless_equals_string (prompt, w->switched < 0 ? PROMPT_A :
          PROMPT_B);
      w->clips++;
    }
    gst_message_unref (msg);
  }
}

/* Frames until a clip with the new prompt has been pulled whole: the source
 * runs ahead of the pulls, so the change shows a number of clips later that
 * depends on the machine. */
#define MAX_FRAMES 1000

GST_START_TEST (test_loop_prompt_change)
{
  GstHarness *h = harness_new ("loop=true seed=5 prompt=\"" PROMPT_A "\"");
  GstElement *src = gst_harness_find_element (h, "vditsrc");
  GstBus *bus = gst_bus_new ();
  GPtrArray *sums = g_ptr_array_new_with_free_func (g_free);
  GstClockTime frame = GST_SECOND / 8, expected_pts = 0;
  clip_watch w = { 0, -1 };
  GstQuery *query;
  gboolean seekable = TRUE;
  gint switched;

  gst_element_set_bus (h->element, bus);
  gst_harness_play (h);
  for (gint i = 0; i < MAX_FRAMES; i++) {
    GstBuffer *buf = gst_harness_pull (h);

    fail_unless (buf != NULL);
    /* one timeline: each frame starts where the last ended, no gap, no
     * overlap, across clip boundaries and the prompt change */
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), expected_pts);
    fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), frame);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), i);
    expected_pts += GST_BUFFER_DURATION (buf);
    g_ptr_array_add (sums, checksum (buf));
    gst_buffer_unref (buf);
    if (i == CLIP - 1)
      g_object_set (src, "prompt", PROMPT_B, NULL);
    /* the message of a clip is posted before its first frame is pushed */
    check_clip_messages (bus, &w, 5);
    if (i >= CLIP * CLIPS && w.switched >= 0 &&
        i + 1 >= (w.switched + 1) * CLIP)
      break;
  }
  switched = w.switched;
  fail_unless (switched >= 1, "no clip with the new prompt");
  fail_unless (sums->len >= (guint) (switched + 1) * CLIP);

  /* endless and not seekable */
  query = gst_query_new_seeking (GST_FORMAT_TIME);
  fail_unless (gst_element_query (src, query));
  gst_query_parse_seeking (query, NULL, &seekable, NULL, NULL);
  fail_if (seekable);
  gst_query_unref (query);

  /* each clip is the clip its prompt and seed make on their own */
  {
    GPtrArray *clip_a = single_clip (PROMPT_A, 5);
    GPtrArray *changed = single_clip (PROMPT_B, 5 + switched);

    for (gint i = 0; i < CLIP; i++) {
      fail_unless_equals_string (g_ptr_array_index (sums, i),
          g_ptr_array_index (clip_a, i));
      fail_unless_equals_string (g_ptr_array_index (sums, switched * CLIP + i),
          g_ptr_array_index (changed, i));
    }
    g_ptr_array_unref (clip_a);
    g_ptr_array_unref (changed);
  }

  /* messages posted while stopping would keep the bin alive through the bus */
  gst_bus_set_flushing (bus, TRUE);
  gst_harness_teardown (h);
  gst_object_unref (src);
  gst_object_unref (bus);
  g_ptr_array_unref (sums);
}

GST_END_TEST;

/* An empty prompt set while looping is one WARNING; the clips go on with the
 * last prompt, without a gap. */
GST_START_TEST (test_loop_refused_prompt)
{
  GstHarness *h = harness_new ("loop=true prompt=\"" PROMPT_A "\"");
  GstElement *src = gst_harness_find_element (h, "vditsrc");
  GstBus *bus = gst_bus_new ();
  GstClockTime expected_pts = 0;
  gint warnings = 0, clips = 0;
  GstMessage *msg;

  gst_element_set_bus (h->element, bus);
  gst_harness_play (h);
  for (gint i = 0; i < CLIP * CLIPS; i++) {
    GstBuffer *buf = gst_harness_pull (h);

    fail_unless (buf != NULL);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), expected_pts);
    expected_pts += GST_BUFFER_DURATION (buf);
    gst_buffer_unref (buf);
    if (i == 0)
      g_object_set (src, "prompt", "   ", NULL);
  }
  while ((msg = gst_bus_pop (bus)) != NULL) {
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_WARNING)
      warnings++;
    fail_if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR);
    if (gst_message_has_name (msg, "vdit-clip")) {
      fail_unless_equals_string (gst_structure_get_string
          (gst_message_get_structure (msg), "prompt"), PROMPT_A);
      clips++;
    }
    gst_message_unref (msg);
  }
  fail_unless_equals_int (warnings, 1);
  fail_unless (clips >= CLIPS, "%d clips", clips);

  gst_bus_set_flushing (bus, TRUE);
  gst_harness_teardown (h);
  gst_object_unref (src);
  gst_object_unref (bus);
}

GST_END_TEST;

/* A live continuous stream: frames one duration apart from the first, across
 * clips. */
GST_START_TEST (test_loop_live)
{
  GstHarness *h = harness_new ("loop=true is-live=true");
  GstClockTime pts0 = GST_CLOCK_TIME_NONE;

  gst_harness_use_systemclock (h);
  gst_harness_play (h);
  for (gint i = 0; i < 3 * CLIP; i++) {
    GstBuffer *buf = gst_harness_pull (h);

    if (i == 0)
      pts0 = GST_BUFFER_PTS (buf);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), pts0 + i * GST_SECOND /
        8);
    gst_buffer_unref (buf);
  }
  gst_harness_teardown (h);
}

GST_END_TEST;

static Suite *
vditsrc_loop_suite (void)
{
  Suite *s = suite_create ("vditsrc-loop");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_loop_prompt_change);
  tcase_add_test (tc, test_loop_refused_prompt);
  tcase_add_test (tc, test_loop_live);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (vditsrc_loop);
