/* gst-check tests of vditsrc's vdit:// URI handler, alone and through
 * playbin. */
#include <gst/check/gstcheck.h>
#include <string.h>

#include "test_model.h"

static GstElement *
from_uri (const gchar * uri)
{
  GError *err = NULL;
  GstElement *src = gst_element_make_from_uri (GST_URI_SRC, uri, NULL, &err);

  fail_unless (src != NULL, "%s: %s", uri, err ? err->message : "");
  fail_unless_equals_string (GST_OBJECT_NAME (gst_element_get_factory (src)),
      "vditsrc");
  return src;
}

static gchar *
enum_nick (GObject * object, const gchar * name)
{
  gint value;
  GParamSpec *spec = g_object_class_find_property (G_OBJECT_GET_CLASS (object),
      name);

  g_object_get (object, name, &value, NULL);
  return g_strdup (g_enum_get_value (G_PARAM_SPEC_ENUM (spec)->enum_class,
          value)->value_nick);
}

GST_START_TEST (test_uri_sets_properties)
{
  GstElement *src = from_uri ("vdit:///?prompt=a%20red%20circle&seed=3"
      "&frames=4&device=cpu&framerate=25/1&is-live=true&guidance=2.5");
  GstElement *again;
  gchar *prompt = NULL, *device, *uri, *uri_again;
  guint64 seed = 0;
  gint frames = 0, fps_n = 0, fps_d = 0;
  gboolean live = FALSE;
  gfloat guidance = 0;

  g_object_get (src, "prompt", &prompt, "seed", &seed, "frames", &frames,
      "framerate", &fps_n, &fps_d, "is-live", &live, "guidance", &guidance,
      NULL);
  device = enum_nick (G_OBJECT (src), "device");
  fail_unless_equals_string (prompt, "a red circle");
  fail_unless_equals_uint64 (seed, 3);
  fail_unless_equals_int (frames, 4);
  fail_unless_equals_string (device, "cpu");
  fail_unless_equals_int (fps_n, 25);
  fail_unless_equals_int (fps_d, 1);
  fail_unless (live);
  fail_unless_equals_float (guidance, 2.5f);

  /* the URI it gives back makes the same element */
  uri = gst_uri_handler_get_uri (GST_URI_HANDLER (src));
  GST_INFO ("uri %s", uri);
  fail_unless (g_str_has_prefix (uri, "vdit:///?"), "%s", uri);
  again = from_uri (uri);
  uri_again = gst_uri_handler_get_uri (GST_URI_HANDLER (again));
  fail_unless_equals_string (uri_again, uri);

  /* a new URI describes the whole clip: what it leaves out is the default */
  fail_unless (gst_uri_handler_set_uri (GST_URI_HANDLER (src),
          "vdit:///?prompt=a+blue+square", NULL));
  g_free (prompt);
  g_object_get (src, "prompt", &prompt, "seed", &seed, "frames", &frames,
      NULL);
  fail_unless_equals_string (prompt, "a blue square");
  fail_unless_equals_uint64 (seed, 0);
  fail_unless_equals_int (frames, 0);

  g_free (uri);
  g_free (uri_again);
  g_free (device);
  g_free (prompt);
  gst_object_unref (again);
  gst_object_unref (src);
}

GST_END_TEST;

static void
expect_bad_uri (GstElement * src, const gchar * uri, const gchar * needle)
{
  GError *err = NULL;
  gchar *prompt = NULL;

  fail_if (gst_uri_handler_set_uri (GST_URI_HANDLER (src), uri, &err), "%s",
      uri);
  fail_unless (err != NULL);
  GST_INFO ("%s: %s", uri, err->message);
  fail_unless (err->domain == GST_URI_ERROR);
  fail_unless (strstr (err->message, needle) != NULL, "%s", err->message);
  /* nothing was applied */
  g_object_get (src, "prompt", &prompt, NULL);
  fail_unless_equals_string (prompt, "kept");
  g_free (prompt);
  g_error_free (err);
}

GST_START_TEST (test_uri_errors)
{
  GstElement *src = from_uri ("vdit:///?prompt=kept");

  expect_bad_uri (src, "vdit:///?prompt=x&colour=red", "colour");
  expect_bad_uri (src, "vdit:///?prompt=x&seed=abc", "seed");
  expect_bad_uri (src, "vdit:///?prompt=x&steps=99999999", "steps");
  expect_bad_uri (src, "vdit:///?prompt=x&device=tpu", "device");
  expect_bad_uri (src, "vdit:///?prompt=x&device-used=cpu", "device-used");
  expect_bad_uri (src, "vdit://somehost/?prompt=x", "vdit:///?");
  expect_bad_uri (src, "vdit:///clip?prompt=x", "vdit:///?");
  gst_object_unref (src);
}

GST_END_TEST;

static GstPadProbeReturn
count_frames (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  g_atomic_int_inc ((gint *) user_data);
  return GST_PAD_PROBE_OK;
}

/* playbin finds vditsrc from the URI and plays the clip to EOS. */
GST_START_TEST (test_uri_playbin)
{
  GstElement *playbin = gst_element_factory_make ("playbin", NULL);
  GstElement *vsink = gst_element_factory_make ("fakesink", NULL);
  GstElement *asink = gst_element_factory_make ("fakesink", NULL);
  GstPad *pad = gst_element_get_static_pad (vsink, "sink");
  gchar *model = g_uri_escape_string (model_dir, "/", TRUE);
  gchar *uri = g_strdup_printf ("vdit:///?prompt=a%%20red%%20circle&seed=3"
      "&frames=2&steps=1&model=%s", model);
  GstBus *bus;
  GstMessage *msg;
  gint frames = 0;

  if (playbin == NULL) {
    GST_WARNING ("no playbin in the system plug-ins: skipped");
    return;
  }
  fail_unless (vsink != NULL && asink != NULL);
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_frames, &frames,
      NULL);
  g_object_set (playbin, "uri", uri, "video-sink", vsink, "audio-sink", asink,
      NULL);
  bus = gst_element_get_bus (playbin);
  gst_element_set_state (playbin, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *err = NULL;
    gchar *debug = NULL;

    gst_message_parse_error (msg, &err, &debug);
    fail ("%s (%s)", err->message, debug);
  }
  gst_message_unref (msg);
  fail_unless_equals_int (g_atomic_int_get (&frames), 2);

  gst_element_set_state (playbin, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (playbin);
  g_free (uri);
  g_free (model);
}

GST_END_TEST;

static Suite *
vditsrc_uri_suite (void)
{
  Suite *s = suite_create ("vditsrc-uri");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_uri_sets_properties);
  tcase_add_test (tc, test_uri_errors);
  tcase_add_test (tc, test_uri_playbin);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (vditsrc_uri);
