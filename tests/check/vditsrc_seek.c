/* gst-check tests of seeking in vditsrc: the clip's frames are kept, so a seek
 * in TIME or DEFAULT (frames) format, forward or in reverse, flushing or as a
 * segment, gives the frames of an unseeked run at their own timestamps. */
#include <gst/check/gstcheck.h>
#include <gst/video/video.h>
#include <string.h>

#include "test_model.h"

#define FRAMES 8
#define PROPS "frames=8 steps=2 seed=3 prompt=\"a blue square moving up\""

typedef struct
{
  GMutex lock;
  GArray *pts;                  /* GstClockTime of each frame since the last flush */
  GPtrArray *sums;              /* their SHA-1 */
  gdouble rate;                 /* of the last segment */
} record;

static GstPadProbeReturn
record_probe (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  record *r = user_data;

  g_mutex_lock (&r->lock);
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER) {
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
    GstClockTime pts = GST_BUFFER_PTS (buf);
    GstMapInfo map;

    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    g_array_append_val (r->pts, pts);
    g_ptr_array_add (r->sums, g_compute_checksum_for_data (G_CHECKSUM_SHA1,
            map.data, map.size));
    gst_buffer_unmap (buf, &map);
  } else {
    GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);

    /* what came before a flush is not the seek's answer */
    if (GST_EVENT_TYPE (event) == GST_EVENT_FLUSH_STOP) {
      g_array_set_size (r->pts, 0);
      g_ptr_array_set_size (r->sums, 0);
    } else if (GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT) {
      const GstSegment *segment;

      gst_event_parse_segment (event, &segment);
      r->rate = segment->rate;
    }
  }
  g_mutex_unlock (&r->lock);
  return GST_PAD_PROBE_OK;
}

typedef struct
{
  GstElement *pipeline;
  GstElement *src;
  GstBus *bus;
  record rec;
} run;

static void
run_init (run * r)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" " PROPS
      " ! video/x-raw,format=RGB ! fakesink name=sink sync=false", model_dir);
  GstElement *sink;
  GstPad *pad;

  r->pipeline = gst_parse_launch (launch, NULL);
  fail_unless (r->pipeline != NULL);
  r->src = gst_bin_get_by_name (GST_BIN (r->pipeline), "src");
  r->bus = gst_element_get_bus (r->pipeline);
  g_mutex_init (&r->rec.lock);
  r->rec.pts = g_array_new (FALSE, FALSE, sizeof (GstClockTime));
  r->rec.sums = g_ptr_array_new_with_free_func (g_free);
  r->rec.rate = 1.0;
  sink = gst_bin_get_by_name (GST_BIN (r->pipeline), "sink");
  pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER |
      GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM | GST_PAD_PROBE_TYPE_EVENT_FLUSH,
      record_probe, &r->rec, NULL);
  gst_object_unref (pad);
  gst_object_unref (sink);
  g_free (launch);
}

static void
run_clear (run * r)
{
  gst_element_set_state (r->pipeline, GST_STATE_NULL);
  g_array_unref (r->rec.pts);
  g_ptr_array_unref (r->rec.sums);
  g_mutex_clear (&r->rec.lock);
  gst_object_unref (r->bus);
  gst_object_unref (r->src);
  gst_object_unref (r->pipeline);
}

static void
run_preroll (run * r)
{
  fail_if (gst_element_set_state (r->pipeline, GST_STATE_PAUSED) ==
      GST_STATE_CHANGE_FAILURE);
  fail_unless_equals_int (gst_element_get_state (r->pipeline, NULL, NULL,
          GST_CLOCK_TIME_NONE), GST_STATE_CHANGE_SUCCESS);
}

/* Plays to the first EOS, SEGMENT_DONE or error; returns its type. */
static GstMessageType
run_play (run * r)
{
  GstMessage *msg;
  GstMessageType type;

  gst_element_set_state (r->pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (r->bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_SEGMENT_DONE | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL, "neither EOS nor an error");
  type = GST_MESSAGE_TYPE (msg);
  if (type == GST_MESSAGE_ERROR) {
    GError *err = NULL;

    gst_message_parse_error (msg, &err, NULL);
    fail ("error: %s", err->message);
  }
  gst_message_unref (msg);
  return type;
}

static GstClockTime
frame_time (gint n)
{
  /* the tiny model's 8/1 */
  return gst_util_uint64_scale_int (n, GST_SECOND, 8);
}

/* The frames of an unseeked run, as checksums. */
static GPtrArray *
reference_frames (void)
{
  run r;
  GPtrArray *sums;

  run_init (&r);
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  fail_unless_equals_int (r.rec.sums->len, FRAMES);
  sums = g_ptr_array_ref (r.rec.sums);
  run_clear (&r);
  return sums;
}

/* The run gave frames first, first ± 1, … (step ±1), `count` of them, with
 * the reference's pixels at their own timestamps. */
static void
expect_frames (run * r, GPtrArray * ref, gint first, gint step, gint count)
{
  g_mutex_lock (&r->rec.lock);
  fail_unless_equals_int (r->rec.pts->len, count);
  for (gint i = 0; i < count; i++) {
    gint n = first + i * step;

    fail_unless_equals_uint64 (g_array_index (r->rec.pts, GstClockTime, i),
        frame_time (n));
    fail_unless_equals_string (g_ptr_array_index (r->rec.sums, i),
        g_ptr_array_index (ref, n));
  }
  g_mutex_unlock (&r->rec.lock);
}

GST_START_TEST (test_seeking_query)
{
  run r;
  GstQuery *query;
  gboolean seekable = FALSE;
  gint64 start = -1, end = -1;

  run_init (&r);
  run_preroll (&r);
  query = gst_query_new_seeking (GST_FORMAT_DEFAULT);
  fail_unless (gst_element_query (r.src, query));
  gst_query_parse_seeking (query, NULL, &seekable, &start, &end);
  fail_unless (seekable);
  fail_unless_equals_int64 (start, 0);
  fail_unless_equals_int64 (end, FRAMES);
  gst_query_unref (query);
  query = gst_query_new_seeking (GST_FORMAT_TIME);
  fail_unless (gst_element_query (r.src, query));
  gst_query_parse_seeking (query, NULL, &seekable, &start, &end);
  fail_unless (seekable);
  fail_unless_equals_uint64 (end, frame_time (FRAMES));
  gst_query_unref (query);
  run_clear (&r);
}

GST_END_TEST;

GST_START_TEST (test_seek_time_forward)
{
  GPtrArray *ref = reference_frames ();
  run r;

  run_init (&r);
  run_preroll (&r);
  /* a time inside frame 5 gives frame 5, stamped at its own start */
  fail_unless (gst_element_seek_simple (r.pipeline, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH, frame_time (5) + GST_MSECOND));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  expect_frames (&r, ref, 5, 1, FRAMES - 5);

  /* and back to the start from the end of the stream */
  fail_unless (gst_element_seek_simple (r.pipeline, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH, 0));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  expect_frames (&r, ref, 0, 1, FRAMES);
  run_clear (&r);
  g_ptr_array_unref (ref);
}

GST_END_TEST;

GST_START_TEST (test_seek_frames_format)
{
  GPtrArray *ref = reference_frames ();
  run r;

  run_init (&r);
  run_preroll (&r);
  fail_unless (gst_element_seek_simple (r.pipeline, GST_FORMAT_DEFAULT,
          GST_SEEK_FLAG_FLUSH, 3));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  expect_frames (&r, ref, 3, 1, FRAMES - 3);
  run_clear (&r);
  g_ptr_array_unref (ref);
}

GST_END_TEST;

GST_START_TEST (test_seek_reverse)
{
  GPtrArray *ref = reference_frames ();
  run r;

  run_init (&r);
  run_preroll (&r);
  /* frames before 0.75 s, the last first */
  fail_unless (gst_element_seek (r.pipeline, -1.0, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_SET,
          frame_time (6)));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  fail_unless_equals_float (r.rec.rate, -1.0);
  expect_frames (&r, ref, 5, -1, 6);

  run_clear (&r);

  /* no stop (the first seek: NONE keeps a previous one): from the clip's end */
  run_init (&r);
  run_preroll (&r);
  fail_unless (gst_element_seek (r.pipeline, -1.0, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, frame_time (4),
          GST_SEEK_TYPE_NONE, GST_CLOCK_TIME_NONE));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  expect_frames (&r, ref, FRAMES - 1, -1, FRAMES - 4);
  run_clear (&r);
  g_ptr_array_unref (ref);
}

GST_END_TEST;

/* A segment seek ends with SEGMENT_DONE, not EOS, after the frames it asked
 * for. */
GST_START_TEST (test_seek_segment)
{
  GPtrArray *ref = reference_frames ();
  run r;

  run_init (&r);
  run_preroll (&r);
  fail_unless (gst_element_seek (r.pipeline, 1.0, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_SEGMENT, GST_SEEK_TYPE_SET,
          frame_time (2), GST_SEEK_TYPE_SET, frame_time (4)));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_SEGMENT_DONE);
  expect_frames (&r, ref, 2, 1, 2);

  /* looping as players do it: a non-flushing segment seek after SEGMENT_DONE */
  g_mutex_lock (&r.rec.lock);
  g_array_set_size (r.rec.pts, 0);
  g_ptr_array_set_size (r.rec.sums, 0);
  g_mutex_unlock (&r.rec.lock);
  fail_unless (gst_element_seek (r.pipeline, 1.0, GST_FORMAT_TIME,
          GST_SEEK_FLAG_SEGMENT, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_SET,
          frame_time (3)));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_SEGMENT_DONE);
  expect_frames (&r, ref, 0, 1, 3);
  run_clear (&r);
  g_ptr_array_unref (ref);
}

GST_END_TEST;

/* A seek sent before the element starts is applied when it does: the
 * streaming thread waits for the generation to reach the frame. */
GST_START_TEST (test_seek_before_generated)
{
  GPtrArray *ref = reference_frames ();
  run r;

  run_init (&r);
  gst_element_set_state (r.pipeline, GST_STATE_READY);
  fail_unless (gst_element_send_event (r.src, gst_event_new_seek (1.0,
              GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET,
              frame_time (6), GST_SEEK_TYPE_NONE, GST_CLOCK_TIME_NONE)));
  fail_unless_equals_int (run_play (&r), GST_MESSAGE_EOS);
  expect_frames (&r, ref, 6, 1, FRAMES - 6);
  run_clear (&r);
  g_ptr_array_unref (ref);
}

GST_END_TEST;

/* A live source is not seekable (its frames are not kept). */
GST_START_TEST (test_live_not_seekable)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" " PROPS
      " is-live=true ! fakesink", model_dir);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstQuery *query = gst_query_new_seeking (GST_FORMAT_TIME);
  gboolean seekable = TRUE;

  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  fail_unless_equals_int (gst_element_get_state (pipeline, NULL, NULL,
          GST_CLOCK_TIME_NONE), GST_STATE_CHANGE_SUCCESS);
  fail_unless (gst_element_query (src, query));
  gst_query_parse_seeking (query, NULL, &seekable, NULL, NULL);
  fail_if (seekable);
  gst_query_unref (query);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (src);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

static Suite *
vditsrc_seek_suite (void)
{
  Suite *s = suite_create ("vditsrc-seek");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_seeking_query);
  tcase_add_test (tc, test_seek_time_forward);
  tcase_add_test (tc, test_seek_frames_format);
  tcase_add_test (tc, test_seek_reverse);
  tcase_add_test (tc, test_seek_segment);
  tcase_add_test (tc, test_seek_before_generated);
  tcase_add_test (tc, test_live_not_seekable);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (vditsrc_seek);
