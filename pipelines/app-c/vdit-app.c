/* vdit-app: embeds vditsrc in an application.
 *
 * Builds "vditsrc ! video/x-raw,format=RGB ! appsink", draws a progress bar from
 * the element's "vdit-progress" messages, takes each frame from the appsink as it
 * arrives and, with --output-dir, writes it as a binary PPM image.
 *
 *   vdit-app --prompt "a red circle moving left" --frames 8 --output-dir out/
 */
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct
{
  GMainLoop *loop;
  const gchar *output_dir;
  gint frames_received;
  gboolean failed;
} App;

/* Writes one RGB frame as a PPM file; rows may be padded (stride). */
static gboolean
write_ppm (const gchar * path, GstVideoFrame * frame)
{
  gint width = GST_VIDEO_FRAME_WIDTH (frame);
  gint height = GST_VIDEO_FRAME_HEIGHT (frame);
  gint stride = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  const guint8 *pixels = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  FILE *f = fopen (path, "wb");
  gboolean ok;

  if (f == NULL)
    return FALSE;
  ok = fprintf (f, "P6\n%d %d\n255\n", width, height) > 0;
  for (gint y = 0; ok && y < height; y++)
    ok = fwrite (pixels + (gsize) y * stride, 3, width, f) == (gsize) width;
  return fclose (f) == 0 && ok;
}

/* Runs on the streaming thread for every frame: keep it short. */
static GstFlowReturn
on_new_sample (GstAppSink * sink, gpointer user_data)
{
  App *app = user_data;
  GstSample *sample = gst_app_sink_pull_sample (sink);
  GstBuffer *buffer = gst_sample_get_buffer (sample);
  GstVideoInfo info;
  GstVideoFrame frame;

  if (!gst_video_info_from_caps (&info, gst_sample_get_caps (sample)) ||
      !gst_video_frame_map (&frame, &info, buffer, GST_MAP_READ)) {
    gst_sample_unref (sample);
    return GST_FLOW_ERROR;
  }

  if (app->output_dir != NULL) {
    gchar *name = g_strdup_printf ("frame-%04d.ppm", app->frames_received);
    gchar *path = g_build_filename (app->output_dir, name, NULL);

    if (!write_ppm (path, &frame))
      g_printerr ("\ncould not write %s\n", path);
    g_free (path);
    g_free (name);
  }
  g_atomic_int_inc (&app->frames_received);

  gst_video_frame_unmap (&frame);
  gst_sample_unref (sample);
  return GST_FLOW_OK;
}

static void
draw_progress (const GstStructure * s)
{
  const gchar *stage = gst_structure_get_string (s, "stage");
  gint step = 0, steps = 0, frame = 0, frames = 0, width = 30, filled;

  gst_structure_get (s, "step", G_TYPE_INT, &step, "steps", G_TYPE_INT, &steps,
      "frame", G_TYPE_INT, &frame, "frames", G_TYPE_INT, &frames, NULL);
  filled = steps > 0 ? width * step / steps : 0;
  g_print ("\r%-11s [%.*s%*s] %3d/%-3d  frames %d/%d", stage ? stage : "",
      filled, "##############################", width - filled, "", step,
      steps, frame, frames);
}

static gboolean
on_bus_message (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  App *app = user_data;

  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ELEMENT:
      if (gst_message_has_name (msg, "vdit-progress"))
        draw_progress (gst_message_get_structure (msg));
      break;
    case GST_MESSAGE_PROGRESS:{
      GstProgressType type;
      gchar *code = NULL, *text = NULL;

      gst_message_parse_progress (msg, &type, &code, &text);
      g_print ("%s\n", text);
      g_free (code);
      g_free (text);
      break;
    }
    case GST_MESSAGE_ERROR:{
      GError *err = NULL;
      gchar *debug = NULL;

      gst_message_parse_error (msg, &err, &debug);
      g_printerr ("\nerror: %s\n", err->message);
      if (debug != NULL)
        g_printerr ("debug: %s\n", debug);
      g_clear_error (&err);
      g_free (debug);
      app->failed = TRUE;
      g_main_loop_quit (app->loop);
      break;
    }
    case GST_MESSAGE_EOS:
      g_print ("\n");
      g_main_loop_quit (app->loop);
      break;
    default:
      break;
  }
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  gchar *prompt = g_strdup ("a red circle moving left"), *model = NULL;
  gchar *output_dir = NULL, *device = NULL;
  gint frames = 0, steps = 0;
  gint64 seed = 0;
  GOptionEntry entries[] = {
    {"prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "What to generate",
        "TEXT"},
    {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Model directory", "DIR"},
    {"frames", 'n', 0, G_OPTION_ARG_INT, &frames,
        "Frames (0 = the model's default)", "N"},
    {"steps", 's', 0, G_OPTION_ARG_INT, &steps,
        "Sampling steps (0 = the model's default)", "N"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Noise seed", "N"},
    {"device", 'd', 0, G_OPTION_ARG_STRING, &device, "auto, cpu or cuda",
        "NAME"},
    {"output-dir", 'o', 0, G_OPTION_ARG_FILENAME, &output_dir,
        "Write each frame there as a PPM image", "DIR"},
    {NULL}
  };
  GOptionContext *context = g_option_context_new ("- generate a video");
  GError *error = NULL;
  GstElement *pipeline, *src, *sink;
  GstAppSinkCallbacks callbacks = { NULL };
  GstBus *bus;
  App app = { 0 };
  gchar *device_used = NULL;
  gint expected = 0;

  setlocale (LC_ALL, "");       /* messages may hold non-ASCII text */
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_add_group (context, gst_init_get_option_group ());
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  g_option_context_free (context);
  if (output_dir != NULL && g_mkdir_with_parents (output_dir, 0755) != 0) {
    g_printerr ("cannot create %s\n", output_dir);
    return 1;
  }

  /* fatal errors: without the flag a missing vditsrc gives a partial pipeline */
  pipeline = gst_parse_launch_full ("vditsrc name=src ! video/x-raw,format=RGB "
      "! appsink name=sink sync=false", NULL, GST_PARSE_FLAG_FATAL_ERRORS,
      &error);
  if (pipeline == NULL) {
    g_printerr ("%s (is the vdit plug-in on GST_PLUGIN_PATH?)\n",
        error->message);
    return 1;
  }
  src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");

  g_object_set (src, "prompt", prompt, "frames", frames, "steps", steps,
      "seed", (guint64) seed, NULL);
  if (model != NULL)
    g_object_set (src, "model", model, NULL);
  if (device != NULL)
    gst_util_set_object_arg (G_OBJECT (src), "device", device);

  app.loop = g_main_loop_new (NULL, FALSE);
  app.output_dir = output_dir;
  callbacks.new_sample = on_new_sample;
  gst_app_sink_set_callbacks (GST_APP_SINK (sink), &callbacks, &app, NULL);

  bus = gst_element_get_bus (pipeline);
  gst_bus_add_watch (bus, on_bus_message, &app);

  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE)
    app.failed = TRUE;
  /* a failed start has posted its error: the loop shows it and quits */
  g_main_loop_run (app.loop);

  g_object_get (src, "device-used", &device_used, "frames", &expected, NULL);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  if (!app.failed)
    g_print ("%d frames on %s\n", app.frames_received,
        device_used ? device_used : "?");

  gst_bus_remove_watch (bus);
  gst_object_unref (bus);
  gst_object_unref (sink);
  gst_object_unref (src);
  gst_object_unref (pipeline);
  g_main_loop_unref (app.loop);
  g_free (device_used);
  g_free (prompt);
  g_free (model);
  g_free (device);
  g_free (output_dir);
  if (app.failed || (expected > 0 && app.frames_received != expected))
    return 1;
  return 0;
}
