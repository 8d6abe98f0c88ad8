/* Self-attention policies: full, tile (Efficient-vDiT k:(T−k) masks) and adaptive
 * (AdaSpa block-sparse with LSE-cached search). One policy object lives for one
 * generation; the DiT hands it every self-attention call and it decides how to run it. */
#ifndef VDIT_ATTENTION_PLAN_H
#define VDIT_ATTENTION_PLAN_H

#include "backend.h"
#include "comm.h"
#include "config.h"

G_BEGIN_DECLS

typedef struct vdit_attn_policy vdit_attn_policy;

typedef struct {
  VditAttention mode;   /* FULL, TILE or ADAPTIVE (DEFAULT resolved by the caller) */
  int frames;           /* latent frames after temporal patching (T) */
  int tokens_per_frame; /* grid_h · grid_w */
  int depth, heads, head_dim;
  int steps;            /* sampling steps of this generation */
  float sparsity;       /* adaptive target; < 0 = config's */
  const gint *cancel;   /* non-NULL: a search step stops between its parts once non-zero */
} vdit_attn_policy_params;

vdit_attn_policy *vdit_attn_policy_new (vdit_backend *be, const vdit_config *cfg,
                                        const vdit_attn_policy_params *params, GError **error);
void vdit_attn_policy_free (vdit_attn_policy *p);

/* Sequence parallelism: p (made with this rank's head count) runs this rank's share of
 * heads_total heads, shared over comm's ranks as vdit_comm_split shares them. Adaptive
 * mode then chooses its pattern from every rank's block scores, as one process would for
 * all heads (head-adaptive sparsity moves blocks between heads), and keeps its own
 * heads' rows: the same masks whatever the number of ranks. comm must outlive p. */
gboolean vdit_attn_policy_share_heads (vdit_attn_policy *p, const vdit_comm *comm,
                                       int heads_total, GError **error);

/* Runs self-attention of `layer` at sampling step `step` (0-based) for pass `pass`
 * (0 = conditional, 1 = unconditional; adaptive keeps patterns per pass) with the
 * policy's mask. Shapes as backend attention: q/k/v (n, heads·head_dim) with strides. */
gboolean vdit_attn_policy_run (vdit_attn_policy *p, int step, int layer, int pass, void *out,
                               int ldo, const void *q, int ldq, const void *k, int ldk,
                               const void *v, int ldv, float scale, GError **error);

/* TRUE when this call of a TILE or ADAPTIVE policy is plain dense attention (a layer whose
 * plan keeps every frame, an adaptive warm-up step): the caller runs it itself (the DiT
 * splits it into cancellable chunks on the CPU) and the policy records it as if it had
 * run it. FULL and recorder policies always run their own calls. */
gboolean vdit_attn_policy_take_dense (vdit_attn_policy *p, int step, int layer, int pass);
/* TRUE when every step runs the same backend work on the same buffers once the first
 * step has made the layouts (full and tile policies): a step recorded as a graph may be
 * replayed for the next. Adaptive searches and recorders read results back on the host. */
gboolean vdit_attn_policy_replayable (const vdit_attn_policy *p);
/* Fraction of (query-block, key-block) pairs kept, averaged over layers and heads, at
 * the last step run (1.0 for full). */
double vdit_attn_policy_density (const vdit_attn_policy *p);
/* The self-attention tokens the policy was made for (frames × tokens per frame). */
int vdit_attn_policy_tokens (const vdit_attn_policy *p);

/* The host layout adaptive mode runs `layer` of `pass` with now: NULL before that
 * layer's first search, in other modes, and when the backend chose the pattern itself
 * (adaptive_layout). Owned by the policy. */
const vdit_block_layout *vdit_attn_policy_get_layout (const vdit_attn_policy *p, int layer,
                                                      int pass);
/* Kept key blocks per row of each head (heads entries) in that layout; FALSE if none. */
gboolean vdit_attn_policy_get_keep (const vdit_attn_policy *p, int layer, int pass, int *keep);

/* Mask search (`vdit search-masks`). A recorder returns full attention, so generation
 * follows the dense trajectory, and at every call also runs the tile mask of each
 * k = 0 .. T−1 on the same q, k, v and accumulates its error against the full output. */
vdit_attn_policy *vdit_attn_policy_new_recorder (vdit_backend *be,
                                                 const vdit_attn_policy_params *params,
                                                 GError **error);
/* errors (depth, frames): for layer l and k global frames, sqrt(Σ‖O_k − O‖² / Σ‖O‖²)
 * over all of that layer's calls so far (0 where nothing ran). FALSE if p is not a
 * recorder. */
gboolean vdit_attn_policy_get_errors (const vdit_attn_policy *p, double *errors);

/* Tile mask k:(T−k) as a layout with one latent frame per block. Kept blocks:
 * diagonal, the first k key columns, the first k query rows. The caller frees the
 * arrays with g_free. */
void vdit_tile_layout (vdit_block_layout *out, int frames, int tokens_per_frame, int k);
/* T·k + k(T−k) + (T−k) for 0 < k < T (T² for k ≥ T, T for k = 0). */
int64_t vdit_tile_kept_count (int frames, int k);
/* The kept fraction of the T² tiles. */
double vdit_tile_density (int frames, int k);

G_END_DECLS

#endif
