/* gst-check tests of vditsrc used concurrently: two elements sharing one loaded
 * model, properties set from another thread during generation, and state cycles
 * with generation in flight.
 *
 * Built twice: as the suite test (50 cycles) and, with VDIT_SOAK, as the soak
 * test of suite 'soak' (1,000 cycles; not run by default: meson test --setup soak
 * --suite soak). VDIT_SOAK_CYCLES overrides the count.
 *
 * VDIT_TEST_DEVICE (cpu by default, or cuda) is the device every source renders
 * on. On cuda the program exits 77 (skipped) without a usable GPU, frames are
 * compared by PSNR (bf16 arithmetic, GEMM algorithms chosen per context) instead
 * of bit for bit, and the back-to-back clips also watch the GPU's memory. */
#include <gst/check/gstcheck.h>
#include <math.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "vdit.h"
#include "test_model.h"

#ifdef VDIT_SOAK
#define DEFAULT_CYCLES 1000
#else
#define DEFAULT_CYCLES 50
#endif

#define SKIP_STATUS 77          /* meson: skipped */
#define MIN_PSNR 30.0           /* dB, each frame, on CUDA */
#define CUDA_DEVICE 0           /* the element's default cuda-device-id */

/* The settings of every source, with device= the device under test. */
static gchar *props;
static gboolean on_cuda;

/* Keeps each frame's bytes (GBytes) in the array: a probe on a source's pad. */
static GstPadProbeReturn
note_frame (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  GPtrArray *frames = user_data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstMapInfo map;

  fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
  /* each pad's probe runs on its own streaming thread: one array each */
  g_ptr_array_add (frames, g_bytes_new (map.data, map.size));
  gst_buffer_unmap (buf, &map);
  return GST_PAD_PROBE_OK;
}

/* Counts the load-model COMPLETE messages that loaded the model and those that
 * reused a loaded one. */
typedef struct
{
  gint loaded, reused;
} load_count;

static void
count_loads (GstMessage * msg, load_count * c)
{
  GstProgressType type;
  gchar *code = NULL, *text = NULL;

  if (GST_MESSAGE_TYPE (msg) != GST_MESSAGE_PROGRESS)
    return;
  gst_message_parse_progress (msg, &type, &code, &text);
  if (type == GST_PROGRESS_TYPE_COMPLETE && g_str_equal (code, "load-model")) {
    GST_INFO ("%s", text);
    if (g_str_has_prefix (text, "Loaded model"))
      c->loaded++;
    else if (g_str_has_prefix (text, "Using model"))
      c->reused++;
  }
  g_free (code);
  g_free (text);
}

/* Runs `n` sources named src0.. (each with `props`) in one pipeline to EOS,
 * collecting each one's frame checksums. */
static void
run_sources (gint n, const gchar * props, GPtrArray ** sums, load_count * c)
{
  GString *launch = g_string_new (NULL);
  GstElement *pipeline;
  GstBus *bus;
  gint eos = 0;

  for (gint i = 0; i < n; i++)
    g_string_append_printf (launch, "vditsrc name=src%d model=\"%s\" %s ! "
        "video/x-raw,format=RGB ! fakesink sync=false  ", i, model_dir, props);
  pipeline = gst_parse_launch (launch->str, NULL);
  fail_unless (pipeline != NULL);
  for (gint i = 0; i < n; i++) {
    gchar *name = g_strdup_printf ("src%d", i);
    GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), name);
    GstPad *pad = gst_element_get_static_pad (src, "src");

    sums[i] = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, note_frame, sums[i],
        NULL);
    gst_object_unref (pad);
    gst_object_unref (src);
    g_free (name);
  }
  bus = gst_element_get_bus (pipeline);
  fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE);
  /* the pipeline posts EOS once both sinks have it */
  while (eos == 0) {
    GstMessage *msg = gst_bus_timed_pop (bus, 120 * GST_SECOND);

    fail_unless (msg != NULL, "no EOS");
    fail_if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS)
      eos++;
    count_loads (msg, c);
    gst_message_unref (msg);
  }
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_string_free (launch, TRUE);
}

static double
psnr (GBytes * a, GBytes * b)
{
  gsize n, m;
  const guint8 *x = g_bytes_get_data (a, &n), *y = g_bytes_get_data (b, &m);
  double se = 0.0;

  fail_unless_equals_uint64 (n, m);
  for (gsize i = 0; i < n; i++)
    se += ((double) x[i] - y[i]) * ((double) x[i] - y[i]);
  return se > 0.0 ? 10.0 * log10 (255.0 * 255.0 * n / se) : INFINITY;
}

/* The same frames: bit for bit on the CPU, within MIN_PSNR on CUDA. */
static void
assert_same_frames (GPtrArray * a, GPtrArray * b)
{
  fail_unless_equals_int (a->len, b->len);
  for (guint i = 0; i < a->len; i++) {
    GBytes *x = g_ptr_array_index (a, i), *y = g_ptr_array_index (b, i);

    if (!on_cuda)
      fail_unless (g_bytes_equal (x, y), "frame %u differs", i);
    else {
      const double db = psnr (x, y);

      fail_unless (db >= MIN_PSNR, "frame %u: PSNR %.2f dB < %.0f dB", i, db,
          MIN_PSNR);
    }
  }
}

/* Two sources in one pipeline render at once on one loaded model and give the
 * frames one source gives alone; the model is freed with its last user (the
 * next run loads it again). */
GST_START_TEST (test_two_sources_share_model)
{
  GPtrArray *alone[1], *pair[2];
  load_count c1 = { 0 }, c2 = { 0 };

  run_sources (1, props, alone, &c1);
  fail_unless_equals_int (alone[0]->len, 8);
  fail_unless_equals_int (c1.loaded, 1);
  fail_unless_equals_int (c1.reused, 0);

  run_sources (2, props, pair, &c2);
  fail_unless (c2.loaded == 1, "the model was loaded %d times", c2.loaded);
  fail_unless_equals_int (c2.reused, 1);
  assert_same_frames (alone[0], pair[0]);
  assert_same_frames (alone[0], pair[1]);

  g_ptr_array_unref (alone[0]);
  g_ptr_array_unref (pair[0]);
  g_ptr_array_unref (pair[1]);
}

GST_END_TEST;

/* Another spelling of the model directory (a trailing "/.") meets the same
 * cache entry: keyed by the canonical path. */
GST_START_TEST (test_share_by_canonical_path)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" %s"
      " ! fakesink sync=false  vditsrc model=\"%s/.\" %s"
      " ! fakesink sync=false", model_dir, props, model_dir, props);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstBus *bus = gst_element_get_bus (pipeline);
  load_count c = { 0 };
  GstMessage *msg;

  /* both have loaded (or reused) their model once PAUSED */
  fail_if (gst_element_set_state (pipeline, GST_STATE_PAUSED) ==
      GST_STATE_CHANGE_FAILURE);
  fail_unless_equals_int (gst_element_get_state (pipeline, NULL, NULL,
          GST_CLOCK_TIME_NONE), GST_STATE_CHANGE_SUCCESS);
  while ((msg = gst_bus_pop (bus)) != NULL) {
    count_loads (msg, &c);
    gst_message_unref (msg);
  }
  fail_unless_equals_int (c.loaded, 1);
  fail_unless_equals_int (c.reused, 1);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

typedef struct
{
  GstElement *src;
  gint stop;                    /* atomic */
  guint sets;
} prop_hammer;

/* Sets and reads every writable setting, again and again, until told to stop. */
static gpointer
hammer_properties (gpointer data)
{
  prop_hammer *p = data;
  static const gchar *const prompts[] = { "a green triangle", "", "x",
    "a blue square moving up"
  };
  static const gchar *const attention[] = { "full", "tile", "adaptive" };

  for (guint i = 0; !g_atomic_int_get (&p->stop); i++) {
    gchar *prompt = NULL, *model = NULL, *used = NULL;
    gint frames;

    g_object_set (p->src, "prompt", prompts[i % 4], "seed", (guint64) i,
        "steps", 1 + i % 7, "guidance", (gfloat) (i % 5), "frames",
        1 + (i % 3) * 8, "sparsity", (gfloat) (i % 10) / 10.0f,
        "negative-prompt", i % 2 ? "blurry" : NULL, NULL);
    gst_util_set_object_arg (G_OBJECT (p->src), "attention",
        attention[i % 3]);
    g_object_get (p->src, "prompt", &prompt, "model", &model, "frames",
        &frames, "device-used", &used, NULL);
    fail_unless (prompt != NULL && model != NULL);
    g_free (prompt);
    g_free (model);
    g_free (used);
    p->sets++;
    g_thread_yield ();
  }
  return NULL;
}

/* Property changes from another thread while two sources generate: no crash,
 * and each clip still has the frame count it started with (settings apply at
 * the next start). */
GST_START_TEST (test_properties_from_another_thread)
{
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" %s"
      " ! fakesink name=sink sync=false", model_dir, props);

  for (gint run = 0; run < 3; run++) {
    GstElement *pipeline = gst_parse_launch (launch, NULL);
    GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
    GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
    GstBus *bus = gst_element_get_bus (pipeline);
    prop_hammer p = { src, 0, 0 };
    GThread *thread;
    GstMessage *msg;
    GstSample *last = NULL;
    GstBuffer *buf;

    fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
        GST_STATE_CHANGE_FAILURE);
    thread = g_thread_new ("hammer", hammer_properties, &p);
    msg = gst_bus_timed_pop_filtered (bus, 120 * GST_SECOND,
        GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
    fail_unless (msg != NULL);
    fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
    gst_message_unref (msg);
    g_object_get (sink, "last-sample", &last, NULL);
    fail_unless (last != NULL);
    buf = gst_sample_get_buffer (last);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), 7);     /* frames=8 */
    gst_sample_unref (last);

    /* and through a restart, which reads the hammered settings */
    fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL),
        GST_STATE_CHANGE_SUCCESS);
    gst_element_set_state (pipeline, GST_STATE_PLAYING);
    g_usleep (20 * 1000);
    fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL),
        GST_STATE_CHANGE_SUCCESS);

    g_atomic_int_set (&p.stop, 1);
    g_thread_join (thread);
    GST_INFO ("run %d: %u property rounds", run, p.sets);
    fail_unless (p.sets > 0);
    gst_object_unref (bus);
    gst_object_unref (sink);
    gst_object_unref (src);
    gst_object_unref (pipeline);
  }
  g_free (launch);
}

GST_END_TEST;

static GstBusSyncReply
note_step (GstBus * bus, GstMessage * msg, gpointer user_data)
{
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT &&
      gst_message_has_name (msg, "vdit-progress"))
    g_atomic_int_inc ((gint *) user_data);
  return GST_BUS_PASS;
}

/* The resident set of this process in KiB (0 where /proc is missing), after
 * handing the allocator's free pages back: what stays is what is still in use,
 * without the clip-to-clip noise (±1.5 % on the tiny model) of freed memory. */
static gint64
rss_kib (void)
{
  gchar *status = NULL;
  gint64 kib = 0;

#ifdef __GLIBC__
  malloc_trim (0);
#endif

  if (g_file_get_contents ("/proc/self/status", &status, NULL, NULL)) {
    const gchar *line = strstr (status, "VmRSS:");

    if (line != NULL)
      kib = g_ascii_strtoll (line + 6, NULL, 10);
    g_free (status);
  }
  return kib;
}

static gint
cmp_int64 (gconstpointer a, gconstpointer b)
{
  const gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

/* The median of the RSS samples of clips k-4..k (k ≥ 5, 1-based): single samples
 * jump between two levels about 2 MB apart on the shipped default model (the
 * generation threads' stacks and malloc arenas), which a median rides over. */
static gint64
rss_median (const gint64 * rss, gint k)
{
  gint64 w[5];

  memcpy (w, rss + k - 5, sizeof w);
  qsort (w, 5, sizeof w[0], cmp_int64);
  return w[2];
}

static gint
cycle_count (void)
{
  const gchar *env = g_getenv ("VDIT_SOAK_CYCLES");

  return env != NULL ? atoi (env) : DEFAULT_CYCLES;
}

/* NULL↔PLAYING again and again with two sources sharing a model, stopped with
 * generation in flight at varied points: every state change completes, and the
 * last run still renders the right frames to EOS. */
GST_START_TEST (test_shared_state_cycles)
{
  gchar *launch = g_strdup_printf ("vditsrc name=a model=\"%s\" %s"
      " steps=40 ! fakesink sync=false  vditsrc name=b model=\"%s\" %s"
      " steps=40 ! fakesink sync=false", model_dir, props, model_dir, props);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstBus *bus = gst_element_get_bus (pipeline);
  const gint cycles = cycle_count ();
  gint steps_seen = 0, in_flight = 0;
  gint64 t0 = g_get_monotonic_time (), rss_early = 0, rss_end = 0;
  gint64 *rss = g_new0 (gint64, cycles);
  GstMessage *msg;

  gst_bus_set_sync_handler (bus, note_step, &steps_seen, NULL);
  for (gint i = 0; i < cycles; i++) {
    gint64 deadline = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

    g_atomic_int_set (&steps_seen, 0);
    fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
        GST_STATE_CHANGE_FAILURE, "cycle %d", i);
    while (g_atomic_int_get (&steps_seen) < 1 + i % 6 &&
        g_get_monotonic_time () < deadline)
      g_usleep (200);
    if (g_atomic_int_get (&steps_seen) > 0)
      in_flight++;
    fail_unless (gst_element_set_state (pipeline, i % 4 == 3 ?
            GST_STATE_READY : GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS,
        "cycle %d", i);
    fail_unless (gst_element_set_state (pipeline, GST_STATE_NULL) ==
        GST_STATE_CHANGE_SUCCESS, "cycle %d", i);
    rss[i] = rss_kib ();
  }
  if (cycles >= 10) {
    rss_early = rss_median (rss, MAX (cycles / 10, 5));
    rss_end = rss_median (rss, cycles);
  }
  g_free (rss);
  GST_INFO ("%d cycles (%d stopped while generating) in %.1f s; RSS (median of 5) %"
      G_GINT64_FORMAT " KiB after cycle %d, %" G_GINT64_FORMAT " KiB at the end",
      cycles, in_flight, (g_get_monotonic_time () - t0) / 1e6, rss_early,
      cycles / 10, rss_end);
#ifdef VDIT_SOAK
  /* nothing kept per cycle: memory flat once the allocator has warmed up */
  fail_unless (rss_end <= rss_early + rss_early / 50, "RSS grew from %"
      G_GINT64_FORMAT " to %" G_GINT64_FORMAT " KiB", rss_early, rss_end);
#endif
  /* most cycles stopped a running generation */
  fail_unless (in_flight >= cycles * 9 / 10, "only %d of %d cycles stopped a "
      "generation", in_flight, cycles);

  /* still works: a full run to EOS */
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  while ((msg = gst_bus_pop (bus)) != NULL)
    gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, 120 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  fail_unless (msg != NULL);
  fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

#ifdef VDIT_SOAK
#define DEFAULT_CLIPS 100
#else
#define DEFAULT_CLIPS 12
#endif

/* What the process holds at the end of each clip: RSS, and on CUDA the bytes
 * vdit holds on the device and the device's memory in use (vdit_gpu_memory). */
enum
{ MEM_RSS, MEM_GPU_HELD, MEM_GPU_USED, MEM_KINDS };
static const gchar *const mem_names[MEM_KINDS] = { "RSS", "GPU memory vdit holds",
  "GPU memory in use on the device"
};

static void
note_memory (gint64 * series[MEM_KINDS], gint clip)
{
  series[MEM_RSS][clip] = rss_kib ();
  if (on_cuda) {
    vdit_gpu_memory mem;

    fail_unless (vdit_gpu_memory_get (CUDA_DEVICE, &mem));
    series[MEM_GPU_HELD][clip] = (gint64) (mem.allocated / 1024);
    series[MEM_GPU_USED][clip] = (gint64) (mem.device_used / 1024);
  }
}

/* Prints each measure at clip 10 and the last (single sample and median of
 * five); in the soak build, fails where the last is more than 2 % above clip
 * 10 (a leak grows; a fall is memory handed back). */
static void
check_memory_series (gint64 * series[MEM_KINDS], gint clips)
{
  for (gint k = 0; k < (on_cuda ? MEM_KINDS : 1); k++) {
    const gint64 at_10 = rss_median (series[k], 10);
    const gint64 at_last = rss_median (series[k], clips);

    g_print ("# %s: %" G_GINT64_FORMAT " KiB at clip 10, %" G_GINT64_FORMAT
        " KiB at clip %d; medians of 5 %" G_GINT64_FORMAT " and %"
        G_GINT64_FORMAT " KiB (%+.2f %%)\n", mem_names[k], series[k][9],
        series[k][clips - 1], clips, at_10, at_last,
        100.0 * (at_last - at_10) / MAX (at_10, 1));
#ifdef VDIT_SOAK
    fail_unless (at_last <= at_10 + at_10 / 50, "%s: %" G_GINT64_FORMAT
        " KiB at clip 10, %" G_GINT64_FORMAT " KiB at clip %d", mem_names[k],
        at_10, at_last, clips);
#endif
  }
}

/* Clips back to back in one pipeline (PLAYING to EOS, then READY, again): each
 * clip has its frames, the same seed gives the same frames every time, and in
 * the soak build the resident set (and on CUDA the GPU memory) at the end of the
 * last clip is at most 2 % above that at clip 10. */
GST_START_TEST (test_clips_back_to_back)
{
  const gchar *env = g_getenv ("VDIT_SOAK_CLIPS");
  const gint clips = env != NULL ? atoi (env) : DEFAULT_CLIPS;
  gchar *launch = g_strdup_printf ("vditsrc name=src model=\"%s\" %s"
      " ! video/x-raw,format=I420 ! fakesink sync=false", model_dir, props);
  GstElement *pipeline = gst_parse_launch (launch, NULL);
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstPad *pad = gst_element_get_static_pad (src, "src");
  GstBus *bus = gst_element_get_bus (pipeline);
  GPtrArray *first[2] = { NULL, NULL };
  gint64 *series[MEM_KINDS], t0 = g_get_monotonic_time ();

  fail_unless (clips >= 10);
  for (gint k = 0; k < MEM_KINDS; k++)
    series[k] = g_new0 (gint64, clips);
  for (gint i = 1; i <= clips; i++) {
    GPtrArray *sums =
        g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    gulong probe = gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER,
        note_frame, sums, NULL);
    GstMessage *msg;

    g_object_set (src, "seed", (guint64) (i % 2), NULL);
    fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) ==
        GST_STATE_CHANGE_FAILURE);
    msg = gst_bus_timed_pop_filtered (bus, 120 * GST_SECOND,
        GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
    fail_unless (msg != NULL);
    fail_unless_equals_string (GST_MESSAGE_TYPE_NAME (msg), "eos");
    gst_message_unref (msg);
    /* at the clip's end, the model still loaded */
    note_memory (series, i - 1);
    fail_unless (gst_element_set_state (pipeline, GST_STATE_READY) ==
        GST_STATE_CHANGE_SUCCESS);
    gst_pad_remove_probe (pad, probe);

    fail_unless_equals_int (sums->len, 8);
    if (first[i % 2] == NULL)
      first[i % 2] = sums;
    else {
      assert_same_frames (first[i % 2], sums);
      g_ptr_array_unref (sums);
    }
    GST_DEBUG ("clip %d: RSS %" G_GINT64_FORMAT " KiB, %" G_GINT64_FORMAT
        " KiB in READY", i, series[MEM_RSS][i - 1], rss_kib ());
  }
  g_print ("# %d clips on %s in %.1f s\n", clips, on_cuda ? "cuda" : "cpu",
      (g_get_monotonic_time () - t0) / 1e6);
  check_memory_series (series, clips);
  for (gint k = 0; k < MEM_KINDS; k++)
    g_free (series[k]);

  gst_element_set_state (pipeline, GST_STATE_NULL);
  g_ptr_array_unref (first[0]);
  g_ptr_array_unref (first[1]);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (src);
  gst_object_unref (pipeline);
  g_free (launch);
}

GST_END_TEST;

static Suite *
vditsrc_shared_suite (void)
{
  Suite *s = suite_create ("vditsrc-shared");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
#ifndef VDIT_SOAK
  tcase_add_test (tc, test_two_sources_share_model);
  tcase_add_test (tc, test_share_by_canonical_path);
  tcase_add_test (tc, test_properties_from_another_thread);
#endif
  tcase_add_test (tc, test_shared_state_cycles);
  tcase_add_test (tc, test_clips_back_to_back);
  suite_add_tcase (s, tc);
  return s;
}

int
main (int argc, char **argv)
{
  const gchar *device;
  gint status;

  gst_check_init (&argc, &argv);
  device = test_device_from_env ();
  if (device == NULL)
    return SKIP_STATUS;
  on_cuda = g_str_equal (device, "cuda");
  props = g_strdup_printf ("frames=8 steps=12 seed=3 "
      "prompt=\"a red circle moving left\" device=%s", device);
  status = gst_check_run_suite (vditsrc_shared_suite (), "vditsrc-shared",
      __FILE__);
  g_free (props);
  return status;
}
