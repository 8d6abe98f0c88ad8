/* Run under mpirun by test_mpi.py: the communicator's collectives with uneven counts, and
 * what happens when a rank dies or hangs.
 *
 * usage: comm_check collectives | die | hang | single
 *   collectives  every collective with counts that differ per rank; exit 0 when right
 *   die          rank 1 exits at once without a word; the others enter an all-to-all
 *   hang         rank 1 sleeps; the others enter an all-to-all with a 2 s deadline and
 *                must end every rank with the timeout's message
 *   single       the single-rank communicator, without mpirun */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
fail (const char *what, int rank)
{
  fprintf (stderr, "comm_check: rank %d: %s\n", rank, what);
  return 1;
}

/* Rank r sends (r + 1)·(s + 1) values r·1000 + s·10 + i to rank s. */
static int
check_alltoallv (const vdit_comm *comm)
{
  const int rank = vdit_comm_rank (comm), size = vdit_comm_size (comm);
  int *sc = g_new (int, size), *sd = g_new (int, size), *rc = g_new (int, size),
      *rd = g_new (int, size);
  int ns = 0, nr = 0;
  for (int s = 0; s < size; s++) {
    sc[s] = (rank + 1) * (s + 1);
    sd[s] = ns;
    ns += sc[s];
    rc[s] = (s + 1) * (rank + 1);
    rd[s] = nr;
    nr += rc[s];
  }
  float *send = g_new (float, ns), *recv = g_new0 (float, nr);
  for (int s = 0; s < size; s++)
    for (int i = 0; i < sc[s]; i++)
      send[sd[s] + i] = rank * 1000 + s * 10 + i;
  GError *error = NULL;
  int bad = !vdit_comm_alltoallv (comm, send, sc, sd, recv, rc, rd, sizeof (float), &error);
  for (int s = 0; !bad && s < size; s++)
    for (int i = 0; i < rc[s]; i++)
      bad |= recv[rd[s] + i] != s * 1000 + rank * 10 + i;
  if (error)
    fprintf (stderr, "%s\n", error->message);
  g_clear_error (&error);
  g_free (sc), g_free (sd), g_free (rc), g_free (rd), g_free (send), g_free (recv);
  return bad ? fail ("all-to-all gave wrong values", rank) : 0;
}

static int
check_others (const vdit_comm *comm)
{
  const int rank = vdit_comm_rank (comm), size = vdit_comm_size (comm);
  int *counts = g_new (int, size), *displs = g_new (int, size);
  vdit_comm_split (2 * size + 1, size, counts, displs); /* uneven: one rank gets 3 */
  int32_t *mine = g_new (int32_t, counts[rank]), *all = g_new0 (int32_t, 2 * size + 1);
  for (int i = 0; i < counts[rank]; i++)
    mine[i] = displs[rank] + i;
  GError *error = NULL;
  int bad = !vdit_comm_allgatherv (comm, mine, all, counts, displs, sizeof (int32_t), &error);
  for (int i = 0; !bad && i < 2 * size + 1; i++)
    bad |= all[i] != i;
  char text[32] = "";
  if (!bad && rank == size - 1)
    g_strlcpy (text, "from the last rank", sizeof text);
  bad = bad || !vdit_comm_broadcast (comm, text, sizeof text, size - 1, &error) ||
        strcmp (text, "from the last rank") != 0 || !vdit_comm_barrier (comm, &error);
  if (error)
    fprintf (stderr, "%s\n", error->message);
  g_clear_error (&error);
  g_free (counts), g_free (displs), g_free (mine), g_free (all);
  return bad ? fail ("all-gather, broadcast or barrier failed", rank) : 0;
}

/* Every live rank enters an all-to-all of one value per rank. */
static int
enter_alltoall (vdit_comm *comm)
{
  const int size = vdit_comm_size (comm);
  int *ones = g_new (int, size), *displs = g_new (int, size);
  for (int s = 0; s < size; s++)
    ones[s] = 1, displs[s] = s;
  float *send = g_new0 (float, size), *recv = g_new0 (float, size);
  GError *error = NULL;
  if (!vdit_comm_alltoallv (comm, send, ones, displs, recv, ones, displs, sizeof (float),
                            &error)) {
    vdit_comm_abort (comm, 1, error->message);
    return 1; /* not reached with MPI */
  }
  fprintf (stderr, "comm_check: rank %d: the all-to-all completed without rank 1\n",
           vdit_comm_rank (comm));
  return 1;
}

int
main (int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "collectives";
  vdit_comm comm;
  GError *error = NULL;
  if (g_str_equal (mode, "single"))
    vdit_comm_single_init (&comm);
  else if (!vdit_comm_init_auto (&comm, &error)) {
    fprintf (stderr, "comm_check: %s\n", error->message);
    return 1;
  }
  const int rank = vdit_comm_rank (&comm);
  int status = 0;
  if (g_str_equal (mode, "collectives") || g_str_equal (mode, "single")) {
    status = check_alltoallv (&comm) | check_others (&comm);
  } else if (g_str_equal (mode, "die")) {
    if (rank == 1)
      _exit (3);
    status = enter_alltoall (&comm);
  } else if (g_str_equal (mode, "hang")) {
    comm.timeout_s = 2.0;
    if (rank == 1) {
      sleep (60);
      return 0;
    }
    status = enter_alltoall (&comm);
  } else {
    fprintf (stderr, "comm_check: unknown mode %s\n", mode);
    status = 2;
  }
  vdit_comm_free (&comm);
  return status;
}
