/* Generations handed from rank 0 to the other ranks: a job is a GVariant, broadcast as
 * its length then its bytes. */
#include "worker.h"

#include "ctx.h"

#include <string.h>

/* (model dir, prompt, negative prompt, frames, steps, guidance, seed, attention,
 * sparsity); an empty model dir is the stop */
#define JOB_TYPE "(sssiidtid)"

/* A wait with no bound: 30 years. */
#define FOREVER_S 1e9

static gboolean
broadcast_job (const vdit_comm *comm, GVariant *job, GError **error)
{
  guint64 size = g_variant_get_size (job);
  return vdit_comm_broadcast (comm, &size, sizeof size, 0, error) &&
         vdit_comm_broadcast (comm, (void *) g_variant_get_data (job), size, 0, error);
}

gboolean
vdit_sp_job_send (const vdit_comm *comm, const char *model_dir, const vdit_gen_params *p,
                  GError **error)
{
  g_autoptr (GVariant) job = g_variant_ref_sink (g_variant_new (
    JOB_TYPE, model_dir, p->prompt ? p->prompt : "",
    p->negative_prompt ? p->negative_prompt : "", p->frames, p->steps, (double) p->guidance,
    (guint64) p->seed, (gint32) p->attention, (double) p->sparsity));
  return broadcast_job (comm, job, error);
}

gboolean
vdit_sp_job_send_stop (const vdit_comm *comm, GError **error)
{
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  return vdit_sp_job_send (comm, "", &p, error);
}

/* The next job from rank 0; idle bounds the wait for its length. */
static GVariant *
receive_job (const vdit_comm *comm, double idle_timeout_s, GError **error)
{
  vdit_comm idle = *comm;
  idle.timeout_s = idle_timeout_s > 0.0 ? idle_timeout_s : FOREVER_S;
  guint64 size = 0;
  if (!vdit_comm_broadcast (&idle, &size, sizeof size, 0, error))
    return NULL;
  if (size > (1u << 30)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "rank 0 announced a job of %" G_GUINT64_FORMAT " bytes: not a vdit job",
                 size);
    return NULL;
  }
  void *data = g_malloc (MAX (size, 1));
  if (!vdit_comm_broadcast (comm, data, size, 0, error)) {
    g_free (data);
    return NULL;
  }
  GVariant *job = g_variant_new_from_data (G_VARIANT_TYPE (JOB_TYPE), data, size, FALSE,
                                           g_free, data);
  return g_variant_ref_sink (job);
}

/* A received job's fields (pointing into job). FALSE for the stop. */
static gboolean
parse_job (GVariant *job, const char **dir, vdit_gen_params *p)
{
  const char *prompt, *negative;
  double guidance, sparsity;
  guint64 seed;
  gint32 attention;
  vdit_gen_params_init (p);
  g_variant_get (job, "(&s&s&siidtid)", dir, &prompt, &negative, &p->frames, &p->steps,
                 &guidance, &seed, &attention, &sparsity);
  p->prompt = prompt;
  p->negative_prompt = *negative ? negative : NULL;
  p->guidance = (float) guidance;
  p->seed = seed;
  p->attention = (VditAttention) attention;
  p->sparsity = (float) sparsity;
  return **dir != '\0';
}

gboolean
vdit_worker_serve (const vdit_comm *comm, vdit_model *model, const vdit_ctx_params *ctx_params,
                   double idle_timeout_s, GError **error)
{
  vdit_model *own = NULL;
  vdit_ctx *ctx = NULL;
  gboolean ok = FALSE;
  for (;;) {
    GVariant *job = receive_job (comm, idle_timeout_s, error);
    if (job == NULL)
      break;
    const char *dir;
    vdit_gen_params p;
    if (!parse_job (job, &dir, &p)) { /* the stop */
      g_variant_unref (job);
      ok = TRUE;
      break;
    }
    vdit_model *current = own ? own : model;
    if (current == NULL || !g_str_equal (vdit_model_get_info (current)->path, dir)) {
      vdit_ctx_free (g_steal_pointer (&ctx));
      vdit_model_free (g_steal_pointer (&own));
      model = NULL;
      current = own = vdit_model_load (dir, error);
    }
    if (current && ctx == NULL) {
      ctx = vdit_ctx_new (current, ctx_params, error);
      if (ctx && !vdit_ctx_set_comm (ctx, comm, error))
        vdit_ctx_free (g_steal_pointer (&ctx));
    }
    const gboolean ran = ctx != NULL && vdit_generate (ctx, &p, error);
    g_variant_unref (job);
    if (!ran)
      break;
  }
  vdit_ctx_free (ctx);
  vdit_model_free (own);
  return ok;
}

gboolean
vdit_worker_serve_ctx (const vdit_comm *comm, vdit_ctx *ctx, GError **error)
{
  for (;;) {
    GVariant *job = receive_job (comm, 0.0, error);
    if (job == NULL)
      return FALSE;
    const char *dir;
    vdit_gen_params p;
    if (!parse_job (job, &dir, &p)) {
      g_variant_unref (job);
      return TRUE;
    }
    const char *path = vdit_model_get_info (vdit_ctx_get_model (ctx))->path;
    gboolean ran = g_strcmp0 (path, dir) == 0;
    if (!ran)
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "rank %d serves model %s, but rank 0 asks for %s", vdit_comm_rank (comm),
                   path, dir);
    ran = ran && vdit_generate (ctx, &p, error);
    g_variant_unref (job);
    if (!ran)
      return FALSE;
  }
}
