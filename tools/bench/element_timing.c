/* Times a pipeline that ends in a sink named "sink": the time from the PLAYING request
 * to the first buffer at the sink (time to first frame) and the frame rate after it,
 * printed as one JSON line:
 *
 *   vdit-element-timing 'vditsrc model=models/default device=cuda ! fakesink name=sink'
 *   {"bench":"element","pipeline":"…","frames":8,"first_frame_ms":…,"fps":…,"total_ms":…}
 *
 * fps is (frames − 1) over the time between the first and the last buffer, so a clip
 * that arrives in one burst after generating reports the burst's rate; total_ms runs to
 * EOS. Exit status 1 on a pipeline error (printed), 2 on bad usage. */
#include <gst/gst.h>
#include <stdio.h>

typedef struct {
  gint64 start_us;
  gint64 first_us, last_us;
  guint frames;
} timing;

static GstPadProbeReturn
on_buffer (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  timing *t = data;
  const gint64 now = g_get_monotonic_time ();
  if (t->frames++ == 0)
    t->first_us = now;
  t->last_us = now;
  return GST_PAD_PROBE_OK;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  if (argc != 2) {
    fprintf (stderr, "usage: %s 'PIPELINE ending in a sink named sink'\n", argv[0]);
    return 2;
  }
  GError *error = NULL;
  GstElement *pipeline = gst_parse_launch (argv[1], &error);
  if (pipeline == NULL) {
    fprintf (stderr, "vdit-element-timing: %s\n", error->message);
    g_clear_error (&error);
    return 2;
  }
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  if (sink == NULL) {
    fprintf (stderr, "vdit-element-timing: the pipeline has no element named \"sink\"\n");
    gst_object_unref (pipeline);
    return 2;
  }
  timing t = { 0 };
  GstPad *pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, &t, NULL);
  gst_object_unref (pad);
  gst_object_unref (sink);

  t.start_us = g_get_monotonic_time ();
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
                                                GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  const gint64 end_us = g_get_monotonic_time ();
  int status = 0;
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    gchar *debug = NULL;
    gst_message_parse_error (msg, &error, &debug);
    fprintf (stderr, "vdit-element-timing: %s (%s)\n", error->message, debug ? debug : "");
    g_clear_error (&error);
    g_free (debug);
    status = 1;
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
  if (status != 0)
    return status;

  GString *line = g_string_new ("{\"bench\":\"element\",\"pipeline\":\"");
  for (const char *p = argv[1]; *p; p++) {
    if (*p == '"' || *p == '\\')
      g_string_append_c (line, '\\');
    if ((unsigned char) *p >= 0x20)
      g_string_append_c (line, *p);
  }
  g_string_append_printf (line, "\",\"frames\":%u", t.frames);
  if (t.frames > 0)
    g_string_append_printf (line, ",\"first_frame_ms\":%.1f", (t.first_us - t.start_us) / 1e3);
  if (t.frames > 1 && t.last_us > t.first_us)
    g_string_append_printf (line, ",\"fps\":%.2f",
                            (t.frames - 1) / ((t.last_us - t.first_us) / 1e6));
  g_string_append_printf (line, ",\"total_ms\":%.1f}", (end_us - t.start_us) / 1e3);
  puts (line->str);
  g_string_free (line, TRUE);
  return 0;
}
