/* gst-check tests of vditsrc running out of memory: an allocation that fails part-way
 * through a clip (each one in turn, vdit_fault_alloc_fail_in) is an ERROR message of
 * class RESOURCE that says how much was asked and how much was free, never a crash or a
 * hang, and the element starts again afterwards.
 *
 * Renders on $VDIT_TEST_DEVICE (cpu by default). On cuda it exits 77 (skipped) without a
 * usable GPU, and also checks the byte limit of the CUDA backends (VDIT_CUDA_ALLOC_LIMIT's
 * switch) and that a clip larger than the device is refused by the state change with
 * the numbers. */
#include <gst/check/gstcheck.h>
#include <glib/gstdio.h>
#include <string.h>

#include "backend.h"
#include "vdit.h"
#include "test_model.h"

#define SKIP_STATUS 77          /* meson: skipped */
#define CUDA_DEVICE 0

static const gchar *device = "cpu";
static gboolean on_cuda;

/* What to arm once the element has loaded its model and is about to generate. */
typedef struct
{
  gint fail_in;                 /* vdit_fault_alloc_fail_in's n; 0: nothing */
  gboolean limit;               /* cap the CUDA backends at what they hold + 1 */
} arming;

static GstBusSyncReply
arm_at_load (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  const arming *a = user_data;
  GstProgressType type;
  gchar *code = NULL, *text = NULL;

  if (GST_MESSAGE_TYPE (msg) != GST_MESSAGE_PROGRESS)
    return GST_BUS_PASS;
  gst_message_parse_progress (msg, &type, &code, &text);
  if (type == GST_PROGRESS_TYPE_COMPLETE && g_str_equal (code, "load-model")) {
    if (a->fail_in > 0)
      vdit_fault_alloc_fail_in (a->fail_in);
    if (a->limit) {
      vdit_gpu_memory mem;

      fail_unless (vdit_gpu_memory_get (CUDA_DEVICE, &mem));
      vdit_cuda_set_alloc_limit (mem.allocated + 1);
    }
  }
  g_free (code);
  g_free (text);
  return GST_BUS_PASS;
}

/* Plays one clip with `a` armed at load: NULL at EOS (after 8 frames), else the
 * ERROR message (the caller unrefs it). The pipeline is back in NULL either way. */
static GstMessage *
play_clip (const arming * a, gint * frames)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" device=%s frames=8 steps=3 "
      "seed=2 prompt=\"a red circle moving left\" ! fakesink name=sink sync=false",
      model_dir, device);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;
  guint64 rendered = 0;

  gst_bus_set_sync_handler (bus, arm_at_load, (gpointer) a, NULL);
  fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL, "neither EOS nor an error within 60 s");
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS) {
    GstStructure *stats = NULL;

    g_object_get (sink, "stats", &stats, NULL);
    fail_unless (gst_structure_get_uint64 (stats, "rendered", &rendered));
    gst_structure_free (stats);
    gst_message_unref (msg);
    msg = NULL;
  }
  /* an error leaves no thread behind that stops the pipeline going down */
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  *frames = (gint) rendered;
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_object_unref (bus);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
  g_free (launch);
  return msg;
}

/* The error is RESOURCE/FAILED and its text has the prefix and every needle. */
static void
assert_oom_message (GstMessage * msg, const gchar * prefix, const gchar * needle)
{
  GError *err = NULL;
  gchar *debug = NULL;

  gst_message_parse_error (msg, &err, &debug);
  GST_INFO ("%s", err->message);
  fail_unless (err->domain == GST_RESOURCE_ERROR, "%s (%s)", err->message,
      g_quark_to_string (err->domain));
  fail_unless_equals_int (err->code, GST_RESOURCE_ERROR_FAILED);
  fail_unless (g_str_has_prefix (err->message, prefix), "%s", err->message);
  fail_unless (strstr (err->message, "free") != NULL, "%s", err->message);
  fail_unless (strstr (err->message, needle) != NULL, "%s", err->message);
  g_error_free (err);
  g_free (debug);
}

/* Every allocation of a clip, failed in turn: an error each time on the CPU (on CUDA a
 * failure may also be absorbed: the GEMM tuning's scratch, where the heuristic's first
 * choice then serves), and a whole clip afterwards. */
GST_START_TEST (test_each_allocation_fails)
{
  arming a = { G_MAXINT, FALSE };
  GstMessage *msg;
  gint frames = 0, allocs, errors = 0;

  msg = play_clip (&a, &frames);
  fail_unless (msg == NULL);
  fail_unless_equals_int (frames, 8);
  allocs = G_MAXINT - vdit_fault_alloc_fail_in (0);
  fail_unless (allocs > 10, "a clip made %d allocations", allocs);

  for (gint k = 1; k <= allocs; k++) {
    a.fail_in = k;
    msg = play_clip (&a, &frames);
    /* the k-th allocation was reached */
    fail_unless_equals_int (vdit_fault_alloc_fail_in (0), 0);
    if (msg != NULL) {
      if (errors == 0) {
        GError *err = NULL;

        gst_message_parse_error (msg, &err, NULL);
        g_print ("# allocation %d of %d: %s\n", k, allocs, err->message);
        g_error_free (err);
      }
      assert_oom_message (msg, "Ran out of memory while generating",
          "injected");
      gst_message_unref (msg);
      errors++;
    } else {
      fail_if (!on_cuda, "allocation %d failed, yet the clip ended", k);
      fail_unless_equals_int (frames, 8);
    }
  }
  g_print ("# %s: %d of %d failed allocations ended the clip with an error\n",
      device, errors, allocs);
  fail_unless (on_cuda ? errors > allocs / 2 : errors == allocs);

  a.fail_in = 0;
  msg = play_clip (&a, &frames);
  fail_unless (msg == NULL);
  fail_unless_equals_int (frames, 8);
}

GST_END_TEST;

/* CUDA: the backends capped at what they hold once the model is loaded. */
GST_START_TEST (test_alloc_limit)
{
  arming a = { 0, TRUE };
  gint frames = 0;
  GstMessage *msg = play_clip (&a, &frames);

  vdit_cuda_set_alloc_limit (0);
  fail_unless (msg != NULL, "the clip ended over the limit");
  assert_oom_message (msg, "Ran out of memory while generating",
      "VDIT_CUDA_ALLOC_LIMIT");
  gst_message_unref (msg);
  a.limit = FALSE;
  msg = play_clip (&a, &frames);
  fail_unless (msg == NULL);
  fail_unless_equals_int (frames, 8);
}

GST_END_TEST;

/* CUDA: Open-Sora-Plan v1.2's width in one block (little to load); 4,096 frames need
 * some 700 GiB of activations on the device and about 10 GiB of host memory. */
static const gchar wide_config[] =
    "{\"format\": \"vdit\", \"version\": 1, \"name\": \"wide-one-block\","
    " \"video\": {\"frames\": 8, \"height\": 90, \"width\": 160, \"fps\": 24.0},"
    " \"decoder\": {\"type\": \"identity\", \"channels\": 3},"
    " \"text_encoder\": {\"vocab_size\": 1000, \"d_model\": 64, \"n_layers\": 1,"
    "  \"n_heads\": 4, \"d_kv\": 16, \"d_ff\": 128, \"rel_buckets\": 32,"
    "  \"rel_max_distance\": 128, \"max_tokens\": 32, \"eps\": 1e-6},"
    " \"dit\": {\"hidden\": 2304, \"depth\": 1, \"heads\": 24, \"head_dim\": 96,"
    "  \"patch\": [1, 2, 2], \"in_channels\": 3, \"ffn_hidden\": 9216,"
    "  \"freq_dim\": 256, \"rope_theta\": 10000.0, \"rope_scale\": [1.0, 1.5, 2.0],"
    "  \"eps\": 1e-6},"
    " \"sampler\": {\"type\": \"euler_ancestral\", \"prediction\": \"epsilon\","
    "  \"steps\": 2, \"guidance\": 1.0, \"shift\": 1.0, \"train_timesteps\": 1000,"
    "  \"beta_start\": 0.0001, \"beta_end\": 0.02, \"beta_schedule\": \"linear\"},"
    " \"attention\": {\"mode\": \"full\", \"tile_k\": 1, \"block\": 64,"
    "  \"sparsity\": 0.8, \"warmup\": 0.2, \"search_steps\": [0.2, 0.6]}}";

GST_START_TEST (test_larger_than_device_refused)
{
  gchar *dir = g_dir_make_tmp ("vditsrc-wide-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "wide.json", NULL);
  gchar *launch;
  GstElement *pipeline;
  GstBus *bus;
  GstMessage *msg;

  fail_unless (g_file_set_contents (path, wide_config, -1, NULL));
  launch = g_strdup_printf ("vditsrc model=\"%s\" device=cuda frames=4096 "
      "prompt=\"a red circle\" ! fakesink", path);
  pipeline = gst_parse_launch (launch, NULL);
  bus = gst_element_get_bus (pipeline);
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_PLAYING),
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  assert_oom_message (msg, "Cannot generate this clip", "on the cuda device");
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_unlink (path);
  g_rmdir (dir);
  g_free (launch);
  g_free (path);
  g_free (dir);
}

GST_END_TEST;

static Suite *
vditsrc_oom_suite (void)
{
  Suite *s = suite_create ("vditsrc-oom");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_each_allocation_fails);
  if (on_cuda) {
    tcase_add_test (tc, test_alloc_limit);
    tcase_add_test (tc, test_larger_than_device_refused);
  }
  suite_add_tcase (s, tc);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  device = test_device_from_env ();
  if (device == NULL)
    return SKIP_STATUS;
  on_cuda = g_str_equal (device, "cuda");
  return gst_check_run_suite (vditsrc_oom_suite (), "vditsrc-oom", __FILE__);
}
