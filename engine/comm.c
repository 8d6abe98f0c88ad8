/* The single-rank communicator, the calls every communicator shares, and the choice of
 * one for a command line tool. */
#include "comm.h"

#include "vdit.h"

#include <string.h>

/* ---- one rank ------------------------------------------------------------------- */

static int
single_rank (void *ctx)
{
  return 0;
}

static int
single_size (void *ctx)
{
  return 1;
}

static gboolean
single_alltoallv (void *ctx, const void *send, const int *send_counts, const int *send_displs,
                  void *recv, const int *recv_counts, const int *recv_displs, size_t elem_size,
                  double timeout_s, GError **error)
{
  if (send_counts[0] != recv_counts[0]) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "all-to-all: rank 0 sends %d elements to itself but expects %d",
                 send_counts[0], recv_counts[0]);
    return FALSE;
  }
  memmove ((char *) recv + (size_t) recv_displs[0] * elem_size,
           (const char *) send + (size_t) send_displs[0] * elem_size,
           (size_t) send_counts[0] * elem_size);
  return TRUE;
}

static gboolean
single_allgatherv (void *ctx, const void *send, void *recv, const int *counts,
                   const int *displs, size_t elem_size, double timeout_s, GError **error)
{
  memmove ((char *) recv + (size_t) displs[0] * elem_size, send, (size_t) counts[0] * elem_size);
  return TRUE;
}

static gboolean
single_broadcast (void *ctx, void *buf, size_t bytes, int root, double timeout_s,
                  GError **error)
{
  if (root != 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "broadcast from rank %d, but the communicator has one rank", root);
    return FALSE;
  }
  return TRUE;
}

static gboolean
single_barrier (void *ctx, double timeout_s, GError **error)
{
  return TRUE;
}

static const vdit_comm_i single_iface = {
  /* .name = */ "single",
  /* .free = */ NULL,
  /* .rank = */ single_rank,
  /* .size = */ single_size,
  /* .alltoallv = */ single_alltoallv,
  /* .allgatherv = */ single_allgatherv,
  /* .broadcast = */ single_broadcast,
  /* .barrier = */ single_barrier,
  /* .abort = */ NULL,
};

void
vdit_comm_single_init (vdit_comm *comm)
{
  *comm = (vdit_comm) { .iface = &single_iface, .context = NULL, .timeout_s = 0.0 };
}

/* ---- choice ----------------------------------------------------------------------- */

gboolean
vdit_comm_mpi_launched (void)
{
  /* Open MPI's mpirun, then the PMI variables of MPICH's hydra and Slurm's srun */
  static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK" };
  for (guint i = 0; i < G_N_ELEMENTS (vars); i++)
    if (g_getenv (vars[i]) != NULL)
      return TRUE;
  return FALSE;
}

gboolean
vdit_comm_init_auto (vdit_comm *comm, GError **error)
{
  if (!vdit_comm_mpi_launched ()) {
    vdit_comm_single_init (comm);
    return TRUE;
  }
  if (!vdit_comm_mpi_available ()) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "started by an MPI launcher, but this vdit was built without MPI "
                 "(install libopenmpi-dev and rebuild with -Dmpi=enabled)");
    return FALSE;
  }
  return vdit_comm_mpi_init (comm, error);
}

void
vdit_comm_free (vdit_comm *comm)
{
  if (comm->iface && comm->iface->free)
    comm->iface->free (comm->context);
  comm->iface = NULL;
  comm->context = NULL;
}

/* ---- calls ------------------------------------------------------------------------ */

static double
timeout_of (const vdit_comm *comm)
{
  return comm->timeout_s > 0.0 ? comm->timeout_s : VDIT_COMM_DEFAULT_TIMEOUT_S;
}

int
vdit_comm_rank (const vdit_comm *comm)
{
  return comm->iface->rank (comm->context);
}

int
vdit_comm_size (const vdit_comm *comm)
{
  return comm->iface->size (comm->context);
}

gboolean
vdit_comm_alltoallv (const vdit_comm *comm, const void *send, const int *send_counts,
                     const int *send_displs, void *recv, const int *recv_counts,
                     const int *recv_displs, size_t elem_size, GError **error)
{
  return comm->iface->alltoallv (comm->context, send, send_counts, send_displs, recv,
                                 recv_counts, recv_displs, elem_size, timeout_of (comm), error);
}

gboolean
vdit_comm_allgatherv (const vdit_comm *comm, const void *send, void *recv, const int *counts,
                      const int *displs, size_t elem_size, GError **error)
{
  return comm->iface->allgatherv (comm->context, send, recv, counts, displs, elem_size,
                                  timeout_of (comm), error);
}

gboolean
vdit_comm_broadcast (const vdit_comm *comm, void *buf, size_t bytes, int root, GError **error)
{
  return comm->iface->broadcast (comm->context, buf, bytes, root, timeout_of (comm), error);
}

gboolean
vdit_comm_barrier (const vdit_comm *comm, GError **error)
{
  return comm->iface->barrier (comm->context, timeout_of (comm), error);
}

void
vdit_comm_abort (const vdit_comm *comm, int code, const char *message)
{
  if (comm->iface && comm->iface->abort)
    comm->iface->abort (comm->context, code, message);
}

void
vdit_comm_split (int n, int parts, int *counts, int *displs)
{
  const int base = n / parts, extra = n % parts;
  int at = 0;
  for (int r = 0; r < parts; r++) {
    counts[r] = base + (r < extra);
    displs[r] = at;
    at += counts[r];
  }
}
