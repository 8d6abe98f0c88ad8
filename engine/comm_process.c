/* The process's communicator, for hosts that cannot own one (a GStreamer element is made
 * and dropped many times in one process, but MPI starts once per process). */
#include "comm_process.h"

#include "vdit.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>

static GMutex process_lock;
static gboolean process_ready;
static vdit_comm process_comm;

/* At exit: rank 0 releases the ranks serving it, then MPI ends. Another rank has no one
 * to release and its peers wait for it in a collective: the whole job ends. */
static void
process_comm_end (void)
{
  if (vdit_comm_size (&process_comm) > 1 && vdit_comm_rank (&process_comm) != 0)
    vdit_comm_abort (&process_comm, 1, "only rank 0 may host the generation");
  if (vdit_comm_size (&process_comm) > 1) {
    GError *error = NULL;
    if (!vdit_sp_job_send_stop (&process_comm, &error)) {
      fprintf (stderr, "vdit: %s\n", error->message);
      g_error_free (error);
    }
  }
  vdit_comm_free (&process_comm);
}

const vdit_comm *
vdit_comm_process (GError **error)
{
  g_mutex_lock (&process_lock);
  if (!process_ready) {
    if (!vdit_comm_init_auto (&process_comm, error)) {
      g_mutex_unlock (&process_lock);
      return NULL;
    }
    const char *timeout = g_getenv ("VDIT_COMM_TIMEOUT");
    if (timeout != NULL && g_ascii_strtod (timeout, NULL) > 0.0)
      process_comm.timeout_s = g_ascii_strtod (timeout, NULL);
    process_ready = TRUE;
    atexit (process_comm_end);
  }
  g_mutex_unlock (&process_lock);
  return &process_comm;
}
