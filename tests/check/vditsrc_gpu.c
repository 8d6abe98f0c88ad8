/* gst-check test of vditsrc on a GPU: the same clip rendered with device=cpu
 * and device=cuda.
 *
 * The CUDA backend keeps activations in bf16, so frames are compared by PSNR,
 * not by checksum (whole-model parity of the tiny model measured about 37 dB
 * on an H100, tests/gpu/test_gpu_generate.c). Without a usable CUDA device the
 * program exits 77, which meson reports as SKIP. The model is $VDIT_TEST_MODEL,
 * else $VDIT_SOURCE_ROOT/models/tiny. */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <math.h>

#include "vdit.h"
#include "test_model.h"

#define PROMPT "a red circle moving left"
#define FRAMES 8
#define MIN_PSNR 30.0           /* dB, every frame */
#define SKIP_STATUS 77          /* meson: skipped */


/* The clip's visible RGB pixels, frame after frame, without row padding. */
typedef struct
{
  GByteArray *rgb;
  gint frames, width, height;
  gchar *device_used;
} clip;

static void
clip_clear (clip * c)
{
  g_byte_array_unref (c->rgb);
  g_free (c->device_used);
}

/* Renders the test clip on `device` (cpu or cuda) up to EOS. */
static void
render (const gchar * device, clip * c)
{
  gchar *launch = g_strdup_printf ("vditsrc model=\"%s\" device=%s frames=%d "
      "seed=5 prompt=\"" PROMPT "\"", model_dir, device, FRAMES);
  GstHarness *h = gst_harness_new_parse (launch);
  GstElement *src;
  GstBuffer *buf = NULL;
  GstCaps *caps;
  GstVideoInfo info;

  gst_video_info_init (&info);
  gst_harness_set_sink_caps_str (h, "video/x-raw,format=RGB");
  gst_harness_play (h);
  c->rgb = g_byte_array_new ();
  c->frames = 0;
  while (gst_harness_pull_until_eos (h, &buf) && buf != NULL) {
    GstVideoFrame frame;

    if (c->frames == 0) {
      caps = gst_pad_get_current_caps (h->sinkpad);
      fail_unless (caps != NULL);
      fail_unless (gst_video_info_from_caps (&info, caps));
      gst_caps_unref (caps);
      c->width = GST_VIDEO_INFO_WIDTH (&info);
      c->height = GST_VIDEO_INFO_HEIGHT (&info);
    }
    fail_unless (gst_video_frame_map (&frame, &info, buf, GST_MAP_READ));
    for (gint y = 0; y < c->height; y++) {
      const guint8 *row = (const guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&frame, 0)
          + (gsize) y * GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
      g_byte_array_append (c->rgb, row, (guint) c->width * 3);
    }
    gst_video_frame_unmap (&frame);
    gst_buffer_unref (buf);
    buf = NULL;
    c->frames++;
  }
  fail_unless (buf == NULL, "stream ended without EOS");

  src = gst_harness_find_element (h, "vditsrc");
  fail_unless (src != NULL);
  g_object_get (src, "device-used", &c->device_used, NULL);
  gst_object_unref (src);
  gst_harness_teardown (h);
  g_free (launch);
}

static double
psnr (const guint8 * a, const guint8 * b, gsize n)
{
  double se = 0.0;

  for (gsize i = 0; i < n; i++) {
    const double d = (double) a[i] - b[i];
    se += d * d;
  }
  return se > 0.0 ? 10.0 * log10 (255.0 * 255.0 * n / se) : INFINITY;
}

GST_START_TEST (test_cpu_cuda_same_frames)
{
  clip cpu, gpu;
  gsize frame_bytes;

  render ("cpu", &cpu);
  render ("cuda", &gpu);
  fail_unless_equals_string (cpu.device_used, "cpu");
  fail_unless_equals_string (gpu.device_used, "cuda");
  fail_unless_equals_int (cpu.frames, FRAMES);
  fail_unless_equals_int (gpu.frames, FRAMES);
  fail_unless_equals_int (cpu.width, gpu.width);
  fail_unless_equals_int (cpu.height, gpu.height);
  fail_unless_equals_int (cpu.rgb->len, gpu.rgb->len);

  frame_bytes = (gsize) cpu.width * cpu.height * 3;
  for (gint i = 0; i < FRAMES; i++) {
    const double db = psnr (cpu.rgb->data + i * frame_bytes,
        gpu.rgb->data + i * frame_bytes, frame_bytes);

    g_print ("# frame %d: CPU vs CUDA PSNR %.2f dB\n", i, db);
    fail_unless (db >= MIN_PSNR, "frame %d: PSNR %.2f dB < %.0f dB", i, db,
        MIN_PSNR);
  }
  clip_clear (&cpu);
  clip_clear (&gpu);
}

GST_END_TEST;

static Suite *
vditsrc_gpu_suite (void)
{
  Suite *s = suite_create ("vditsrc-gpu");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup_model, teardown_model);
  tcase_add_test (tc, test_cpu_cuda_same_frames);
  suite_add_tcase (s, tc);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  if (!vdit_cuda_available (NULL)) {
    g_print ("# skip: no usable CUDA device (or a build without CUDA)\n");
    return SKIP_STATUS;
  }
  /* the probe above initialised CUDA in this process, and a CUDA context does not
   * survive fork(): run the tests here instead of in check's forked children */
  g_setenv ("CK_FORK", "no", TRUE);
  return gst_check_run_suite (vditsrc_gpu_suite (), "vditsrc-gpu", __FILE__);
}
