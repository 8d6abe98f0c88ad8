/* In-process ranks: helper threads serving rank 0 (sp_group.h). */
#include "sp_group.h"

#include "ctx.h"
#include "worker.h"

typedef struct {
  vdit_sp_group *g;
  int rank;
  vdit_ctx *ctx; /* under g->lock once set; NULL after the thread ends */
  GThread *thread;
} helper;

struct vdit_sp_group {
  int n;
  vdit_model *model;
  vdit_ctx_params params; /* rank 0's */
  int first_device;       /* −1: CPU ranks */
  int *devices;           /* (n) GPU ranks */
  vdit_comm *comms;       /* (n) thread communicator */
  vdit_comm *nccl;        /* (n) on GPUs, else NULL */
  double timeout_s;
  helper *helpers;        /* (n); [0] is rank 0, no thread */
  GMutex lock;
  GCond cond;
  int started;      /* helpers done setting up */
  char *setup_error;
  int idle;         /* helpers out of a broken clip, waiting for resume */
  guint64 resume;   /* bumped to send idle helpers back to serving */
  gboolean quit;
  gboolean failed;  /* rank 0 broke a clip off */
};

static gpointer
helper_main (gpointer data)
{
  helper *h = data;
  vdit_sp_group *g = h->g;
  vdit_ctx_params cp = g->params;
  cp.log = NULL; /* the host's log is called from its own thread only */
  cp.log_user_data = NULL;
  if (g->first_device >= 0)
    cp.device_id = g->first_device + h->rank;
  GError *error = NULL;
  vdit_ctx *ctx = vdit_ctx_new (g->model, &cp, &error);
  if (ctx && !vdit_ctx_set_comms (ctx, &g->comms[h->rank], g->nccl ? &g->nccl[h->rank] : NULL,
                                  &error))
    vdit_ctx_free (g_steal_pointer (&ctx));
  g_mutex_lock (&g->lock);
  h->ctx = ctx;
  if (ctx == NULL && g->setup_error == NULL)
    g->setup_error = g_strdup_printf ("rank %d of %d: %s", h->rank, g->n, error->message);
  g->started++;
  g_cond_broadcast (&g->cond);
  g_mutex_unlock (&g->lock);
  g_clear_error (&error);
  if (ctx == NULL)
    return NULL;
  for (;;) {
    if (vdit_worker_serve_ctx (&g->comms[h->rank], ctx, &error))
      break; /* rank 0's stop */
    /* the others must not wait for this rank: they leave their collectives now */
    vdit_comm_abort (&g->comms[h->rank], 1, error->message);
    g_clear_error (&error);
    g_mutex_lock (&g->lock);
    g->idle++;
    g_cond_broadcast (&g->cond);
    const guint64 resume = g->resume;
    while (!g->quit && g->resume == resume)
      g_cond_wait (&g->cond, &g->lock);
    const gboolean quit = g->quit;
    g_mutex_unlock (&g->lock);
    if (quit)
      break;
    vdit_reset_cancel (ctx);
  }
  g_mutex_lock (&g->lock);
  h->ctx = NULL;
  g_mutex_unlock (&g->lock);
  vdit_ctx_free (ctx);
  return NULL;
}

static gboolean
make_nccl (vdit_sp_group *g, GError **error)
{
  if (g->first_device < 0)
    return TRUE;
  g->nccl = g_new0 (vdit_comm, g->n);
  if (!vdit_comm_nccl_init_all (g->nccl, g->n, g->devices, vdit_comm_threads_watch (&g->comms[0]),
                                error)) {
    g_clear_pointer (&g->nccl, g_free);
    return FALSE;
  }
  for (int i = 0; i < g->n; i++)
    g->nccl[i].timeout_s = g->timeout_s;
  return TRUE;
}

static void
free_nccl (vdit_sp_group *g)
{
  for (int i = 0; g->nccl && i < g->n; i++)
    vdit_comm_free (&g->nccl[i]);
  g_clear_pointer (&g->nccl, g_free);
}

vdit_sp_group *
vdit_sp_group_new (vdit_model *model, const vdit_ctx_params *params, int ranks,
                   int first_device, GError **error)
{
  vdit_sp_group *g = g_new0 (vdit_sp_group, 1);
  g->n = ranks;
  g->model = model;
  g->params = *params;
  g->params.gpus = 1;
  g->first_device = first_device;
  g_mutex_init (&g->lock);
  g_cond_init (&g->cond);
  const char *timeout = g_getenv ("VDIT_COMM_TIMEOUT");
  if (timeout != NULL && g_ascii_strtod (timeout, NULL) > 0.0)
    g->timeout_s = g_ascii_strtod (timeout, NULL);
  g->comms = g_new0 (vdit_comm, ranks);
  vdit_comm_threads_init (g->comms, ranks);
  for (int i = 0; i < ranks; i++)
    g->comms[i].timeout_s = g->timeout_s;
  g->devices = g_new (int, ranks);
  for (int i = 0; i < ranks; i++)
    g->devices[i] = first_device + i;
  g->helpers = g_new0 (helper, ranks);
  if (!make_nccl (g, error)) {
    vdit_sp_group_free (g);
    return NULL;
  }
  for (int i = 1; i < ranks; i++) {
    g->helpers[i] = (helper) { .g = g, .rank = i };
    g->helpers[i].thread = g_thread_new ("vdit-rank", helper_main, &g->helpers[i]);
  }
  g_mutex_lock (&g->lock);
  while (g->started < ranks - 1)
    g_cond_wait (&g->cond, &g->lock);
  g_mutex_unlock (&g->lock);
  if (g->setup_error) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE, "%s", g->setup_error);
    vdit_sp_group_free (g);
    return NULL;
  }
  return g;
}

void
vdit_sp_group_free (vdit_sp_group *g)
{
  if (g == NULL)
    return;
  g_mutex_lock (&g->lock);
  g->quit = TRUE;
  g_cond_broadcast (&g->cond);
  g_mutex_unlock (&g->lock);
  /* helpers waiting for a job (or inside one) leave at once: no stop message to deliver */
  vdit_sp_group_cancel (g, TRUE);
  vdit_comm_abort (&g->comms[0], 1, "the context is freed");
  for (int i = 1; i < g->n; i++)
    if (g->helpers[i].thread)
      g_thread_join (g->helpers[i].thread);
  free_nccl (g);
  for (int i = 0; i < g->n; i++)
    vdit_comm_free (&g->comms[i]);
  g_free (g->comms);
  g_free (g->devices);
  g_free (g->helpers);
  g_free (g->setup_error);
  g_mutex_clear (&g->lock);
  g_cond_clear (&g->cond);
  g_free (g);
}

const vdit_comm *
vdit_sp_group_comm (vdit_sp_group *g)
{
  return &g->comms[0];
}

const vdit_comm *
vdit_sp_group_exchange (vdit_sp_group *g)
{
  return g->nccl ? &g->nccl[0] : NULL;
}

void
vdit_sp_group_cancel (vdit_sp_group *g, gboolean cancel)
{
  g_mutex_lock (&g->lock);
  for (int i = 1; i < g->n; i++)
    if (g->helpers[i].ctx)
      (cancel ? vdit_cancel : vdit_reset_cancel) (g->helpers[i].ctx);
  g_mutex_unlock (&g->lock);
}

void
vdit_sp_group_fail (vdit_sp_group *g, const char *message)
{
  g_mutex_lock (&g->lock);
  g->failed = TRUE;
  g_mutex_unlock (&g->lock);
  vdit_comm_abort (&g->comms[0], 1, message);
  vdit_sp_group_cancel (g, TRUE); /* a helper computing stops within an op, not a block */
}

gboolean
vdit_sp_group_recover (vdit_sp_group *g, GError **error)
{
  const gint *broken = vdit_comm_threads_watch (&g->comms[0]);
  g_mutex_lock (&g->lock);
  if (!g->failed && !g_atomic_int_get (broken)) {
    g_mutex_unlock (&g->lock);
    return TRUE;
  }
  /* a helper that failed alone broke the group too: rank 0 saw it in a collective */
  const double timeout = g->timeout_s > 0.0 ? g->timeout_s : VDIT_COMM_DEFAULT_TIMEOUT_S;
  const gint64 deadline = g_get_monotonic_time () + (gint64) (timeout * 1e6);
  while (g->idle < g->n - 1)
    if (!g_cond_wait_until (&g->cond, &g->lock, deadline) && g->idle < g->n - 1) {
      const int idle = g->idle;
      g_mutex_unlock (&g->lock);
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "an earlier clip failed part-way and %d of the %d other ranks of this "
                   "process did not leave it within %.0f s", g->n - 1 - idle, g->n - 1, timeout);
      return FALSE;
    }
  g_mutex_unlock (&g->lock);
  /* every helper is idle: nothing touches the communicators */
  vdit_comm_threads_reset (&g->comms[0]);
  if (g->first_device >= 0) { /* an NCCL communicator aborted part-way cannot be reused */
    free_nccl (g);
    if (!make_nccl (g, error))
      return FALSE;
    g_mutex_lock (&g->lock);
    for (int i = 1; i < g->n; i++)
      if (g->helpers[i].ctx)
        vdit_ctx_set_comms (g->helpers[i].ctx, &g->comms[i], &g->nccl[i], NULL);
    g_mutex_unlock (&g->lock);
  }
  g_mutex_lock (&g->lock);
  g->idle = 0;
  g->failed = FALSE;
  g->resume++;
  g_cond_broadcast (&g->cond);
  g_mutex_unlock (&g->lock);
  return TRUE;
}
