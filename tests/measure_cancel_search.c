/* How long vdit_cancel takes to stop an adaptive-attention generation of 4096 frames of
 * the tiny model when it comes during step 1, the first search step (a dense pass with
 * log-sum-exps, block scores, then sparse attention per layer). A measurement for
 * docs/reliability.md, run in suite 'soak': prints the latency, fails only when the
 * generation was not cancelled. */
#include "test_util.h"

typedef struct {
  vdit_ctx *ctx;
  GMutex lock;
  GCond cond;
  gboolean searching;
  gint64 cancelled_at;
} canceller;

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  canceller *c = user_data;
  if (stage == VDIT_STAGE_DENOISE && step == 1) { /* step 0 done: step 1 searches */
    g_mutex_lock (&c->lock);
    c->searching = TRUE;
    g_cond_signal (&c->cond);
    g_mutex_unlock (&c->lock);
  }
}

static gpointer
cancel_in_search (gpointer data)
{
  canceller *c = data;
  g_mutex_lock (&c->lock);
  while (!c->searching)
    g_cond_wait (&c->cond, &c->lock);
  g_mutex_unlock (&c->lock);
  g_usleep (300 * 1000);
  c->cancelled_at = g_get_monotonic_time ();
  vdit_cancel (c->ctx);
  return NULL;
}

int
main (void)
{
  vdit_model *model;
  vdit_ctx *ctx;
  GError *error = NULL;
  test_load_tiny (&model, &ctx);
  canceller c = { .ctx = ctx };
  g_mutex_init (&c.lock);
  g_cond_init (&c.cond);
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a red circle moving left";
  p.frames = 4096;
  p.steps = 5; /* warm-up 0.2: step 0 dense, step 1 the first search */
  p.guidance = 0.0f;
  p.attention = VDIT_ATTENTION_ADAPTIVE;
  p.progress = on_progress;
  p.user_data = &c;
  GThread *t = g_thread_new ("cancel", cancel_in_search, &c);
  const gboolean ok = vdit_generate (ctx, &p, &error);
  const gint64 returned = g_get_monotonic_time ();
  g_thread_join (t);
  if (ok || !g_error_matches (error, VDIT_ERROR, VDIT_ERROR_CANCELLED)) {
    g_printerr ("not cancelled: %s\n", error ? error->message : "finished");
    return 1;
  }
  g_print ("cancel latency in the adaptive search step: %.1f ms\n",
           (returned - c.cancelled_at) / 1000.0);
  g_clear_error (&error);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
  return 0;
}
