/* The MPI communicator (MPI_COMM_WORLD), for the CPU backend and for launching one
 * process per GPU. Every collective is the nonblocking MPI call, tested until it
 * completes or its deadline passes: a blocking MPI collective waits for ever on a rank
 * that hung, and Open MPI notices a dead rank only when the launcher tears the job down. */
#include "comm.h"

#include "vdit.h"

#include <mpi.h>
#include <stdio.h>

typedef struct {
  int rank, size;
  gboolean owns_init; /* MPI_Init_thread was called here: free finalises */
  gboolean broken;    /* a collective timed out or failed and is still pending */
} mpi_comm;

static void
set_mpi_error (mpi_comm *m, GError **error, const char *what, int rc)
{
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string (rc, text, &len) != MPI_SUCCESS)
    g_snprintf (text, sizeof text, "MPI error %d", rc);
  m->broken = TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "rank %d of %d: MPI %s failed: %s",
               m->rank, m->size, what, text);
}

static gboolean
check_usable (mpi_comm *m, const char *what, GError **error)
{
  if (!m->broken)
    return TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
               "rank %d of %d: MPI %s after an earlier collective failed: the job must end",
               m->rank, m->size, what);
  return FALSE;
}

/* Tests req until it completes or timeout_s passes. The sleep between tests grows to a
 * millisecond, so a rank waiting for a slower one leaves the cores to it. */
static gboolean
wait_request (mpi_comm *m, MPI_Request *req, const char *what, double timeout_s, GError **error)
{
  const gint64 start = g_get_monotonic_time ();
  const gint64 deadline = start + (gint64) (timeout_s * 1e6);
  gulong pause_us = 1;
  for (;;) {
    int done = 0;
    const int rc = MPI_Test (req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      set_mpi_error (m, error, what, rc);
      return FALSE;
    }
    if (done)
      return TRUE;
    if (g_get_monotonic_time () > deadline) {
      m->broken = TRUE;
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "rank %d of %d: MPI %s did not complete within %.0f s: another rank died, "
                   "hung or failed (see its message); raise the timeout for longer work",
                   m->rank, m->size, what, timeout_s);
      return FALSE;
    }
    g_usleep (pause_us);
    pause_us = MIN (pause_us * 2, 1000);
  }
}

/* A datatype of elem_size bytes; free with MPI_Type_free. */
static gboolean
elem_type (mpi_comm *m, size_t elem_size, MPI_Datatype *type, GError **error)
{
  int rc = MPI_Type_contiguous ((int) elem_size, MPI_BYTE, type);
  if (rc == MPI_SUCCESS)
    rc = MPI_Type_commit (type);
  if (rc != MPI_SUCCESS) {
    set_mpi_error (m, error, "datatype", rc);
    return FALSE;
  }
  return TRUE;
}

static int
mpi_rank (void *ctx)
{
  return ((mpi_comm *) ctx)->rank;
}

static int
mpi_size (void *ctx)
{
  return ((mpi_comm *) ctx)->size;
}

static gboolean
mpi_alltoallv (void *ctx, const void *send, const int *send_counts, const int *send_displs,
               void *recv, const int *recv_counts, const int *recv_displs, size_t elem_size,
               double timeout_s, GError **error)
{
  mpi_comm *m = ctx;
  MPI_Datatype type;
  MPI_Request req;
  if (!check_usable (m, "all-to-all", error) || !elem_type (m, elem_size, &type, error))
    return FALSE;
  int rc = MPI_Ialltoallv (send, send_counts, send_displs, type, recv, recv_counts,
                           recv_displs, type, MPI_COMM_WORLD, &req);
  gboolean ok = rc == MPI_SUCCESS;
  if (!ok)
    set_mpi_error (m, error, "all-to-all", rc);
  ok = ok && wait_request (m, &req, "all-to-all", timeout_s, error);
  MPI_Type_free (&type);
  return ok;
}

static gboolean
mpi_allgatherv (void *ctx, const void *send, void *recv, const int *counts, const int *displs,
                size_t elem_size, double timeout_s, GError **error)
{
  mpi_comm *m = ctx;
  MPI_Datatype type;
  MPI_Request req;
  if (!check_usable (m, "all-gather", error) || !elem_type (m, elem_size, &type, error))
    return FALSE;
  int rc = MPI_Iallgatherv (send, counts[m->rank], type, recv, counts, displs, type,
                            MPI_COMM_WORLD, &req);
  gboolean ok = rc == MPI_SUCCESS;
  if (!ok)
    set_mpi_error (m, error, "all-gather", rc);
  ok = ok && wait_request (m, &req, "all-gather", timeout_s, error);
  MPI_Type_free (&type);
  return ok;
}

static gboolean
mpi_broadcast (void *ctx, void *buf, size_t bytes, int root, double timeout_s, GError **error)
{
  mpi_comm *m = ctx;
  if (!check_usable (m, "broadcast", error))
    return FALSE;
  if (bytes > G_MAXINT || root < 0 || root >= m->size) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "MPI broadcast of %zu bytes from rank %d: at most %d bytes from a rank "
                 "below %d", bytes, root, G_MAXINT, m->size);
    return FALSE;
  }
  MPI_Request req;
  int rc = MPI_Ibcast (buf, (int) bytes, MPI_BYTE, root, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) {
    set_mpi_error (m, error, "broadcast", rc);
    return FALSE;
  }
  return wait_request (m, &req, "broadcast", timeout_s, error);
}

static gboolean
mpi_barrier (void *ctx, double timeout_s, GError **error)
{
  mpi_comm *m = ctx;
  if (!check_usable (m, "barrier", error))
    return FALSE;
  MPI_Request req;
  int rc = MPI_Ibarrier (MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) {
    set_mpi_error (m, error, "barrier", rc);
    return FALSE;
  }
  return wait_request (m, &req, "barrier", timeout_s, error);
}

static void
mpi_abort (void *ctx, int code, const char *message)
{
  mpi_comm *m = ctx;
  fprintf (stderr, "vdit: rank %d of %d: %s; ending every rank\n", m->rank, m->size,
           message ? message : "failed");
  fflush (stderr);
  MPI_Abort (MPI_COMM_WORLD, code);
}

static void
mpi_free (void *ctx)
{
  mpi_comm *m = ctx;
  int finalized = 0;
  MPI_Finalized (&finalized);
  /* a pending collective (broken) would make MPI_Finalize wait: the host aborts instead */
  if (m->owns_init && !m->broken && !finalized)
    MPI_Finalize ();
  g_free (m);
}

static const vdit_comm_i mpi_iface = {
  /* .name = */ "mpi",
  /* .free = */ mpi_free,
  /* .rank = */ mpi_rank,
  /* .size = */ mpi_size,
  /* .alltoallv = */ mpi_alltoallv,
  /* .allgatherv = */ mpi_allgatherv,
  /* .broadcast = */ mpi_broadcast,
  /* .barrier = */ mpi_barrier,
  /* .abort = */ mpi_abort,
};

gboolean
vdit_comm_mpi_available (void)
{
  return TRUE;
}

gboolean
vdit_comm_mpi_init (vdit_comm *comm, GError **error)
{
  mpi_comm *m = g_new0 (mpi_comm, 1);
  int initialized = 0, provided = 0;
  MPI_Initialized (&initialized);
  if (!initialized) {
    /* SERIALIZED: a GStreamer host calls from its streaming thread, one call at a time */
    if (MPI_Init_thread (NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "MPI could not start: is this process part of an mpirun job?");
      g_free (m);
      return FALSE;
    }
    m->owns_init = TRUE;
  } else {
    MPI_Query_thread (&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    /* a host's streaming thread may call, one call at a time: FUNNELED is not enough */
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "this MPI gives thread level %d, below MPI_THREAD_SERIALIZED (%d)", provided,
                 MPI_THREAD_SERIALIZED);
    g_free (m);
    return FALSE;
  }
  /* errors come back as codes (turned into GErrors) instead of ending the process */
  MPI_Comm_set_errhandler (MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank (MPI_COMM_WORLD, &m->rank);
  MPI_Comm_size (MPI_COMM_WORLD, &m->size);
  *comm = (vdit_comm) { .iface = &mpi_iface, .context = m, .timeout_s = 0.0 };
  return TRUE;
}
