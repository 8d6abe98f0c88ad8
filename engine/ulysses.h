/* Ulysses sequence parallelism (DeepSpeed-Ulysses, as xDiT and Efficient-vDiT run it).
 *
 * Each rank holds a contiguous share of the tokens for everything that works row by
 * row (patch embedding, norms, projections, RoPE, cross-attention, FFN, final layer).
 * Self-attention needs every token: an all-to-all turns this rank's rows of all heads
 * into all rows of this rank's heads, attention runs on them (full, tile or adaptive,
 * the masks made for the local heads), and a second all-to-all turns the output back.
 * Splits need not be even: tokens and heads are shared out as evenly as they go
 * (24 heads over 5 ranks: 5, 5, 5, 5, 4).
 *
 *   rank r: q,k,v (tokens_r, 3·heads·hd) ──all-to-all──▶ (tokens, 3·heads_r·hd)
 *           attention over every token for heads_r
 *           out (tokens, heads_r·hd) ──all-to-all──▶ (tokens_r, heads·hd)
 */
#ifndef VDIT_ULYSSES_H
#define VDIT_ULYSSES_H

#include "attention_plan.h"
#include "backend.h"
#include "comm.h"

G_BEGIN_DECLS

typedef struct vdit_ulysses vdit_ulysses;

/* The plan of n tokens and `heads` heads of head_dim over the communicator's ranks.
 * VDIT_ERROR_INVALID_ARGUMENT when a rank would get no head or no token (more ranks
 * than heads or tokens), naming the numbers. The communicators must outlive the plan.
 *
 * exchange (NULL: comm) carries the two all-to-alls: a GPU communicator (NCCL, device
 * buffers) over the same ranks as comm, which carries the host-side rest (gathered
 * rows). Where the exchange takes the backend's buffers (device buffers, or a backend
 * whose buffers are host memory, as the CPU's) the heads are packed on the backend and
 * exchanged in place; otherwise (a GPU under MPI) they go through host memory. The
 * environment's VDIT_SP_EXCHANGE=host forces the latter, to compare the two. */
vdit_ulysses *vdit_ulysses_new (vdit_backend *be, const vdit_comm *comm,
                                const vdit_comm *exchange, int tokens, int heads, int head_dim,
                                GError **error);
/* TRUE when the exchanges take the backend's buffers (no host round trip). */
gboolean vdit_ulysses_direct (const vdit_ulysses *u);
void vdit_ulysses_free (vdit_ulysses *u);

/* This rank's share: tokens [token0, token0 + tokens) and heads [head0, head0 + heads). */
int vdit_ulysses_token0 (const vdit_ulysses *u);
int vdit_ulysses_tokens (const vdit_ulysses *u);
int vdit_ulysses_head0 (const vdit_ulysses *u);
int vdit_ulysses_heads (const vdit_ulysses *u);

/* Self-attention of this rank's tokens. qkv: backend buffer (tokens_r, 3·D) with q, k, v
 * side by side (RoPE applied); att: backend buffer (tokens_r, D) for the output, D =
 * heads·head_dim. policy NULL = dense; otherwise made for this rank's heads over all
 * tokens (vdit_attn_policy_share_heads). */
gboolean vdit_ulysses_attention (vdit_ulysses *u, void *att, const void *qkv,
                                 vdit_attn_policy *policy, int step, int layer, int pass,
                                 float scale, GError **error);

/* Every rank's rows of a host f32 matrix: mine (tokens_r, width) into all (tokens, width)
 * on every rank. */
gboolean vdit_ulysses_gather_rows (vdit_ulysses *u, const float *mine, float *all, int width,
                                   GError **error);

/* An ACT buffer of n elements from rank 0 to every rank (the text embeddings, computed
 * once). */
gboolean vdit_sp_broadcast_act (const vdit_comm *comm, vdit_backend *be, void *buf, size_t n,
                                GError **error);

G_END_DECLS

#endif
