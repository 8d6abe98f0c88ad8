/* The in-process communicator: n ranks, one host thread each, over shared memory. It
 * carries a parallel job inside one process (gpus=N in a GStreamer pipeline, where MPI
 * cannot start ranks) and lets the CPU run that orchestration in tests.
 *
 * Every collective is a rendezvous: each rank posts its arguments, waits until every
 * rank has, copies what it needs straight out of the others' buffers (each rank writes
 * only its own receive buffer), and waits again before returning so no rank reuses a
 * buffer another still reads. A wait past the deadline, a rank that aborts, or ranks in
 * different collectives break the group: every rank's pending and later collectives
 * fail at once, until vdit_comm_threads_reset. */
#include "comm.h"

#include "vdit.h"

#include <string.h>

typedef enum { OP_ALLTOALL, OP_ALLGATHER, OP_BROADCAST, OP_BARRIER } op_kind;

static const char *const op_names[] = { "all-to-all", "all-gather", "broadcast", "barrier" };

typedef struct {
  op_kind op;
  const void *send;
  const int *counts, *displs; /* all-to-all: send counts and displacements */
  size_t elem_size, bytes;
  int root;
} post;

typedef struct {
  GMutex lock;
  GCond cond;
  int n;
  gint refs;     /* atomic: ranks not freed yet */
  int arrived;   /* ranks in the current rendezvous */
  guint64 round; /* rendezvous completed */
  gint broken;   /* atomic: set once the group is broken (vdit_comm_threads_watch) */
  char *why;     /* what broke it */
  post *posts;   /* (n) */
} group;

typedef struct {
  group *g;
  int rank;
} rank_ctx;

/* Marks the group broken with why (the first reason stays). Lock held. */
static void
break_locked (group *g, char *why)
{
  if (g->why == NULL)
    g->why = why;
  else
    g_free (why);
  g_atomic_int_set (&g->broken, 1);
  g_cond_broadcast (&g->cond);
}

static gboolean
broken_error (rank_ctx *r, const char *what, GError **error)
{
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "rank %d of %d: in-process %s failed: %s",
               r->rank, r->g->n, what, r->g->why);
  return FALSE;
}

/* Waits until every rank has arrived at this rendezvous, or the deadline passes. */
static gboolean
meet (rank_ctx *r, const char *what, double timeout_s, GError **error)
{
  group *g = r->g;
  const gint64 deadline = g_get_monotonic_time () + (gint64) (MIN (timeout_s, 1e9) * 1e6);
  g_mutex_lock (&g->lock);
  gboolean ok = !g->broken;
  if (ok) {
    const guint64 round = g->round;
    if (++g->arrived == g->n) {
      g->arrived = 0;
      g->round++;
      g_cond_broadcast (&g->cond);
    }
    while (ok && g->round == round && !g->broken)
      if (!g_cond_wait_until (&g->cond, &g->lock, deadline) && g->round == round &&
          !g->broken)
        break_locked (g, g_strdup_printf ("rank %d waited %g s for the others: another rank "
                                          "failed, hung or took another path; raise the "
                                          "timeout for longer work", r->rank, timeout_s));
    ok = g->round != round;
  }
  if (!ok)
    broken_error (r, what, error);
  g_mutex_unlock (&g->lock);
  return ok;
}

/* Posts this rank's arguments and meets the others; checks they are in the same
 * collective. */
static gboolean
begin (rank_ctx *r, const post *p, double timeout_s, GError **error)
{
  group *g = r->g;
  const char *what = op_names[p->op];
  g_mutex_lock (&g->lock);
  g->posts[r->rank] = *p;
  g_mutex_unlock (&g->lock);
  if (!meet (r, what, timeout_s, error))
    return FALSE;
  for (int s = 0; s < g->n; s++)
    if (g->posts[s].op != p->op) {
      g_mutex_lock (&g->lock);
      break_locked (g, g_strdup_printf ("rank %d is in a %s while rank %d is in a %s", s,
                                        op_names[g->posts[s].op], r->rank, what));
      g_mutex_unlock (&g->lock);
      return broken_error (r, what, error);
    }
  return TRUE;
}

/* After the copies: a mismatch found by this rank breaks the group; then every rank
 * waits for the others to finish reading. */
static gboolean
end (rank_ctx *r, const char *what, char *mismatch, double timeout_s, GError **error)
{
  if (mismatch) {
    g_mutex_lock (&r->g->lock);
    break_locked (r->g, mismatch);
    g_mutex_unlock (&r->g->lock);
  }
  return meet (r, what, timeout_s, error);
}

static int
threads_rank (void *ctx)
{
  return ((rank_ctx *) ctx)->rank;
}

static int
threads_size (void *ctx)
{
  return ((rank_ctx *) ctx)->g->n;
}

static gboolean
threads_alltoallv (void *ctx, const void *send, const int *send_counts, const int *send_displs,
                   void *recv, const int *recv_counts, const int *recv_displs, size_t elem_size,
                   double timeout_s, GError **error)
{
  rank_ctx *r = ctx;
  group *g = r->g;
  const post p = { .op = OP_ALLTOALL, .send = send, .counts = send_counts,
                   .displs = send_displs, .elem_size = elem_size };
  if (!begin (r, &p, timeout_s, error))
    return FALSE;
  char *mismatch = NULL;
  for (int s = 0; s < g->n && mismatch == NULL; s++) {
    const post *from = &g->posts[s];
    if (from->counts[r->rank] != recv_counts[s] || from->elem_size != elem_size)
      mismatch = g_strdup_printf ("all-to-all: rank %d sends %d elements of %zu bytes to rank "
                                  "%d, which expects %d of %zu", s, from->counts[r->rank],
                                  from->elem_size, r->rank, recv_counts[s], elem_size);
    else
      memcpy ((char *) recv + (size_t) recv_displs[s] * elem_size,
              (const char *) from->send + (size_t) from->displs[r->rank] * elem_size,
              (size_t) recv_counts[s] * elem_size);
  }
  return end (r, "all-to-all", mismatch, timeout_s, error);
}

static gboolean
threads_allgatherv (void *ctx, const void *send, void *recv, const int *counts,
                    const int *displs, size_t elem_size, double timeout_s, GError **error)
{
  rank_ctx *r = ctx;
  group *g = r->g;
  const post p = { .op = OP_ALLGATHER, .send = send, .elem_size = elem_size,
                   .bytes = (size_t) counts[r->rank] * elem_size };
  if (!begin (r, &p, timeout_s, error))
    return FALSE;
  char *mismatch = NULL;
  for (int s = 0; s < g->n && mismatch == NULL; s++) {
    const post *from = &g->posts[s];
    if (from->bytes != (size_t) counts[s] * elem_size)
      mismatch = g_strdup_printf ("all-gather: rank %d gives %zu bytes, rank %d expects %zu",
                                  s, from->bytes, r->rank, (size_t) counts[s] * elem_size);
    else if (s != r->rank || (const char *) recv + (size_t) displs[s] * elem_size != send)
      memmove ((char *) recv + (size_t) displs[s] * elem_size, from->send, from->bytes);
  }
  return end (r, "all-gather", mismatch, timeout_s, error);
}

static gboolean
threads_broadcast (void *ctx, void *buf, size_t bytes, int root, double timeout_s,
                   GError **error)
{
  rank_ctx *r = ctx;
  group *g = r->g;
  if (root < 0 || root >= g->n) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "broadcast from rank %d, but the communicator has %d ranks", root, g->n);
    return FALSE;
  }
  const post p = { .op = OP_BROADCAST, .send = buf, .bytes = bytes, .root = root };
  if (!begin (r, &p, timeout_s, error))
    return FALSE;
  const post *from = &g->posts[root];
  char *mismatch = NULL;
  if (g->posts[r->rank].root != from->root || from->bytes != bytes)
    mismatch = g_strdup_printf ("broadcast: rank %d sends %zu bytes from rank %d, rank %d "
                                "expects %zu from rank %d", root, from->bytes, from->root,
                                r->rank, bytes, root);
  else if (r->rank != root)
    memcpy (buf, from->send, bytes);
  return end (r, "broadcast", mismatch, timeout_s, error);
}

static gboolean
threads_barrier (void *ctx, double timeout_s, GError **error)
{
  /* the second meeting keeps a fast rank's next post from the others' check of this one */
  const post p = { .op = OP_BARRIER };
  return begin (ctx, &p, timeout_s, error) && end (ctx, "barrier", NULL, timeout_s, error);
}

/* A rank that cannot go on: every other rank leaves its collective with the message. */
static void
threads_abort (void *ctx, int code, const char *message)
{
  rank_ctx *r = ctx;
  g_mutex_lock (&r->g->lock);
  break_locked (r->g, g_strdup_printf ("rank %d: %s", r->rank, message ? message : "failed"));
  g_mutex_unlock (&r->g->lock);
}

static void
threads_free (void *ctx)
{
  rank_ctx *r = ctx;
  group *g = r->g;
  g_free (r);
  if (!g_atomic_int_dec_and_test (&g->refs))
    return;
  g_mutex_clear (&g->lock);
  g_cond_clear (&g->cond);
  g_free (g->why);
  g_free (g->posts);
  g_free (g);
}

static const vdit_comm_i threads_iface = {
  /* .name = */ "threads",
  /* .free = */ threads_free,
  /* .rank = */ threads_rank,
  /* .size = */ threads_size,
  /* .alltoallv = */ threads_alltoallv,
  /* .allgatherv = */ threads_allgatherv,
  /* .broadcast = */ threads_broadcast,
  /* .barrier = */ threads_barrier,
  /* .abort = */ threads_abort,
  /* .device_buffers = */ FALSE,
};

void
vdit_comm_threads_init (vdit_comm *comms, int n)
{
  group *g = g_new0 (group, 1);
  g_mutex_init (&g->lock);
  g_cond_init (&g->cond);
  g->n = n;
  g->refs = n;
  g->posts = g_new0 (post, n);
  for (int i = 0; i < n; i++) {
    rank_ctx *r = g_new0 (rank_ctx, 1);
    *r = (rank_ctx) { .g = g, .rank = i };
    comms[i] = (vdit_comm) { .iface = &threads_iface, .context = r, .timeout_s = 0.0 };
  }
}

static group *
group_of (const vdit_comm *comm)
{
  g_return_val_if_fail (comm->iface == &threads_iface, NULL);
  return ((rank_ctx *) comm->context)->g;
}

const gint *
vdit_comm_threads_watch (const vdit_comm *comm)
{
  group *g = group_of (comm);
  return g ? &g->broken : NULL;
}

void
vdit_comm_threads_reset (const vdit_comm *comm)
{
  group *g = group_of (comm);
  if (g == NULL)
    return;
  g_mutex_lock (&g->lock);
  g->arrived = 0;
  g->round++;
  g_clear_pointer (&g->why, g_free);
  g_atomic_int_set (&g->broken, 0);
  g_mutex_unlock (&g->lock);
}

gboolean
vdit_comm_is_threads (const vdit_comm *comm)
{
  return comm->iface == &threads_iface;
}
