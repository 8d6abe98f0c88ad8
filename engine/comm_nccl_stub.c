/* Built without NCCL: its communicators are absent and say so. */
#include "comm.h"

#include "vdit.h"

static gboolean
no_nccl (GError **error)
{
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
               "this vdit was built without NCCL (needs the CUDA backend and nccl.h in the "
               "CUDA toolkit)");
  return FALSE;
}

gboolean
vdit_comm_nccl_available (GError **error)
{
  return no_nccl (error);
}

gboolean
vdit_comm_nccl_init (vdit_comm *comm, const vdit_comm *bootstrap, int device, GError **error)
{
  return no_nccl (error);
}

gboolean
vdit_comm_nccl_init_all (vdit_comm *comms, int n, const int *devices, const gint *watch,
                         GError **error)
{
  return no_nccl (error);
}
