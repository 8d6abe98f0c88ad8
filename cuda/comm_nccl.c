/* The NCCL communicator: collectives between GPUs on device buffers.
 *
 * libnccl is opened at run time (as cuBLAS is, cublas_dl.c), so a build with NCCL loads
 * and runs the CPU backend on machines without it. Each collective is queued on the
 * communicator's own stream and then polled (stream query, NCCL's asynchronous error)
 * until it completes or its deadline passes; past the deadline the NCCL communicator is
 * aborted, which frees the GPU, and the error names the collective. Multi-process
 * communicators are made non-blocking, so their rendezvous has a deadline too.
 * NCCL_NVLS_ENABLE=0 is set before the first communicator: no NVLink multicast. */
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>
#include <string.h>

#include "comm.h"
#include "vdit.h"

typedef struct {
  __typeof__ (ncclGetUniqueId) *GetUniqueId;
  __typeof__ (ncclCommInitRankConfig) *CommInitRankConfig;
  __typeof__ (ncclCommInitAll) *CommInitAll;
  __typeof__ (ncclCommGetAsyncError) *CommGetAsyncError;
  __typeof__ (ncclCommAbort) *CommAbort;
  __typeof__ (ncclCommDestroy) *CommDestroy;
  __typeof__ (ncclGroupStart) *GroupStart;
  __typeof__ (ncclGroupEnd) *GroupEnd;
  __typeof__ (ncclSend) *Send;
  __typeof__ (ncclRecv) *Recv;
  __typeof__ (ncclBroadcast) *Broadcast;
  __typeof__ (ncclAllReduce) *AllReduce;
  __typeof__ (ncclGetErrorString) *GetErrorString;
} nccl_fns;

static nccl_fns nccl;

/* ---- loading ---------------------------------------------------------------------- */

static gpointer
load (gpointer data)
{
  static const char *const paths[] = { "libnccl.so.2", VDIT_CUDA_LIBDIR "/libnccl.so.2",
                                       "/usr/local/cuda/lib64/libnccl.so.2",
                                       "/usr/local/cuda/lib/libnccl.so.2" };
  void *lib = NULL;
  GString *why = g_string_new (NULL);
  /* never NVLink multicast (NVLS: extra GPU memory per communicator, fabric support):
   * NCCL reads this when it makes a communicator, and each here is made after the load */
  g_setenv ("NCCL_NVLS_ENABLE", "0", TRUE);
  for (guint i = 0; lib == NULL && i < G_N_ELEMENTS (paths); i++)
    if ((lib = dlopen (paths[i], RTLD_NOW | RTLD_LOCAL)) == NULL && i == 0)
      g_string_append (why, dlerror ());
  gboolean ok = lib != NULL;
#define SYM(field, name)                                                                   \
  if (ok && !(*(void **) &nccl.field = dlsym (lib, name))) {                               \
    g_string_printf (why, "libnccl.so.2 lacks %s", name);                                  \
    ok = FALSE;                                                                            \
  }
  SYM (GetUniqueId, "ncclGetUniqueId");
  SYM (CommInitRankConfig, "ncclCommInitRankConfig");
  SYM (CommInitAll, "ncclCommInitAll");
  SYM (CommGetAsyncError, "ncclCommGetAsyncError");
  SYM (CommAbort, "ncclCommAbort");
  SYM (CommDestroy, "ncclCommDestroy");
  SYM (GroupStart, "ncclGroupStart");
  SYM (GroupEnd, "ncclGroupEnd");
  SYM (Send, "ncclSend");
  SYM (Recv, "ncclRecv");
  SYM (Broadcast, "ncclBroadcast");
  SYM (AllReduce, "ncclAllReduce");
  SYM (GetErrorString, "ncclGetErrorString");
#undef SYM
  /* the message stays for the life of the process, as the library does */
  return ok ? NULL : g_string_free (why, FALSE);
}

gboolean
vdit_comm_nccl_available (GError **error)
{
  static GOnce once = G_ONCE_INIT;
  const char *why = g_once (&once, load, NULL);
  if (why == NULL)
    return TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE, "NCCL cannot be opened: %s", why);
  return FALSE;
}

/* ---- the communicator ----------------------------------------------------------- */

typedef struct {
  ncclComm_t comm;
  cudaStream_t stream;
  int rank, size, device;
  int *one;                  /* device int for the barrier's all-reduce */
  const vdit_comm *bootstrap; /* MPI of a multi-process communicator, else NULL */
  const gint *watch;          /* in one process: non-zero once another rank failed */
  gboolean broken;           /* aborted after a failure: every later call fails */
} nccl_comm;

static gboolean
fail (nccl_comm *c, GError **error, const char *what, const char *why)
{
  if (!c->broken && c->comm)
    nccl.CommAbort (c->comm);
  c->broken = TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "rank %d of %d (GPU %d): NCCL %s %s",
               c->rank, c->size, c->device, what, why);
  return FALSE;
}

/* Polls until NCCL has taken the calls (non-blocking communicators answer InProgress) and
 * the stream has run them, or the deadline passes. */
static gboolean
wait_done (nccl_comm *c, ncclResult_t queued, const char *what, double timeout_s,
           GError **error)
{
  const gint64 deadline = g_get_monotonic_time () + (gint64) (timeout_s * 1e6);
  gulong pause_us = 1;
  ncclResult_t state = queued;
  for (;;) {
    if (state == ncclInProgress && nccl.CommGetAsyncError (c->comm, &state) != ncclSuccess)
      state = ncclInternalError;
    if (state != ncclSuccess && state != ncclInProgress)
      return fail (c, error, what, nccl.GetErrorString (state));
    if (state == ncclSuccess) {
      const cudaError_t e = cudaStreamQuery (c->stream);
      if (e == cudaSuccess)
        return TRUE;
      if (e != cudaErrorNotReady)
        return fail (c, error, what, cudaGetErrorString (e));
      ncclResult_t async = ncclSuccess;
      if (nccl.CommGetAsyncError (c->comm, &async) == ncclSuccess && async != ncclSuccess &&
          async != ncclInProgress)
        return fail (c, error, what, nccl.GetErrorString (async));
    }
    if (c->watch && g_atomic_int_get (c->watch))
      return fail (c, error, what, "stopped: another rank of this process failed");
    if (g_get_monotonic_time () > deadline) {
      g_autofree char *why = g_strdup_printf ("did not complete within %.0f s: another rank "
                                              "died, hung or failed", timeout_s);
      return fail (c, error, what, why);
    }
    g_usleep (pause_us);
    pause_us = MIN (pause_us * 2, 1000);
  }
}

static gboolean
usable (nccl_comm *c, const char *what, GError **error)
{
  if (!c->broken && cudaSetDevice (c->device) == cudaSuccess)
    return TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
               "rank %d of %d (GPU %d): NCCL %s after an earlier failure: the job must end",
               c->rank, c->size, c->device, what);
  return FALSE;
}

static int
nccl_rank (void *ctx)
{
  return ((nccl_comm *) ctx)->rank;
}

static int
nccl_size (void *ctx)
{
  return ((nccl_comm *) ctx)->size;
}

/* send/recv pairs in one group: NCCL has no all-to-all with counts of its own */
static gboolean
nccl_alltoallv (void *ctx, const void *send, const int *send_counts, const int *send_displs,
                void *recv, const int *recv_counts, const int *recv_displs, size_t elem_size,
                double timeout_s, GError **error)
{
  nccl_comm *c = ctx;
  if (!usable (c, "all-to-all", error))
    return FALSE;
  ncclResult_t r = nccl.GroupStart ();
  for (int s = 0; r == ncclSuccess && s < c->size; s++) {
    if (send_counts[s] > 0)
      r = nccl.Send ((const char *) send + (size_t) send_displs[s] * elem_size,
                     (size_t) send_counts[s] * elem_size, ncclUint8, s, c->comm, c->stream);
    if (r == ncclSuccess && recv_counts[s] > 0)
      r = nccl.Recv ((char *) recv + (size_t) recv_displs[s] * elem_size,
                     (size_t) recv_counts[s] * elem_size, ncclUint8, s, c->comm, c->stream);
  }
  const ncclResult_t end = nccl.GroupEnd ();
  if (r != ncclSuccess && r != ncclInProgress)
    return fail (c, error, "all-to-all", nccl.GetErrorString (r));
  return wait_done (c, end, "all-to-all", timeout_s, error);
}

static gboolean
nccl_allgatherv (void *ctx, const void *send, void *recv, const int *counts, const int *displs,
                 size_t elem_size, double timeout_s, GError **error)
{
  nccl_comm *c = ctx;
  if (!usable (c, "all-gather", error))
    return FALSE;
  const size_t mine = (size_t) counts[c->rank] * elem_size;
  ncclResult_t r = nccl.GroupStart ();
  for (int s = 0; r == ncclSuccess && s < c->size; s++) {
    if (mine > 0)
      r = nccl.Send (send, mine, ncclUint8, s, c->comm, c->stream);
    if (r == ncclSuccess && counts[s] > 0)
      r = nccl.Recv ((char *) recv + (size_t) displs[s] * elem_size,
                     (size_t) counts[s] * elem_size, ncclUint8, s, c->comm, c->stream);
  }
  const ncclResult_t end = nccl.GroupEnd ();
  if (r != ncclSuccess && r != ncclInProgress)
    return fail (c, error, "all-gather", nccl.GetErrorString (r));
  return wait_done (c, end, "all-gather", timeout_s, error);
}

static gboolean
nccl_broadcast (void *ctx, void *buf, size_t bytes, int root, double timeout_s, GError **error)
{
  nccl_comm *c = ctx;
  if (!usable (c, "broadcast", error))
    return FALSE;
  const ncclResult_t r = nccl.Broadcast (buf, buf, bytes, ncclUint8, root, c->comm, c->stream);
  return wait_done (c, r, "broadcast", timeout_s, error);
}

static gboolean
nccl_barrier (void *ctx, double timeout_s, GError **error)
{
  nccl_comm *c = ctx;
  if (!usable (c, "barrier", error))
    return FALSE;
  const ncclResult_t r = nccl.AllReduce (c->one, c->one, 1, ncclInt32, ncclMax, c->comm,
                                         c->stream);
  return wait_done (c, r, "barrier", timeout_s, error);
}

/* NCCL cannot end other processes: the bootstrap (MPI) can. */
static void
nccl_job_abort (void *ctx, int code, const char *message)
{
  nccl_comm *c = ctx;
  if (!c->broken && c->comm)
    nccl.CommAbort (c->comm);
  c->broken = TRUE;
  if (c->bootstrap)
    vdit_comm_abort (c->bootstrap, code, message);
}

static void
nccl_free (void *ctx)
{
  nccl_comm *c = ctx;
  if (c->comm)
    (c->broken ? nccl.CommAbort : nccl.CommDestroy) (c->comm);
  cudaSetDevice (c->device);
  if (c->one)
    cudaFree (c->one);
  if (c->stream)
    cudaStreamDestroy (c->stream);
  g_free (c);
}

static const vdit_comm_i nccl_iface = {
  /* .name = */ "nccl",
  /* .free = */ nccl_free,
  /* .rank = */ nccl_rank,
  /* .size = */ nccl_size,
  /* .alltoallv = */ nccl_alltoallv,
  /* .allgatherv = */ nccl_allgatherv,
  /* .broadcast = */ nccl_broadcast,
  /* .barrier = */ nccl_barrier,
  /* .abort = */ nccl_job_abort,
  /* .device_buffers = */ TRUE,
};

/* The stream and the barrier's int on the communicator's GPU. */
static gboolean
comm_device_init (nccl_comm *c, GError **error)
{
  cudaError_t e = cudaSetDevice (c->device);
  if (e == cudaSuccess)
    e = cudaStreamCreateWithFlags (&c->stream, cudaStreamNonBlocking);
  if (e == cudaSuccess)
    e = cudaMalloc ((void **) &c->one, sizeof (int));
  if (e == cudaSuccess)
    e = cudaMemset (c->one, 0, sizeof (int));
  if (e != cudaSuccess) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "GPU %d: %s", c->device,
                 cudaGetErrorString (e));
    return FALSE;
  }
  return TRUE;
}

gboolean
vdit_comm_nccl_init (vdit_comm *comm, const vdit_comm *bootstrap, int device, GError **error)
{
  if (!vdit_comm_nccl_available (error))
    return FALSE;
  nccl_comm *c = g_new0 (nccl_comm, 1);
  c->rank = vdit_comm_rank (bootstrap);
  c->size = vdit_comm_size (bootstrap);
  c->device = device;
  c->bootstrap = bootstrap;
  ncclUniqueId id;
  memset (&id, 0, sizeof id);
  ncclResult_t r = c->rank == 0 ? nccl.GetUniqueId (&id) : ncclSuccess;
  /* every rank takes part in the broadcast, even when rank 0's id failed: an empty id
   * then fails everywhere instead of leaving the others waiting */
  if (!vdit_comm_broadcast (bootstrap, &id, sizeof id, 0, error) || !comm_device_init (c, error))
    goto fail;
  if (r != ncclSuccess) {
    fail (c, error, "unique id", nccl.GetErrorString (r));
    goto fail;
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0; /* the rendezvous is polled, with the deadline */
  r = nccl.CommInitRankConfig (&c->comm, c->size, id, c->rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    fail (c, error, "rendezvous", nccl.GetErrorString (r));
    goto fail;
  }
  const double timeout = bootstrap->timeout_s > 0.0 ? bootstrap->timeout_s
                                                     : VDIT_COMM_DEFAULT_TIMEOUT_S;
  if (!wait_done (c, r, "rendezvous", timeout, error))
    goto fail;
  *comm = (vdit_comm) { .iface = &nccl_iface, .context = c, .timeout_s = bootstrap->timeout_s };
  return TRUE;
fail:
  nccl_free (c);
  return FALSE;
}

gboolean
vdit_comm_nccl_init_all (vdit_comm *comms, int n, const int *devices, const gint *watch,
                         GError **error)
{
  if (!vdit_comm_nccl_available (error))
    return FALSE;
  ncclComm_t *raw = g_new0 (ncclComm_t, n);
  const ncclResult_t r = nccl.CommInitAll (raw, n, devices);
  if (r != ncclSuccess) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "NCCL over %d GPUs: %s", n,
                 nccl.GetErrorString (r));
    g_free (raw);
    return FALSE;
  }
  gboolean ok = TRUE;
  for (int i = 0; i < n; i++) {
    nccl_comm *c = g_new0 (nccl_comm, 1);
    *c = (nccl_comm) { .comm = raw[i], .rank = i, .size = n, .device = devices[i],
                       .watch = watch };
    comms[i] = (vdit_comm) { .iface = &nccl_iface, .context = c, .timeout_s = 0.0 };
    ok = ok && comm_device_init (c, ok ? error : NULL);
  }
  g_free (raw);
  if (!ok)
    for (int i = 0; i < n; i++)
      vdit_comm_free (&comms[i]);
  return ok;
}
