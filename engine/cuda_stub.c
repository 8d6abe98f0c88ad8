/* Built when the engine has no CUDA backend (no nvcc at configure time, or -Dcuda=disabled):
 * the CUDA entry points exist and say so, so callers need no #ifdefs. */
#include "backend.h"
#include "vdit.h"

gboolean
vdit_backend_cuda_init (vdit_backend *be, int device_id, GError **error)
{
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
               "CUDA device %d requested, but vdit was built without CUDA", device_id);
  return FALSE;
}

gboolean
vdit_cuda_available (int *n_devices)
{
  if (n_devices)
    *n_devices = 0;
  return FALSE;
}

void
vdit_cuda_set_alloc_limit (guint64 bytes)
{
}

gboolean
vdit_gpu_memory_get (int device, vdit_gpu_memory *mem)
{
  return FALSE;
}
