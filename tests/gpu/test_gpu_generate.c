/* Whole-model parity: models/tiny generates the same clip on the CPU and on CUDA (bf16
 * activations) within a PSNR bound, for each attention policy; device=cuda reports
 * "cuda". Also the one-token caption's shortcut on CUDA. */
#include "test_util.h"
#include "gpu_util.h"

#include <math.h>
#include <string.h>

#define MIN_PSNR 25.0 /* dB over all frames */

static void
generate (vdit_model *model, VditDevice device, VditAttention attention, gpu_clip *c)
{
  GError *error = NULL;
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  vdit_ctx *ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vdit_ctx_get_device_name (ctx), ==,
                   device == VDIT_DEVICE_CUDA ? "cuda" : "cpu");
  vdit_gen_params gp;
  vdit_gen_params_init (&gp);
  gp.prompt = "a red ball rolls to the left";
  gp.negative_prompt = "blurry";
  gp.seed = 1234;
  gp.attention = attention;
  gp.on_frame = gpu_clip_on_frame;
  gp.user_data = c;
  c->rgb = g_byte_array_new ();
  c->frames = 0;
  const gint64 t0 = g_get_monotonic_time ();
  g_assert_true (vdit_generate (ctx, &gp, &error));
  g_assert_no_error (error);
  g_test_message ("%s, %s: %d frames in %.1f ms", device == VDIT_DEVICE_CUDA ? "cuda" : "cpu",
                  vdit_attention_name (attention), c->frames,
                  (g_get_monotonic_time () - t0) / 1000.0);
  vdit_ctx_free (ctx);
}

static void
test_parity (gconstpointer data)
{
  const VditAttention attention = GPOINTER_TO_INT (data);
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  gpu_clip cpu, gpu;
  generate (model, VDIT_DEVICE_CPU, attention, &cpu);
  generate (model, VDIT_DEVICE_CUDA, attention, &gpu);
  g_assert_cmpint (cpu.frames, ==, gpu.frames);
  const double psnr = gpu_clip_psnr (&cpu, &gpu);
  g_test_message ("%s: CPU vs CUDA PSNR %.2f dB", vdit_attention_name (attention), psnr);
  g_assert_cmpfloat (psnr, >=, MIN_PSNR);
  g_byte_array_unref (cpu.rgb);
  g_byte_array_unref (gpu.rgb);
  vdit_model_free (model);
}

/* The one-token caption's shortcut (dit.h) on CUDA: the same token twice, through the
 * attention path, gives the same output up to bf16 rounding. */
static void
test_one_key (void)
{
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  gpu_pair p;
  gpu_pair_init (&p, 5);
  test_dit_one_key (&p.gpu, model, 1e-4);
  gpu_pair_clear (&p);
  vdit_model_free (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_data_func ("/gpu/generate/full", GINT_TO_POINTER (VDIT_ATTENTION_FULL), test_parity);
  g_test_add_data_func ("/gpu/generate/tile", GINT_TO_POINTER (VDIT_ATTENTION_TILE), test_parity);
  g_test_add_data_func ("/gpu/generate/adaptive", GINT_TO_POINTER (VDIT_ATTENTION_ADAPTIVE),
                        test_parity);
  g_test_add_func ("/gpu/generate/one-key", test_one_key);
  return g_test_run ();
}
