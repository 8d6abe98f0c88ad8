/* Which communicator carries a parallel job's DiT exchanges when its ranks are processes
 * (MPI): NCCL between their GPUs where every rank can, else MPI itself (through host
 * memory on a GPU, in place on the CPU). */
#ifndef VDIT_SP_EXCHANGE_H
#define VDIT_SP_EXCHANGE_H

#include "comm.h"

G_BEGIN_DECLS

/* Called by every rank of comm at the same point of a clip (a collective). cuda_device:
 * this rank's GPU, or -1 on the CPU. NCCL is chosen when every rank has a GPU, NCCL opens
 * everywhere, no two ranks of one machine share a GPU (NCCL refuses that) and
 * VDIT_SP_EXCHANGE is not "host"; *nccl (valid while *have) is then made, bootstrapped by
 * comm, or kept from an earlier clip when every rank kept its own. *exchange receives the
 * NCCL communicator or NULL (comm). */
gboolean vdit_sp_exchange_choose (const vdit_comm *comm, int cuda_device, vdit_comm *nccl,
                                  gboolean *have, const vdit_comm **exchange, GError **error);

G_END_DECLS

#endif
