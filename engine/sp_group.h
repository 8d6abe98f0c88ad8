/* The ranks of a parallel job inside one process (gpus=N in a GStreamer pipeline, or
 * N ranks on the CPU in tests): rank 0 is the caller's context; each other rank is a
 * host thread with a context of its own (its own backend: GPU first+i, or a CPU thread
 * pool) that serves rank 0's generations as a worker process would (worker.h). The
 * ranks talk through a thread communicator (jobs, text embeddings, gathered rows) and,
 * on GPUs, NCCL made by ncclCommInitAll for the DiT's exchanges.
 *
 * A clip that fails part-way on any rank breaks the group: every rank leaves its
 * collectives at once (no deadline to wait out), the helpers go idle, and the next clip
 * on rank 0 first brings them back in step (vdit_sp_group_recover). */
#ifndef VDIT_SP_GROUP_H
#define VDIT_SP_GROUP_H

#include "comm.h"
#include "vdit.h"

G_BEGIN_DECLS

typedef struct vdit_sp_group vdit_sp_group;

/* ranks − 1 helper threads, each with its context ready (or the first one's error).
 * params: rank 0's (gpus 1); first_device: rank 0's GPU, or −1 for CPU ranks. The
 * collectives' deadline is VDIT_COMM_TIMEOUT seconds when set. model must outlive it. */
vdit_sp_group *vdit_sp_group_new (vdit_model *model, const vdit_ctx_params *params, int ranks,
                                  int first_device, GError **error);
/* Stops the helpers (a clip they are in is broken off) and joins them. */
void vdit_sp_group_free (vdit_sp_group *g);

/* Rank 0's communicator, and its exchange communicator (NCCL) or NULL. */
const vdit_comm *vdit_sp_group_comm (vdit_sp_group *g);
const vdit_comm *vdit_sp_group_exchange (vdit_sp_group *g);

/* Rank 0 failed inside a clip: the helpers leave it (their collectives fail at once and
 * their contexts are cancelled). */
void vdit_sp_group_fail (vdit_sp_group *g, const char *message);
/* Before a clip: after a failure, waits (within the deadline) for every helper to have
 * left the broken clip, then makes the communicators usable again. */
gboolean vdit_sp_group_recover (vdit_sp_group *g, GError **error);
/* vdit_cancel / vdit_reset_cancel on every helper's context. */
void vdit_sp_group_cancel (vdit_sp_group *g, gboolean cancel);

G_END_DECLS

#endif
