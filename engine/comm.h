/* Communicators: the collectives sequence parallelism needs, behind one table of function
 * pointers plus an opaque context (as the backend). Implementations: a single rank
 * (comm.c, size 1, copies), MPI on the host (comm_mpi.c, when built with MPI), threads of
 * one process over shared memory (comm_threads.c), NCCL on device buffers
 * (cuda/comm_nccl.c).
 *
 * Every collective is called by every rank in the same order (as in MPI). Each has a
 * deadline: when the other ranks do not join within timeout_s seconds (a rank died, hung
 * or took a different path) it fails with VDIT_ERROR_BACKEND naming the collective and
 * the wait, instead of blocking for ever. After such a failure the communicator is
 * broken (an unfinished collective cannot be taken back): every later call fails at once,
 * and the host should end every rank with vdit_comm_abort.
 *
 * Counts and displacements are in elements of elem_size bytes (4 for f32 and i32).
 */
#ifndef VDIT_COMM_H
#define VDIT_COMM_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* The default deadline of a collective. A rank waits in a collective while the slowest
 * rank computes, so it must exceed the longest stretch of work between two collectives
 * (one block's attention on the CPU at tens of thousands of tokens takes minutes). */
#define VDIT_COMM_DEFAULT_TIMEOUT_S 600.0

typedef struct {
  const char *name; /* "single", "mpi" */
  void (*free) (void *ctx);
  int (*rank) (void *ctx);
  int (*size) (void *ctx);

  /* Rank r sends send_counts[s] elements from send + send_displs[s] to each rank s and
   * receives recv_counts[s] elements from rank s into recv + recv_displs[s]. */
  gboolean (*alltoallv) (void *ctx, const void *send, const int *send_counts,
                         const int *send_displs, void *recv, const int *recv_counts,
                         const int *recv_displs, size_t elem_size, double timeout_s,
                         GError **error);
  /* Every rank's send (counts[rank] elements) into recv + displs[r] on every rank;
   * counts may differ between ranks. */
  gboolean (*allgatherv) (void *ctx, const void *send, void *recv, const int *counts,
                          const int *displs, size_t elem_size, double timeout_s,
                          GError **error);
  /* bytes from root's buf into every other rank's buf. */
  gboolean (*broadcast) (void *ctx, void *buf, size_t bytes, int root, double timeout_s,
                         GError **error);
  gboolean (*barrier) (void *ctx, double timeout_s, GError **error);
  /* Ends every rank of the job now with `code` (after a failure a rank cannot recover
   * from: the others may be waiting in a collective). NULL where there is nothing to end
   * beyond this process; then it returns. */
  void (*abort) (void *ctx, int code, const char *message);
  /* TRUE: the collectives take device memory of the communicator's GPU (NCCL); FALSE:
   * host memory (single, MPI). */
  gboolean device_buffers;
} vdit_comm_i;

typedef struct {
  const vdit_comm_i *iface;
  void *context;
  double timeout_s; /* deadline of each collective; <= 0: VDIT_COMM_DEFAULT_TIMEOUT_S */
} vdit_comm;

/* One rank: size 1, collectives copy. Never fails. */
void vdit_comm_single_init (vdit_comm *comm);

/* n ranks in this process, comms[i] being rank i, each to be called from its own thread;
 * host buffers, copied directly between the ranks. abort breaks the group: every rank's
 * pending and later collectives fail at once with the message. Each comms[i] is freed
 * with vdit_comm_free. Never fails. */
void vdit_comm_threads_init (vdit_comm *comms, int n);
gboolean vdit_comm_is_threads (const vdit_comm *comm);
/* Non-zero (read atomically) once the group of comm is broken: other communicators of the
 * same ranks (NCCL) poll it to leave their collectives too. */
const gint *vdit_comm_threads_watch (const vdit_comm *comm);
/* Makes a broken group usable again. Only when no rank is inside a collective. */
void vdit_comm_threads_reset (const vdit_comm *comm);

/* MPI_COMM_WORLD (MPI initialised here, thread level SERIALIZED, unless the host did;
 * finalised by free if initialised here). VDIT_ERROR_NO_DEVICE when built without MPI. */
gboolean vdit_comm_mpi_init (vdit_comm *comm, GError **error);
/* Whether this build has MPI, and whether this process was started by an MPI launcher
 * (mpirun, mpiexec, srun with PMI): then vdit_comm_mpi_init joins that job. */
gboolean vdit_comm_mpi_available (void);
gboolean vdit_comm_mpi_launched (void);

/* NCCL, on device buffers (built with CUDA when nccl.h is found; libnccl is opened at run
 * time, so CPU-only processes never map it). Each collective is queued on the
 * communicator's own stream and waited for, with the deadline, before it returns; past
 * it the NCCL communicator is aborted. VDIT_ERROR_NO_DEVICE when not built or libnccl
 * cannot be opened. */
gboolean vdit_comm_nccl_available (GError **error);
/* One process per GPU: every rank of bootstrap (MPI) calls this with its own device; rank
 * 0's NCCL id travels by bootstrap's broadcast, and the rendezvous has bootstrap's
 * deadline (a rank that never arrives is an error, not a hang). bootstrap must outlive
 * comm (its abort ends the job). */
gboolean vdit_comm_nccl_init (vdit_comm *comm, const vdit_comm *bootstrap, int device,
                              GError **error);
/* One process, n GPUs (ncclCommInitAll): comms[i] drives devices[i], each to be called
 * from its own host thread. watch (may be NULL): while it reads non-zero every collective
 * fails at once (another rank of the process failed: vdit_comm_threads_watch). */
gboolean vdit_comm_nccl_init_all (vdit_comm *comms, int n, const int *devices,
                                  const gint *watch, GError **error);

/* The communicator a command line tool should use: MPI when launched by mpirun (and built
 * with it), else a single rank. Launched by mpirun without MPI in this build is an error
 * (every rank would compute the whole clip alone and write the same output). */
gboolean vdit_comm_init_auto (vdit_comm *comm, GError **error);

void vdit_comm_free (vdit_comm *comm);

/* Convenience calls with the communicator's own timeout. */
int vdit_comm_rank (const vdit_comm *comm);
int vdit_comm_size (const vdit_comm *comm);
gboolean vdit_comm_alltoallv (const vdit_comm *comm, const void *send, const int *send_counts,
                              const int *send_displs, void *recv, const int *recv_counts,
                              const int *recv_displs, size_t elem_size, GError **error);
gboolean vdit_comm_allgatherv (const vdit_comm *comm, const void *send, void *recv,
                               const int *counts, const int *displs, size_t elem_size,
                               GError **error);
gboolean vdit_comm_broadcast (const vdit_comm *comm, void *buf, size_t bytes, int root,
                              GError **error);
gboolean vdit_comm_barrier (const vdit_comm *comm, GError **error);
/* Prints message (one line) and ends every rank with code where the communicator can
 * (MPI); returns otherwise. */
void vdit_comm_abort (const vdit_comm *comm, int code, const char *message);

/* Splits n items into `parts` contiguous ranges as evenly as possible: the first
 * n % parts ranges get one more. counts/displs have `parts` entries. */
void vdit_comm_split (int n, int parts, int *counts, int *displs);

G_END_DECLS

#endif /* VDIT_COMM_H */
