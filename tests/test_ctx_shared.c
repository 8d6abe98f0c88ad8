/* vdit_ctx_new_shared: contexts on one set of uploaded weights generate at the same
 * time from different threads, each as a context of its own would, and a cancel stops
 * only its own generation. */
#include "ctx.h"
#include "model.h"
#include "test_util.h"

#include <string.h>

typedef struct {
  vdit_ctx *ctx;
  vdit_gen_params p;
  float *latent;
  gboolean ok;
  GError *error;
} gen_job;

static gpointer
run_job (gpointer data)
{
  gen_job *j = data;
  j->ok = vdit_generate_latent (j->ctx, &j->p, j->latent, &j->error);
  return NULL;
}

static size_t
latent_size (vdit_model *model, int frames)
{
  const vdit_config *cfg = vdit_model_get_config (model);
  return (size_t) vdit_model_latent_frames (model, frames) * cfg->height * cfg->width *
         cfg->dit.in_channels;
}

static void
job_init (gen_job *j, vdit_ctx *ctx, vdit_model *model, const char *prompt)
{
  memset (j, 0, sizeof *j);
  j->ctx = ctx;
  vdit_gen_params_init (&j->p);
  j->p.prompt = prompt;
  j->p.frames = 8;
  j->p.steps = 6;
  j->p.seed = 11;
  j->latent = g_new0 (float, latent_size (model, 8));
}

static void
test_concurrent_same_result (void)
{
  vdit_model *model;
  vdit_ctx *base;
  GError *error = NULL;
  test_load_tiny (&model, &base);
  const size_t n = latent_size (model, 8);

  gen_job ref[2];
  job_init (&ref[0], base, model, "a red circle moving left");
  job_init (&ref[1], base, model, "a blue square moving up");
  run_job (&ref[0]);
  run_job (&ref[1]);
  g_assert_true (ref[0].ok && ref[1].ok);
  g_assert_cmpint (memcmp (ref[0].latent, ref[1].latent, n * sizeof (float)), !=, 0);

  /* four generations at once: two prompts, twice each, on three shared contexts and
   * the base */
  vdit_ctx *shared[3];
  for (int i = 0; i < 3; i++) {
    shared[i] = vdit_ctx_new_shared (base, NULL, NULL, &error);
    g_assert_no_error (error);
  }
  gen_job jobs[4];
  GThread *threads[4];
  for (int i = 0; i < 4; i++) {
    job_init (&jobs[i], i < 3 ? shared[i] : base, model, ref[i % 2].p.prompt);
    threads[i] = g_thread_new ("gen", run_job, &jobs[i]);
  }
  for (int i = 0; i < 4; i++) {
    g_thread_join (threads[i]);
    g_assert_no_error (jobs[i].error);
    g_assert_true (jobs[i].ok);
    g_assert_cmpint (memcmp (jobs[i].latent, ref[i % 2].latent, n * sizeof (float)), ==, 0);
    g_free (jobs[i].latent);
  }
  g_free (ref[0].latent);
  g_free (ref[1].latent);
  for (int i = 0; i < 3; i++)
    vdit_ctx_free (shared[i]);
  vdit_ctx_free (base);
  vdit_model_free (model);
}

static void
test_cancel_is_per_context (void)
{
  vdit_model *model;
  vdit_ctx *base;
  GError *error = NULL;
  test_load_tiny (&model, &base);
  vdit_ctx *a = vdit_ctx_new_shared (base, NULL, NULL, &error);
  g_assert_no_error (error);
  vdit_ctx *b = vdit_ctx_new_shared (base, NULL, NULL, &error);
  g_assert_no_error (error);

  gen_job ja, jb;
  job_init (&ja, a, model, "a red circle");
  job_init (&jb, b, model, "a red circle");
  vdit_cancel (a); /* a's next generation stops; b's and the base's do not */
  run_job (&ja);
  run_job (&jb);
  g_assert_error (ja.error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_assert_no_error (jb.error);
  g_assert_true (jb.ok);
  g_clear_error (&ja.error);

  /* freeing the shared contexts leaves the base working */
  vdit_ctx_free (a);
  vdit_ctx_free (b);
  gen_job jc;
  job_init (&jc, base, model, "a red circle");
  run_job (&jc);
  g_assert_no_error (jc.error);
  g_assert_cmpint (memcmp (jc.latent, jb.latent, latent_size (model, 8) * sizeof (float)), ==,
                   0);
  g_free (ja.latent);
  g_free (jb.latent);
  g_free (jc.latent);
  vdit_ctx_free (base);
  vdit_model_free (model);
}

/* The base holds the weights its views run on: freeing it first is refused (a critical
 * naming the rule), not a use of freed (device) memory. */
static void
test_base_outlives_views (void)
{
  if (g_test_subprocess ()) {
    vdit_model *model;
    vdit_ctx *base;
    test_load_tiny (&model, &base);
    vdit_ctx *view = vdit_ctx_new_shared (base, NULL, NULL, NULL);
    g_assert_nonnull (view);
    vdit_ctx_free (base); /* fatal under G_DEBUG=fatal-criticals */
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*vdit_ctx_free*views*");

  /* in the right order nothing is said */
  vdit_model *model;
  vdit_ctx *base;
  test_load_tiny (&model, &base);
  vdit_ctx *view = vdit_ctx_new_shared (base, NULL, NULL, NULL);
  vdit_ctx_free (view);
  vdit_ctx_free (base);
  vdit_model_free (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ctx-shared/base-outlives-views", test_base_outlives_views);
  g_test_add_func ("/ctx-shared/concurrent-same-result", test_concurrent_same_result);
  g_test_add_func ("/ctx-shared/cancel-is-per-context", test_cancel_is_per_context);
  return g_test_run ();
}
