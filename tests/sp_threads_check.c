/* Sequence parallelism over ranks of one process (the in-process orchestration of
 * gpus=N, here with CPU ranks and the thread communicator), run by test_sp_threads.py.
 *
 * usage: sp_threads_check MODEL_DIR CASE
 *   full|tile|adaptive  2, 3 and 4 ranks give one context's latent (fp32 tolerance) and
 *                       frames (one level of 255), guided, 8 frames, 2 steps
 *   staged              the same over 3 ranks with the exchanges through host memory
 *                       (VDIT_SP_EXCHANGE=host)
 *   cancel              a cancel from another thread mid-clip on 3 ranks ends it within
 *                       seconds as CANCELLED; the next clip on the context is right
 *   fail                each allocation of a 3-rank clip fails in turn, on whichever rank
 *                       makes it: every clip fails within seconds, the next is right
 *   too-many            5 ranks for a 4-head model: a clear error, no wait */
#include "backend.h"
#include "ctx.h"
#include "frames_out.h"
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vdit_model *model;
static vdit_gen_params params;
static size_t n_latent, n_bytes;
static float *ref;
static frames_out ref_rgb;

static void
fail (const char *what, GError *error)
{
  fprintf (stderr, "FAIL: %s: %s\n", what, error ? error->message : "");
  exit (1);
}

/* One clip on ctx against the reference; FALSE when it differs. */
static gboolean
same_as_reference (vdit_ctx *ctx, const char *what)
{
  GError *error = NULL;
  float *got = g_new (float, n_latent);
  frames_out rgb = { 0 };
  params.user_data = &rgb;
  if (!vdit_generate_latent (ctx, &params, got, &error))
    fail (what, error);
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < n_latent; i++) {
    max_diff = fmax (max_diff, fabs ((double) ref[i] - got[i]));
    max_ref = fmax (max_ref, fabs ((double) ref[i]));
  }
  int max_byte = 0;
  for (size_t i = 0; rgb.frames == params.frames && i < n_bytes; i++)
    max_byte = MAX (max_byte, abs ((int) ref_rgb.rgb[i] - (int) rgb.rgb[i]));
  printf ("%s: %d frames; latent max |diff| %.3g (max |value| %.3g), frame bytes max |diff| "
          "%d\n", what, rgb.frames, max_diff, max_ref, max_byte);
  g_free (got);
  g_free (rgb.rgb);
  /* fp32: the same sums in another order (GEMMs of fewer rows, attention of fewer heads) */
  return rgb.frames == params.frames && max_diff <= 1e-4 * fmax (1.0, max_ref) && max_byte <= 1;
}

static vdit_ctx *
ranks_ctx (int ranks)
{
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  cp.threads = 1;
  GError *error = NULL;
  vdit_ctx *ctx = vdit_ctx_new_ranks (model, &cp, ranks, &error);
  if (ctx == NULL)
    fail ("context", error);
  return ctx;
}

static gpointer
cancel_later (gpointer data)
{
  g_usleep (300 * 1000);
  vdit_cancel (data);
  return NULL;
}

static int
run_cancel (void)
{
  vdit_ctx *ctx = ranks_ctx (3);
  vdit_gen_params longer = params;
  longer.steps = 5000; /* minutes on one core: the cancel must come first */
  longer.user_data = NULL;
  longer.on_frame = NULL;
  GError *error = NULL;
  GThread *canceller = g_thread_new ("cancel", cancel_later, ctx);
  const gint64 t0 = g_get_monotonic_time ();
  const gboolean ran = vdit_generate (ctx, &longer, &error);
  const double secs = (g_get_monotonic_time () - t0) / 1e6;
  g_thread_join (canceller);
  if (ran || !g_error_matches (error, VDIT_ERROR, VDIT_ERROR_CANCELLED))
    fail ("a cancelled clip did not fail as cancelled", error);
  printf ("cancelled after %.2f s: %s\n", secs, error->message);
  g_clear_error (&error);
  if (secs > 10.0)
    fail ("the cancel took more than 10 s", NULL);
  vdit_reset_cancel (ctx);
  const gboolean ok = same_as_reference (ctx, "3 ranks after a cancel");
  vdit_ctx_free (ctx);
  return ok ? 0 : 1;
}

static int
run_fail (void)
{
  vdit_ctx *ctx = ranks_ctx (3);
  int failed = 0;
  for (int n = 1; n < 2000; n++) {
    GError *error = NULL;
    params.on_frame = NULL;
    vdit_fault_alloc_fail_in (n);
    const gint64 t0 = g_get_monotonic_time ();
    params.user_data = NULL;
    const gboolean ran = vdit_generate (ctx, &params, &error);
    const double secs = (g_get_monotonic_time () - t0) / 1e6;
    const gboolean fired = vdit_fault_alloc_fail_in (0) == 0;
    if (ran && !fired)
      break; /* every allocation of the clip has failed once */
    if (ran) {
      fprintf (stderr, "FAIL: allocation %d failed but the clip succeeded\n", n);
      return 1;
    }
    if (secs > 10.0) {
      fprintf (stderr, "FAIL: allocation %d: the clip took %.1f s to fail: %s\n", n, secs,
               error->message);
      return 1;
    }
    if (n <= 3 || n % 25 == 0)
      printf ("allocation %d: failed in %.2f s: %s\n", n, secs, error->message);
    g_clear_error (&error);
    failed++;
  }
  params.on_frame = keep_frame;
  printf ("%d clips failed, one allocation each\n", failed);
  const gboolean ok = failed > 10 && same_as_reference (ctx, "3 ranks after the failures");
  vdit_ctx_free (ctx);
  return ok ? 0 : 1;
}

int
main (int argc, char **argv)
{
  if (argc != 3) {
    fprintf (stderr, "usage: sp_threads_check MODEL_DIR CASE\n");
    return 2;
  }
  const char *mode = argv[2];
  g_setenv ("VDIT_COMM_TIMEOUT", "30", TRUE); /* a hang fails the test, not the suite */
  GError *error = NULL;
  if (!(model = vdit_model_load (argv[1], &error)))
    fail ("model", error);
  vdit_gen_params_init (&params);
  params.prompt = "a red ball rolls to the left";
  params.negative_prompt = "blurry";
  params.frames = 8;
  params.steps = 2;
  params.guidance = 4.0f;
  params.seed = 7;
  params.attention = VDIT_ATTENTION_ADAPTIVE;
  if (!vdit_attention_from_name (mode, &params.attention) &&
      !g_str_equal (mode, "staged") && !g_str_equal (mode, "cancel") &&
      !g_str_equal (mode, "fail") && !g_str_equal (mode, "too-many")) {
    fprintf (stderr, "sp_threads_check: unknown case %s\n", mode);
    return 2;
  }
  const vdit_config *cfg = vdit_model_get_config (model);
  n_latent = (size_t) vdit_model_latent_frames (model, params.frames) * cfg->height *
             cfg->width * cfg->dit.in_channels;
  n_bytes = (size_t) params.frames * cfg->width * cfg->height * 3;
  ref = g_new (float, n_latent);
  params.on_frame = keep_frame;
  params.user_data = &ref_rgb;
  vdit_ctx *one = ranks_ctx (1);
  if (!vdit_generate_latent (one, &params, ref, &error))
    fail ("one rank", error);
  vdit_ctx_free (one);

  int status = 0;
  if (g_str_equal (mode, "cancel")) {
    status = run_cancel ();
  } else if (g_str_equal (mode, "fail")) {
    status = run_fail ();
  } else if (g_str_equal (mode, "too-many")) {
    vdit_ctx *ctx = ranks_ctx (5);
    const gint64 t0 = g_get_monotonic_time ();
    const gboolean ran = vdit_generate (ctx, &params, &error);
    const double secs = (g_get_monotonic_time () - t0) / 1e6;
    if (ran || strstr (error->message, "use at most 4 ranks") == NULL || secs > 10.0)
      fail ("5 ranks for 4 heads", error);
    printf ("5 ranks: %s (%.2f s)\n", error->message, secs);
    g_clear_error (&error);
    vdit_ctx_free (ctx);
  } else {
    if (g_str_equal (mode, "staged"))
      g_setenv ("VDIT_SP_EXCHANGE", "host", TRUE);
    for (int ranks = 2; ranks <= 4; ranks++) {
      if (g_str_equal (mode, "staged") && ranks != 3)
        continue;
      vdit_ctx *ctx = ranks_ctx (ranks);
      g_autofree char *what = g_strdup_printf ("%s, %s, %d ranks in one process",
                                               vdit_model_get_info (model)->name, mode, ranks);
      if (!same_as_reference (ctx, what))
        status = 1;
      vdit_ctx_free (ctx);
    }
  }
  g_free (ref);
  g_free (ref_rgb.rgb);
  vdit_model_free (model);
  return status;
}
