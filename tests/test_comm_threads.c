/* The thread communicator: every collective with counts that differ per rank on 1 to 4
 * ranks; a rank that never comes fails the others at the deadline; a rank that aborts
 * frees the others at once; after a reset the group works again. */
#include "comm.h"
#include "vdit.h"

#include <string.h>

typedef struct {
  vdit_comm comm;
  int mode; /* 0 collectives, 1 absent, 2 aborts */
  gboolean ok;
  double secs;
  char *why;
} rank_state;

static int32_t
value (int r, int s, int i)
{
  return r * 100000 + s * 1000 + i;
}

static gboolean
collectives (const vdit_comm *comm, GError **error)
{
  const int rank = vdit_comm_rank (comm), size = vdit_comm_size (comm);
  int sc[4], sd[4], rc[4], rd[4], ns = 0, nr = 0;
  for (int s = 0; s < size; s++) {
    sc[s] = (rank + 1) * (s + 1), sd[s] = ns, ns += sc[s];
    rc[s] = (s + 1) * (rank + 1), rd[s] = nr, nr += rc[s];
  }
  int32_t send[64], recv[64];
  for (int s = 0; s < size; s++)
    for (int i = 0; i < sc[s]; i++)
      send[sd[s] + i] = value (rank, s, i);
  if (!vdit_comm_alltoallv (comm, send, sc, sd, recv, rc, rd, sizeof (int32_t), error))
    return FALSE;
  for (int s = 0; s < size; s++)
    for (int i = 0; i < rc[s]; i++)
      g_assert_cmpint (recv[rd[s] + i], ==, value (s, rank, i));
  int counts[4], displs[4], total = 0;
  for (int s = 0; s < size; s++)
    counts[s] = s + 1, displs[s] = total, total += counts[s];
  for (int i = 0; i < counts[rank]; i++)
    send[i] = displs[rank] + i;
  if (!vdit_comm_allgatherv (comm, send, recv, counts, displs, sizeof (int32_t), error))
    return FALSE;
  for (int i = 0; i < total; i++)
    g_assert_cmpint (recv[i], ==, i);
  for (int i = 0; i < 16; i++)
    recv[i] = rank == size - 1 ? 7 * i : -1;
  if (!vdit_comm_broadcast (comm, recv, 16 * sizeof (int32_t), size - 1, error) ||
      !vdit_comm_barrier (comm, error))
    return FALSE;
  for (int i = 0; i < 16; i++)
    g_assert_cmpint (recv[i], ==, 7 * i);
  return TRUE;
}

static gpointer
run_rank (gpointer data)
{
  rank_state *st = data;
  GError *error = NULL;
  const gint64 t0 = g_get_monotonic_time ();
  if (st->mode == 1)
    return NULL; /* never joins */
  if (st->mode == 2) {
    g_usleep (100 * 1000);
    vdit_comm_abort (&st->comm, 1, "a test failure");
    return NULL;
  }
  st->ok = collectives (&st->comm, &error);
  st->secs = (g_get_monotonic_time () - t0) / 1e6;
  if (error)
    st->why = g_strdup (error->message);
  g_clear_error (&error);
  return NULL;
}

/* Runs n ranks, the last in `last_mode`; returns the states. */
static rank_state *
run (vdit_comm *comms, int n, int last_mode)
{
  rank_state *st = g_new0 (rank_state, n);
  GThread *threads[4];
  for (int i = 0; i < n; i++) {
    st[i] = (rank_state) { .comm = comms[i], .mode = i == n - 1 ? last_mode : 0 };
    threads[i] = g_thread_new ("rank", run_rank, &st[i]);
  }
  for (int i = 0; i < n; i++)
    g_thread_join (threads[i]);
  return st;
}

static void
test_collectives (void)
{
  for (int n = 1; n <= 4; n++) {
    vdit_comm comms[4];
    vdit_comm_threads_init (comms, n);
    for (int round = 0; round < 3; round++) {
      rank_state *st = run (comms, n, 0);
      for (int i = 0; i < n; i++) {
        g_assert_null (st[i].why);
        g_assert_true (st[i].ok);
        g_free (st[i].why);
      }
      g_free (st);
    }
    for (int i = 0; i < n; i++)
      vdit_comm_free (&comms[i]);
  }
}

static void
test_absent_then_reset (void)
{
  vdit_comm comms[3];
  vdit_comm_threads_init (comms, 3);
  for (int i = 0; i < 3; i++)
    comms[i].timeout_s = 0.5;
  rank_state *st = run (comms, 3, 1);
  for (int i = 0; i < 2; i++) {
    g_assert_false (st[i].ok);
    g_assert_nonnull (strstr (st[i].why, "waited 0.5 s for the others"));
    g_assert_cmpfloat (st[i].secs, <, 5.0);
    g_free (st[i].why);
  }
  g_free (st);
  g_assert_true (g_atomic_int_get (vdit_comm_threads_watch (&comms[0])));
  vdit_comm_threads_reset (&comms[0]);
  g_assert_false (g_atomic_int_get (vdit_comm_threads_watch (&comms[0])));
  st = run (comms, 3, 0);
  for (int i = 0; i < 3; i++)
    g_assert_true (st[i].ok);
  g_free (st);
  for (int i = 0; i < 3; i++)
    vdit_comm_free (&comms[i]);
}

static void
test_abort (void)
{
  vdit_comm comms[3];
  vdit_comm_threads_init (comms, 3); /* default deadline: 600 s */
  rank_state *st = run (comms, 3, 2);
  for (int i = 0; i < 2; i++) {
    g_assert_false (st[i].ok);
    g_assert_nonnull (strstr (st[i].why, "rank 2: a test failure"));
    g_assert_cmpfloat (st[i].secs, <, 5.0);
    g_free (st[i].why);
  }
  g_free (st);
  for (int i = 0; i < 3; i++)
    vdit_comm_free (&comms[i]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/comm-threads/collectives", test_collectives);
  g_test_add_func ("/comm-threads/absent-then-reset", test_absent_then_reset);
  g_test_add_func ("/comm-threads/abort", test_abort);
  return g_test_run ();
}
