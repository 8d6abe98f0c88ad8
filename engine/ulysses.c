/* Ulysses sequence parallelism: the two all-to-alls around self-attention.
 *
 * Direct: each destination's heads are packed on the backend (copy_rows) and the
 * exchange communicator moves the backend's buffers itself: NCCL between GPUs, or MPI and
 * the thread communicator on the CPU backend, whose buffers are host memory. Staged: a
 * GPU backend under a host communicator (MPI without NCCL) downloads, exchanges in host
 * memory and uploads. */
#include "ulysses.h"

#include "backend_util.h"
#include "vdit.h"

#include <string.h>

struct vdit_ulysses {
  vdit_backend *be;
  const vdit_comm *comm;     /* host-side collectives (gathered rows) */
  const vdit_comm *exchange; /* the all-to-alls */
  gboolean direct;           /* the exchange takes backend buffers */
  int rank, size;
  int n, heads, hd;
  int *tok_counts, *tok_displs;   /* (size) tokens per rank */
  int *head_counts, *head_displs; /* (size) heads per rank */
  /* element counts of the exchanges, (size) each */
  int *in_send_c, *in_send_d, *in_recv_c, *in_recv_d;
  int *out_send_c, *out_send_d, *out_recv_c, *out_recv_d;
  float *qkv_host;  /* (tokens_r, 3·D) as downloaded */
  float *send_host; /* (Σ tokens_r·3·heads_s·hd) packed per destination */
  float *full_host; /* (n, 3·heads_r·hd) */
  float *att_host;  /* (n, heads_r·hd) */
  float *back_host; /* (Σ tokens_r·heads_s·hd) from each rank */
  void *qkv_full;   /* backend (n, 3·heads_r·hd) */
  void *att_full;   /* backend (n, heads_r·hd) */
  void *send_buf;   /* direct: backend, as send_host */
  void *back_buf;   /* direct: backend, as back_host */
};

static gboolean
too_large (int64_t elems, const char *what, GError **error)
{
  if (elems <= G_MAXINT)
    return FALSE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
               "sequence parallelism: %s of %" G_GINT64_FORMAT " values is more than one "
               "exchange can carry (%d): use more ranks", what, elems, G_MAXINT);
  return TRUE;
}

vdit_ulysses *
vdit_ulysses_new (vdit_backend *be, const vdit_comm *comm, const vdit_comm *exchange,
                  int tokens, int heads, int head_dim, GError **error)
{
  const int size = vdit_comm_size (comm);
  if (exchange == NULL)
    exchange = comm;
  /* host_alloc is NULL exactly where the backend's buffers are host memory */
  const gboolean takes_buffers = exchange->iface->device_buffers || be->iface->host_alloc == NULL;
  const gboolean force_host = g_strcmp0 (g_getenv ("VDIT_SP_EXCHANGE"), "host") == 0;
  if (comm->iface->device_buffers ||
      vdit_comm_size (exchange) != size || vdit_comm_rank (exchange) != vdit_comm_rank (comm) ||
      (exchange->iface->device_buffers && (force_host || !be->iface->copy_rows))) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "sequence parallelism: the %s communicator cannot carry the %s backend's "
                 "exchanges with the %s communicator (rank %d of %d) beside it",
                 exchange->iface->name, be->iface->name, comm->iface->name,
                 vdit_comm_rank (comm), size);
    return NULL;
  }
  if (heads < size || tokens < size) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "sequence parallelism over %d ranks needs at least one attention head and "
                 "one token per rank, but the model has %d heads and the clip %d tokens: "
                 "use at most %d ranks", size, heads, tokens, MIN (heads, tokens));
    return NULL;
  }
  const int64_t d = (int64_t) heads * head_dim;
  if (too_large ((int64_t) tokens * 3 * d / size + 3 * d, "a rank's q, k and v", error) ||
      too_large ((int64_t) tokens * 3 * ((heads + size - 1) / size) * head_dim,
                 "a rank's heads over every token", error))
    return NULL;
  vdit_ulysses *u = g_new0 (vdit_ulysses, 1);
  u->be = be;
  u->comm = comm;
  u->exchange = exchange;
  u->direct = takes_buffers && be->iface->copy_rows && !force_host;
  u->rank = vdit_comm_rank (comm);
  u->size = size;
  u->n = tokens;
  u->heads = heads;
  u->hd = head_dim;
  u->tok_counts = g_new (int, size);
  u->tok_displs = g_new (int, size);
  u->head_counts = g_new (int, size);
  u->head_displs = g_new (int, size);
  vdit_comm_split (tokens, size, u->tok_counts, u->tok_displs);
  vdit_comm_split (heads, size, u->head_counts, u->head_displs);
  int **arrays[] = { &u->in_send_c, &u->in_send_d, &u->in_recv_c, &u->in_recv_d,
                     &u->out_send_c, &u->out_send_d, &u->out_recv_c, &u->out_recv_d };
  for (guint i = 0; i < G_N_ELEMENTS (arrays); i++)
    *arrays[i] = g_new (int, size);
  const int me_t = u->tok_counts[u->rank], me_h = u->head_counts[u->rank];
  int at_send = 0, at_recv = 0;
  for (int s = 0; s < size; s++) {
    /* in: my rows of s's heads (q, k, v) go to s; s's rows of my heads come from s */
    u->in_send_c[s] = me_t * 3 * u->head_counts[s] * head_dim;
    u->in_send_d[s] = at_send;
    at_send += u->in_send_c[s];
    u->in_recv_c[s] = u->tok_counts[s] * 3 * me_h * head_dim;
    u->in_recv_d[s] = at_recv;
    at_recv += u->in_recv_c[s];
    /* out: s's rows of my heads go back to s; my rows of s's heads come from s */
    u->out_send_c[s] = u->tok_counts[s] * me_h * head_dim;
    u->out_send_d[s] = u->tok_displs[s] * me_h * head_dim;
    u->out_recv_c[s] = me_t * u->head_counts[s] * head_dim;
    u->out_recv_d[s] = me_t * u->head_displs[s] * head_dim;
  }
  const size_t local = (size_t) me_t * 3 * d, full = (size_t) tokens * 3 * me_h * head_dim;
  if (!(u->qkv_full = vdit_be_alloc (be, full, error)) ||
      !(u->att_full = vdit_be_alloc (be, full / 3, error)))
    goto fail;
  if (u->direct) {
    if (!(u->send_buf = vdit_be_alloc (be, local, error)) ||
        !(u->back_buf = vdit_be_alloc (be, local / 3, error)))
      goto fail;
    return u;
  }
  u->qkv_host = g_try_new (float, local);
  u->send_host = g_try_new (float, local);
  u->full_host = g_try_new (float, full);
  u->att_host = g_try_new (float, full / 3);
  u->back_host = g_try_new (float, local / 3);
  if (!u->qkv_host || !u->send_host || !u->full_host || !u->att_host || !u->back_host) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "sequence parallelism: out of host memory for %.1f MiB of exchange buffers",
                 (2.0 * local + 4.0 * full / 3.0 + local / 3.0) * 4 / 1048576.0);
    goto fail;
  }
  return u;
fail:
  vdit_ulysses_free (u);
  return NULL;
}

void
vdit_ulysses_free (vdit_ulysses *u)
{
  if (u == NULL)
    return;
  vdit_be_clear (u->be, &u->qkv_full);
  vdit_be_clear (u->be, &u->att_full);
  vdit_be_clear (u->be, &u->send_buf);
  vdit_be_clear (u->be, &u->back_buf);
  int *arrays[] = { u->tok_counts, u->tok_displs, u->head_counts, u->head_displs,
                    u->in_send_c, u->in_send_d, u->in_recv_c, u->in_recv_d,
                    u->out_send_c, u->out_send_d, u->out_recv_c, u->out_recv_d };
  for (guint i = 0; i < G_N_ELEMENTS (arrays); i++)
    g_free (arrays[i]);
  g_free (u->qkv_host);
  g_free (u->send_host);
  g_free (u->full_host);
  g_free (u->att_host);
  g_free (u->back_host);
  g_free (u);
}

gboolean
vdit_ulysses_direct (const vdit_ulysses *u)
{
  return u->direct;
}

int
vdit_ulysses_token0 (const vdit_ulysses *u)
{
  return u->tok_displs[u->rank];
}

int
vdit_ulysses_tokens (const vdit_ulysses *u)
{
  return u->tok_counts[u->rank];
}

int
vdit_ulysses_head0 (const vdit_ulysses *u)
{
  return u->head_displs[u->rank];
}

int
vdit_ulysses_heads (const vdit_ulysses *u)
{
  return u->head_counts[u->rank];
}

/* q, k, v of this rank's rows → per destination s: rows of (q_s, k_s, v_s), where x_s
 * is x's columns of s's heads. What s receives from every rank, in rank order, is then
 * (n, 3·heads_s·hd) row-major: its q, k, v for every token. */
static void
pack_heads (vdit_ulysses *u)
{
  const int rows = u->tok_counts[u->rank], d = u->heads * u->hd;
  for (int s = 0; s < u->size; s++) {
    const size_t w = (size_t) u->head_counts[s] * u->hd, c0 = (size_t) u->head_displs[s] * u->hd;
    float *dst = u->send_host + u->in_send_d[s];
    for (int i = 0; i < rows; i++) {
      const float *row = u->qkv_host + (size_t) i * 3 * d;
      for (int part = 0; part < 3; part++, dst += w)
        memcpy (dst, row + (size_t) part * d + c0, w * sizeof (float));
    }
  }
}

/* What came back from every rank s, (tokens_r, heads_s·hd) each, into att's columns of
 * s's heads. */
static void
unpack_heads (vdit_ulysses *u, float *att)
{
  const int rows = u->tok_counts[u->rank], d = u->heads * u->hd;
  for (int s = 0; s < u->size; s++) {
    const size_t w = (size_t) u->head_counts[s] * u->hd, c0 = (size_t) u->head_displs[s] * u->hd;
    const float *src = u->back_host + u->out_recv_d[s];
    for (int i = 0; i < rows; i++)
      memcpy (att + (size_t) i * d + c0, src + (size_t) i * w, w * sizeof (float));
  }
}

/* pack_heads on the backend: per destination s and part, rows of s's heads' columns. */
static void
pack_heads_direct (vdit_ulysses *u, const void *qkv)
{
  vdit_backend *be = u->be;
  const int rows = u->tok_counts[u->rank], d = u->heads * u->hd;
  for (int s = 0; s < u->size; s++) {
    const int w = u->head_counts[s] * u->hd, c0 = u->head_displs[s] * u->hd;
    for (int part = 0; part < 3; part++)
      be->iface->copy_rows (be->context, vdit_buf_at (be, u->send_buf, u->in_send_d[s] + part * w),
                            3 * w, vdit_buf_at (be, (void *) qkv, part * d + c0), 3 * d, rows, w);
  }
}

/* unpack_heads on the backend. */
static void
unpack_heads_direct (vdit_ulysses *u, void *att)
{
  vdit_backend *be = u->be;
  const int rows = u->tok_counts[u->rank], d = u->heads * u->hd;
  for (int s = 0; s < u->size; s++) {
    const int w = u->head_counts[s] * u->hd, c0 = u->head_displs[s] * u->hd;
    be->iface->copy_rows (be->context, vdit_buf_at (be, att, c0), d,
                          vdit_buf_at (be, u->back_buf, u->out_recv_d[s]), w, rows, w);
  }
}

/* Attention of this rank's heads over every token: qkv_full → att_full. */
static gboolean
local_attention (vdit_ulysses *u, vdit_attn_policy *policy, int step, int layer, int pass,
                 float scale, GError **error)
{
  vdit_backend *be = u->be;
  const int hl = u->head_counts[u->rank], dl = hl * u->hd;
  void *q = u->qkv_full, *k = vdit_buf_at (be, u->qkv_full, dl);
  void *v = vdit_buf_at (be, u->qkv_full, 2 * dl);
  if (policy && !vdit_attn_policy_take_dense (policy, step, layer, pass))
    return vdit_attn_policy_run (policy, step, layer, pass, u->att_full, dl, q, 3 * dl, k,
                                 3 * dl, v, 3 * dl, scale, error);
  be->iface->attention (be->context, u->att_full, dl, q, 3 * dl, k, 3 * dl, v, 3 * dl, u->n,
                        u->n, hl, u->hd, scale, NULL, NULL, NULL);
  return TRUE;
}

/* The exchange reads what the backend queued (another stream, for NCCL): wait for it.
 * Past the all-to-all the data is complete (the communicator waited for its stream). */
static gboolean
exchange_direct (vdit_ulysses *u, const void *send, const int *sc, const int *sd, void *recv,
                 const int *rc, const int *rd, GError **error)
{
  const vdit_backend_i *f = u->be->iface;
  return f->sync (u->be->context, error) &&
         vdit_comm_alltoallv (u->exchange, send, sc, sd, recv, rc, rd, u->be->act_size, error);
}

gboolean
vdit_ulysses_attention (vdit_ulysses *u, void *att, const void *qkv, vdit_attn_policy *policy,
                        int step, int layer, int pass, float scale, GError **error)
{
  vdit_backend *be = u->be;
  const vdit_backend_i *f = be->iface;
  const int rows = u->tok_counts[u->rank], d = u->heads * u->hd;
  const int hl = u->head_counts[u->rank], dl = hl * u->hd;
  if (u->direct) {
    pack_heads_direct (u, qkv);
    if (!exchange_direct (u, u->send_buf, u->in_send_c, u->in_send_d, u->qkv_full, u->in_recv_c,
                          u->in_recv_d, error) ||
        !local_attention (u, policy, step, layer, pass, scale, error) ||
        !exchange_direct (u, u->att_full, u->out_send_c, u->out_send_d, u->back_buf,
                          u->out_recv_c, u->out_recv_d, error))
      return FALSE;
    unpack_heads_direct (u, att);
    return TRUE;
  }

  if (!f->download (be->context, u->qkv_host, qkv, (size_t) rows * 3 * d, VDIT_ELEM_ACT, error))
    return FALSE;
  pack_heads (u);
  if (!vdit_comm_alltoallv (u->exchange, u->send_host, u->in_send_c, u->in_send_d, u->full_host,
                            u->in_recv_c, u->in_recv_d, sizeof (float), error) ||
      !f->upload (be->context, u->qkv_full, u->full_host, (size_t) u->n * 3 * dl,
                  VDIT_ELEM_ACT, error) ||
      !local_attention (u, policy, step, layer, pass, scale, error))
    return FALSE;
  if (!f->download (be->context, u->att_host, u->att_full, (size_t) u->n * dl, VDIT_ELEM_ACT,
                    error) ||
      !vdit_comm_alltoallv (u->exchange, u->att_host, u->out_send_c, u->out_send_d,
                            u->back_host, u->out_recv_c, u->out_recv_d, sizeof (float), error))
    return FALSE;
  unpack_heads (u, u->qkv_host); /* (rows, D): the q, k, v staging is free again */
  return f->upload (be->context, att, u->qkv_host, (size_t) rows * d, VDIT_ELEM_ACT, error);
}

gboolean
vdit_ulysses_gather_rows (vdit_ulysses *u, const float *mine, float *all, int width,
                          GError **error)
{
  if (too_large ((int64_t) u->n * width, "a gathered output", error))
    return FALSE;
  int *counts = g_new (int, u->size), *displs = g_new (int, u->size);
  for (int s = 0; s < u->size; s++) {
    counts[s] = u->tok_counts[s] * width;
    displs[s] = u->tok_displs[s] * width;
  }
  const gboolean ok = vdit_comm_allgatherv (u->comm, mine, all, counts, displs, sizeof (float),
                                            error);
  g_free (counts);
  g_free (displs);
  return ok;
}

gboolean
vdit_sp_broadcast_act (const vdit_comm *comm, vdit_backend *be, void *buf, size_t n,
                       GError **error)
{
  const vdit_backend_i *f = be->iface;
  const gboolean root = vdit_comm_rank (comm) == 0;
  float *host = g_try_new (float, MAX (n, 1));
  if (host == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "out of host memory for a broadcast of %zu values", n);
    return FALSE;
  }
  gboolean ok = (!root || (f->sync (be->context, error) &&
                           f->download (be->context, host, buf, n, VDIT_ELEM_ACT, error))) &&
                vdit_comm_broadcast (comm, host, n * sizeof (float), 0, error) &&
                (root || f->upload (be->context, buf, host, n, VDIT_ELEM_ACT, error));
  g_free (host);
  return ok;
}
