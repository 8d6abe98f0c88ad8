/* Built without MPI: the MPI communicator is absent and says so. */
#include "comm.h"

#include "vdit.h"

gboolean
vdit_comm_mpi_available (void)
{
  return FALSE;
}

gboolean
vdit_comm_mpi_init (vdit_comm *comm, GError **error)
{
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
               "this vdit was built without MPI (install libopenmpi-dev and rebuild with "
               "-Dmpi=enabled)");
  return FALSE;
}
