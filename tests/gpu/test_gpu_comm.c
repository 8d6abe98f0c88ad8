/* The NCCL communicator in one process (ncclCommInitAll), one host thread per GPU: every
 * collective on device buffers with counts that differ per rank. With one GPU the
 * communicator has one rank and the collectives are copies on that GPU. Skips (77)
 * without a GPU or without NCCL. */
#include "comm.h"
#include "gpu_util.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  vdit_comm comm;
  int device;
  gboolean ok;
  char *why;
} rank_state;

/* value sent by rank r to rank s, item i */
static int32_t
value (int r, int s, int i)
{
  return r * 100000 + s * 1000 + i;
}

static gboolean
expect (rank_state *st, gboolean cond, const char *what)
{
  if (!cond && st->why == NULL)
    st->why = g_strdup_printf ("GPU %d: %s", st->device, what);
  return cond;
}

static gpointer
run_rank (gpointer data)
{
  rank_state *st = data;
  const vdit_comm *comm = &st->comm;
  const int rank = vdit_comm_rank (comm), size = vdit_comm_size (comm);
  GError *error = NULL;
  vdit_backend be = { 0 };
  if (!vdit_backend_cuda_init (&be, st->device, &error)) {
    st->why = g_strdup (error->message);
    g_error_free (error);
    return NULL;
  }
  const vdit_backend_i *f = be.iface;
  /* all-to-all: rank r sends (r + 1)·(s + 1) values to s */
  int *sc = g_new (int, size), *sd = g_new (int, size), *rc = g_new (int, size),
      *rd = g_new (int, size);
  int ns = 0, nr = 0;
  for (int s = 0; s < size; s++) {
    sc[s] = (rank + 1) * (s + 1), sd[s] = ns, ns += sc[s];
    rc[s] = (s + 1) * (rank + 1), rd[s] = nr, nr += rc[s];
  }
  int32_t *host_send = g_new (int32_t, ns), *host_recv = g_new0 (int32_t, MAX (nr, 64));
  for (int s = 0; s < size; s++)
    for (int i = 0; i < sc[s]; i++)
      host_send[sd[s] + i] = value (rank, s, i);
  void *send = f->alloc (be.context, ns, VDIT_ELEM_I32, &error);
  void *recv = send ? f->alloc (be.context, MAX (nr, 64), VDIT_ELEM_I32, &error) : NULL;
  gboolean ok = recv && f->upload (be.context, send, host_send, ns, VDIT_ELEM_I32, &error) &&
                f->sync (be.context, &error) &&
                vdit_comm_alltoallv (comm, send, sc, sd, recv, rc, rd, sizeof (int32_t), &error) &&
                f->download (be.context, host_recv, recv, nr, VDIT_ELEM_I32, &error) &&
                f->sync (be.context, &error);
  for (int s = 0; ok && s < size; s++)
    for (int i = 0; ok && i < rc[s]; i++)
      ok = expect (st, host_recv[rd[s] + i] == value (s, rank, i), "all-to-all gave wrong values");

  /* all-gather: rank r contributes r + 1 values; broadcast from the last rank; barrier */
  int *counts = g_new (int, size), *displs = g_new (int, size), total = 0;
  for (int s = 0; s < size; s++)
    counts[s] = s + 1, displs[s] = total, total += counts[s];
  for (int i = 0; i < counts[rank]; i++)
    host_send[i] = displs[rank] + i;
  ok = ok && f->upload (be.context, send, host_send, counts[rank], VDIT_ELEM_I32, &error) &&
       f->sync (be.context, &error) &&
       vdit_comm_allgatherv (comm, send, recv, counts, displs, sizeof (int32_t), &error) &&
       f->download (be.context, host_recv, recv, total, VDIT_ELEM_I32, &error) &&
       f->sync (be.context, &error);
  for (int i = 0; ok && i < total; i++)
    ok = expect (st, host_recv[i] == i, "all-gather gave wrong values");
  for (int i = 0; i < 64; i++)
    host_recv[i] = rank == size - 1 ? 7 * i : -1;
  ok = ok && f->upload (be.context, recv, host_recv, 64, VDIT_ELEM_I32, &error) &&
       f->sync (be.context, &error) &&
       vdit_comm_broadcast (comm, recv, 64 * sizeof (int32_t), size - 1, &error) &&
       f->download (be.context, host_recv, recv, 64, VDIT_ELEM_I32, &error) &&
       f->sync (be.context, &error) && vdit_comm_barrier (comm, &error);
  for (int i = 0; ok && i < 64; i++)
    ok = expect (st, host_recv[i] == 7 * i, "broadcast gave wrong values");

  if (error) {
    if (st->why == NULL)
      st->why = g_strdup (error->message);
    g_error_free (error);
  }
  st->ok = ok;
  if (send)
    f->release (be.context, send);
  if (recv)
    f->release (be.context, recv);
  vdit_backend_free (&be);
  g_free (sc), g_free (sd), g_free (rc), g_free (rd), g_free (counts), g_free (displs);
  g_free (host_send), g_free (host_recv);
  return NULL;
}

int
main (void)
{
  int n = 0;
  GError *error = NULL;
  if (!gpu_available () || !vdit_cuda_available (&n))
    return GPU_TEST_SKIP;
  if (!vdit_comm_nccl_available (&error)) {
    printf ("SKIP: %s\n", error->message);
    g_error_free (error);
    return GPU_TEST_SKIP;
  }
  int *devices = g_new (int, n);
  vdit_comm *comms = g_new0 (vdit_comm, n);
  for (int i = 0; i < n; i++)
    devices[i] = i;
  if (!vdit_comm_nccl_init_all (comms, n, devices, NULL, &error)) {
    fprintf (stderr, "FAIL: %s\n", error->message);
    return 1;
  }
  rank_state *st = g_new0 (rank_state, n);
  GThread **threads = g_new (GThread *, n);
  for (int i = 0; i < n; i++) {
    st[i] = (rank_state) { .comm = comms[i], .device = devices[i] };
    threads[i] = g_thread_new ("rank", run_rank, &st[i]);
  }
  int status = 0;
  for (int i = 0; i < n; i++) {
    g_thread_join (threads[i]);
    if (!st[i].ok) {
      fprintf (stderr, "FAIL: rank %d: %s\n", i, st[i].why ? st[i].why : "failed");
      status = 1;
    }
    g_free (st[i].why);
    vdit_comm_free (&comms[i]);
  }
  if (status == 0)
    printf ("NCCL in one process over %d GPU(s): all-to-all, all-gather, broadcast and "
            "barrier right\n", n);
  g_free (st), g_free (threads), g_free (comms), g_free (devices);
  return status;
}
