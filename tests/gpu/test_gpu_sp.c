/* Sequence parallelism over the GPUs of one process (gpus=N): helper threads with a
 * CUDA context each, NCCL (ncclCommInitAll) for the DiT's exchanges on device buffers.
 * models/tiny with each attention policy on 2 GPUs (and on every GPU present, up to 4)
 * gives the clip of one GPU within a PSNR bound (both bf16; the GEMMs and attention run
 * on fewer rows or heads, so sums differ in order); a cancel mid-clip ends it as
 * CANCELLED and the next clip is right; more GPUs than present is refused. Skips (77)
 * with fewer than 2 GPUs (after the refusal, with 1) or without NCCL. */
#include "comm.h"
#include "ctx.h"
#include "gpu_util.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIN_PSNR 35.0 /* dB over all frames against one GPU */

static vdit_model *model;
static int n_gpus;

static vdit_ctx *
gpus_ctx (int gpus)
{
  GError *error = NULL;
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CUDA;
  cp.gpus = gpus;
  vdit_ctx *ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  return ctx;
}

static void
params_for (vdit_gen_params *gp, VditAttention attention, gpu_clip *c)
{
  vdit_gen_params_init (gp);
  gp->prompt = "a red ball rolls to the left";
  gp->negative_prompt = "blurry";
  gp->seed = 1234;
  gp->attention = attention;
  gp->on_frame = gpu_clip_on_frame;
  gp->user_data = c;
  c->rgb = g_byte_array_new ();
  c->frames = 0;
}

static void
run (vdit_ctx *ctx, VditAttention attention, gpu_clip *c)
{
  GError *error = NULL;
  vdit_gen_params gp;
  params_for (&gp, attention, c);
  const gint64 t0 = g_get_monotonic_time ();
  g_assert_true (vdit_generate (ctx, &gp, &error));
  g_assert_no_error (error);
  g_test_message ("%d GPU(s), %s: %d frames in %.1f ms", vdit_ctx_get_ranks (ctx),
                  vdit_attention_name (attention), c->frames,
                  (g_get_monotonic_time () - t0) / 1000.0);
}

static void
test_parity (gconstpointer data)
{
  const VditAttention attention = GPOINTER_TO_INT (data);
  vdit_ctx *one = gpus_ctx (1);
  gpu_clip ref;
  run (one, attention, &ref);
  vdit_ctx_free (one);
  for (int gpus = 2; gpus <= MIN (n_gpus, 4); gpus++) {
    vdit_ctx *ctx = gpus_ctx (gpus);
    g_assert_cmpint (vdit_ctx_get_ranks (ctx), ==, gpus);
    gpu_clip got;
    run (ctx, attention, &got);
    const double p = gpu_clip_psnr (&ref, &got);
    g_test_message ("%d GPUs, %s: PSNR %.2f dB against one GPU", gpus,
                    vdit_attention_name (attention), p);
    g_assert_cmpfloat (p, >=, MIN_PSNR);
    g_byte_array_unref (got.rgb);
    vdit_ctx_free (ctx);
  }
  g_byte_array_unref (ref.rgb);
}

static gpointer
cancel_later (gpointer data)
{
  g_usleep (500 * 1000);
  vdit_cancel (data);
  return NULL;
}

static void
test_cancel (void)
{
  vdit_ctx *ctx = gpus_ctx (2);
  gpu_clip ref, c;
  run (ctx, VDIT_ATTENTION_FULL, &ref);
  vdit_gen_params gp;
  params_for (&gp, VDIT_ATTENTION_FULL, &c);
  gp.steps = 100000; /* far longer than the cancel's delay */
  GError *error = NULL;
  GThread *t = g_thread_new ("cancel", cancel_later, ctx);
  const gint64 t0 = g_get_monotonic_time ();
  g_assert_false (vdit_generate (ctx, &gp, &error));
  const double secs = (g_get_monotonic_time () - t0) / 1e6;
  g_thread_join (t);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_test_message ("cancelled after %.2f s", secs);
  g_assert_cmpfloat (secs, <, 10.0);
  g_byte_array_unref (c.rgb);
  vdit_reset_cancel (ctx);
  run (ctx, VDIT_ATTENTION_FULL, &c); /* NCCL made again after the broken clip */
  g_assert_cmpfloat (gpu_clip_psnr (&ref, &c), >=, MIN_PSNR);
  g_byte_array_unref (ref.rgb);
  g_byte_array_unref (c.rgb);
  vdit_ctx_free (ctx);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  GError *error = NULL;
  if (!gpu_available () || !vdit_cuda_available (&n_gpus))
    return GPU_TEST_SKIP;
  g_autofree char *dir = test_source_path ("models/tiny");
  model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  /* more GPUs than present: a clear error before anything is made */
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CUDA;
  cp.gpus = n_gpus + 1;
  g_assert_null (vdit_ctx_new (model, &cp, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE);
  g_assert_nonnull (strstr (error->message, "present"));
  g_clear_error (&error);
  if (n_gpus < 2) {
    printf ("SKIP: %d GPU: sequence parallelism in one process needs 2\n", n_gpus);
    vdit_model_free (model);
    return GPU_TEST_SKIP;
  }
  if (!vdit_comm_nccl_available (&error)) {
    printf ("SKIP: %s\n", error->message);
    vdit_model_free (model);
    return GPU_TEST_SKIP;
  }
  g_setenv ("VDIT_COMM_TIMEOUT", "60", TRUE); /* a hang fails the test, not the suite */
  g_test_add_data_func ("/sp/full", GINT_TO_POINTER (VDIT_ATTENTION_FULL), test_parity);
  g_test_add_data_func ("/sp/tile", GINT_TO_POINTER (VDIT_ATTENTION_TILE), test_parity);
  g_test_add_data_func ("/sp/adaptive", GINT_TO_POINTER (VDIT_ATTENTION_ADAPTIVE), test_parity);
  g_test_add_func ("/sp/cancel", test_cancel);
  const int status = g_test_run ();
  vdit_model_free (model);
  return status;
}
