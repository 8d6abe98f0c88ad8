/* The choice of the DiT's exchange communicator in a multi-process job. */
#include "sp_exchange.h"

#include <string.h>

enum { INFO_DEVICE, INFO_HOST, INFO_HAVE, INFO_N };

gboolean
vdit_sp_exchange_choose (const vdit_comm *comm, int cuda_device, vdit_comm *nccl,
                         gboolean *have, const vdit_comm **exchange, GError **error)
{
  const int size = vdit_comm_size (comm), rank = vdit_comm_rank (comm);
  const gboolean able = cuda_device >= 0 && vdit_comm_nccl_available (NULL) &&
                        g_strcmp0 (g_getenv ("VDIT_SP_EXCHANGE"), "host") != 0;
  /* the machine by its name: ranks that share one must not share a GPU */
  const int mine[INFO_N] = { able ? cuda_device : -1, (int) g_str_hash (g_get_host_name ()),
                             *have };
  int *all = g_new (int, (size_t) size * INFO_N), *counts = g_new (int, size),
      *displs = g_new (int, size);
  for (int r = 0; r < size; r++)
    counts[r] = INFO_N, displs[r] = r * INFO_N;
  gboolean ok = vdit_comm_allgatherv (comm, mine, all, counts, displs, sizeof (int), error);
  gboolean use = ok, all_have = TRUE;
  for (int r = 0; ok && r < size; r++) {
    const int *a = all + (size_t) r * INFO_N;
    use = use && a[INFO_DEVICE] >= 0;
    all_have = all_have && a[INFO_HAVE];
    for (int s = 0; s < r; s++)
      if (all[(size_t) s * INFO_N + INFO_HOST] == a[INFO_HOST] &&
          all[(size_t) s * INFO_N + INFO_DEVICE] == a[INFO_DEVICE])
        use = FALSE;
  }
  g_free (all), g_free (counts), g_free (displs);
  *exchange = NULL;
  if (!ok)
    return FALSE;
  if (*have && (!use || !all_have)) {
    vdit_comm_free (nccl);
    *have = FALSE;
  }
  if (use && !*have) {
    if (!vdit_comm_nccl_init (nccl, comm, cuda_device, error))
      return FALSE;
    *have = TRUE;
  }
  if (use)
    *exchange = nccl;
  g_debug ("rank %d of %d: DiT exchanges over %s", rank, size, use ? "NCCL" : comm->iface->name);
  return TRUE;
}
