/* Internal entry points of a context, for the engine's own tests and tools. */
#ifndef VDIT_CTX_H
#define VDIT_CTX_H

#include "attention_plan.h"
#include "comm.h"
#include "vdit.h"

G_BEGIN_DECLS

/* Prompt → token ids with EOS, as the text encoder sees them. Caller frees *ids. */
gboolean vdit_ctx_tokenize (vdit_ctx *ctx, const char *text, int32_t **ids, int *n,
                            GError **error);
/* vdit_generate that also copies the final latent (T, H, W, C) into latent_out when it
 * is not NULL (it must hold frames·height·width·channels floats). */
gboolean vdit_generate_latent (vdit_ctx *ctx, const vdit_gen_params *params, float *latent_out,
                               GError **error);

/* The same with the caller's self-attention policy (NULL = as params->attention says);
 * the policy is not freed and must match the generation's frames, steps and model. */
gboolean vdit_generate_with_policy (vdit_ctx *ctx, const vdit_gen_params *params,
                                    vdit_attn_policy *policy, float *latent_out, GError **error);
/* Sequence parallelism over comm's ranks (NULL or one rank: this process alone). Rank 0
 * calls vdit_generate, which hands each generation to the other ranks, where
 * vdit_worker_serve runs it (worker.h); vdit_bench_dit_step runs on every rank at once.
 * Rank 0 alone decodes frames. comm must outlive the context's generations. */
gboolean vdit_ctx_set_comm (vdit_ctx *ctx, const vdit_comm *comm, GError **error);
/* The same with a second communicator over the same ranks for the DiT's exchanges
 * (NCCL on device buffers; NULL: comm carries them), e.g. an in-process job's. */
gboolean vdit_ctx_set_comms (vdit_ctx *ctx, const vdit_comm *comm, const vdit_comm *exchange,
                             GError **error);
/* A context whose generations run over `ranks` ranks of this process (sp_group.h): rank
 * 0 is the context itself, the others helper threads with contexts of their own. On
 * CUDA (params->device) GPUs device_id.. device_id + ranks − 1 exchange over NCCL, as
 * vdit_ctx_new does for gpus = ranks; on the CPU each rank has params->threads threads
 * and the ranks exchange through shared memory (tests, comparisons). */
vdit_ctx *vdit_ctx_new_ranks (vdit_model *model, const vdit_ctx_params *params, int ranks,
                              GError **error);
/* The ranks of the context's generations (1 alone). */
int vdit_ctx_get_ranks (const vdit_ctx *ctx);
/* The context's model. */
vdit_model *vdit_ctx_get_model (vdit_ctx *ctx);
/* TRUE once a generation failed while the other ranks were inside it (a collective timed
 * out, a cancel between steps): they cannot be brought back in step, so the host should
 * end the job (vdit_comm_abort); later generations fail at once. A failure while rank 0
 * decodes alone leaves the job in step. */
gboolean vdit_ctx_out_of_step (const vdit_ctx *ctx);
/* The backend the context runs on (to make policies for it). */
vdit_backend *vdit_ctx_get_backend (vdit_ctx *ctx);

G_END_DECLS

#endif
