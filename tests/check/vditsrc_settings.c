/* gst-check tests of when vditsrc reads its properties and how it reports
 * errors: is-live and the default model applied at start, device-used
 * cleared at stop, engine errors in the domains GStreamer's elements use. */
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/check/gstcheck.h>
#include <gst/base/gstbasesrc.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <string.h>
#include <unistd.h>

#include "vdit.h"
#include "gstvditerror.h"
#include "test_model.h"

static void
expect_class (GQuark in_domain, gint in_code, GQuark domain, gint code)
{
  GError *err = g_error_new_literal (in_domain, in_code, "x");
  GQuark got_domain = 0;
  gint got_code = -1;

  gst_vdit_error_classify (err, &got_domain, &got_code);
  fail_unless (got_domain == domain, "%s %d: %s", g_quark_to_string
      (in_domain), in_code, g_quark_to_string (got_domain));
  fail_unless_equals_int (got_code, code);
  g_error_free (err);
}

GST_START_TEST (test_error_classes)
{
  expect_class (VDIT_ERROR, VDIT_ERROR_MISSING, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_NOT_FOUND);
  expect_class (G_IO_ERROR, G_IO_ERROR_NOT_FOUND, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_NOT_FOUND);
  expect_class (G_FILE_ERROR, G_FILE_ERROR_NOENT, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_NOT_FOUND);
  expect_class (G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_READ);
  expect_class (VDIT_ERROR, VDIT_ERROR_FORMAT, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_FAILED);
  expect_class (VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_SETTINGS);
  expect_class (VDIT_ERROR, VDIT_ERROR_NO_DEVICE, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_SETTINGS);
  /* a resource the request needs more of; memory is not storage: never
   * NO_SPACE_LEFT */
  expect_class (VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_FAILED);
  expect_class (VDIT_ERROR, VDIT_ERROR_BACKEND, GST_LIBRARY_ERROR,
      GST_LIBRARY_ERROR_FAILED);
  expect_class (VDIT_ERROR, VDIT_ERROR_NOT_FINITE, GST_LIBRARY_ERROR,
      GST_LIBRARY_ERROR_FAILED);
  /* the element's own errors keep their domain */
  expect_class (GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT, GST_STREAM_ERROR,
      GST_STREAM_ERROR_FORMAT);
}

GST_END_TEST;

static GstElement *
pipeline_new (const gchar * props)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src %s ! fakesink", props);
  GstElement *pipeline = gst_parse_launch (launch, NULL);

  fail_unless (pipeline != NULL, "%s", launch);
  g_free (launch);
  return pipeline;
}

static GstElement *
pipeline_src (GstElement * pipeline)
{
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");

  gst_object_unref (src);       /* the pipeline keeps it */
  return src;
}

/* is-live set while PLAYING changes nothing until the next start (it stalled
 * the pipeline); the next READY → PAUSED is then a live one. */
GST_START_TEST (test_is_live_at_start)
{
  gchar *props = g_strdup_printf ("model=\"%s\" frames=2 steps=1", model_dir);
  GstElement *pipeline = pipeline_new (props);
  GstElement *src = pipeline_src (pipeline);
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;
  gboolean live = FALSE;

  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_PAUSED),
      GST_STATE_CHANGE_ASYNC);
  fail_unless_equals_int (gst_element_get_state (pipeline, NULL, NULL,
          GST_CLOCK_TIME_NONE), GST_STATE_CHANGE_SUCCESS);
  g_object_set (src, "is-live", TRUE, NULL);
  g_object_get (src, "is-live", &live, NULL);
  fail_unless (live, "the property reads back what was set");
  fail_if (gst_base_src_is_live (GST_BASE_SRC (src)), "applied mid-stream");

  /* the stream still ends normally */
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
  gst_message_unref (msg);

  gst_element_set_state (pipeline, GST_STATE_READY);
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_PAUSED),
      GST_STATE_CHANGE_NO_PREROLL);
  fail_unless (gst_base_src_is_live (GST_BASE_SRC (src)));

  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (props);
}

GST_END_TEST;

/* A copy of the test model (links to its files) whose config.json says
 * fps 5: a model the element can only have found through VDIT_MODEL_PATH. */
static gchar *
make_5fps_model (void)
{
  gchar *dir = g_dir_make_tmp ("vditsrc-XXXXXX", NULL);
  gchar *src_config = g_build_filename (model_dir, "config.json", NULL);
  gchar *config = g_build_filename (dir, "config.json", NULL);
  const gchar *links[] = { "model.safetensors", "tokenizer.model" };
  gchar *text = NULL;
  GString *edited;

  fail_unless (g_file_get_contents (src_config, &text, NULL, NULL));
  edited = g_string_new (text);
  fail_unless (g_string_replace (edited, "\"fps\": 8.0", "\"fps\": 5.0",
          1) == 1);
  fail_unless (g_file_set_contents (config, edited->str, -1, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (links); i++) {
    gchar *target = g_build_filename (model_dir, links[i], NULL);
    gchar *link = g_build_filename (dir, links[i], NULL);

    fail_unless (symlink (target, link) == 0);
    g_free (target);
    g_free (link);
  }
  g_string_free (edited, TRUE);
  g_free (text);
  g_free (config);
  g_free (src_config);
  return dir;
}

static void
remove_model (gchar * dir)
{
  const gchar *files[] = { "config.json", "model.safetensors",
    "tokenizer.model"
  };

  for (guint i = 0; i < G_N_ELEMENTS (files); i++) {
    gchar *path = g_build_filename (dir, files[i], NULL);

    g_unlink (path);
    g_free (path);
  }
  g_rmdir (dir);
  g_free (dir);
}

/* model unset: VDIT_MODEL_PATH is read when the element starts, not when the
 * plug-in was loaded or the element made. */
GST_START_TEST (test_model_path_at_start)
{
  gchar *dir = make_5fps_model ();
  gchar *saved = g_strdup (g_getenv ("VDIT_MODEL_PATH"));
  GstHarness *h = gst_harness_new_parse ("vditsrc frames=2 steps=1");
  GstBuffer *buf;

  g_setenv ("VDIT_MODEL_PATH", dir, TRUE);
  gst_harness_play (h);
  buf = gst_harness_pull (h);
  fail_unless (buf != NULL);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), GST_SECOND / 5);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);

  if (saved != NULL)
    g_setenv ("VDIT_MODEL_PATH", saved, TRUE);
  else
    g_unsetenv ("VDIT_MODEL_PATH");
  g_free (saved);
  remove_model (dir);
}

GST_END_TEST;

static void
count_notify (GObject * object, GParamSpec * pspec, gpointer user_data)
{
  g_atomic_int_inc ((gint *) user_data);
}

/* device-used is set (and notified) at start, cleared (and notified) at
 * stop, so it never names the backend of a model no longer loaded. */
GST_START_TEST (test_device_used_cleared)
{
  gchar *props = g_strdup_printf ("model=\"%s\" frames=2 steps=1", model_dir);
  GstElement *pipeline = pipeline_new (props);
  GstElement *src = pipeline_src (pipeline);
  gchar *used = NULL;
  gint notified = 0;

  g_signal_connect (src, "notify::device-used", G_CALLBACK (count_notify),
      &notified);
  gst_element_set_state (pipeline, GST_STATE_PAUSED);
  fail_unless_equals_int (gst_element_get_state (pipeline, NULL, NULL,
          GST_CLOCK_TIME_NONE), GST_STATE_CHANGE_SUCCESS);
  g_object_get (src, "device-used", &used, NULL);
  fail_unless (used != NULL);
  fail_unless_equals_int (g_atomic_int_get (&notified), 1);
  g_free (used);

  gst_element_set_state (pipeline, GST_STATE_READY);
  g_object_get (src, "device-used", &used, NULL);
  fail_unless (used == NULL, "still %s after stop", used);
  fail_unless_equals_int (g_atomic_int_get (&notified), 2);

  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
  g_free (props);
}

GST_END_TEST;

static Suite *
vditsrc_settings_suite (void)
{
  Suite *s = suite_create ("vditsrc-settings");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_error_classes);
  tcase_add_test (tc, test_is_live_at_start);
  tcase_add_test (tc, test_model_path_at_start);
  tcase_add_test (tc, test_device_used_cleared);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (vditsrc_settings);
