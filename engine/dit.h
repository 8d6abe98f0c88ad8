/* The video DiT forward pass (docs/model-format.md, "Block", "3D RoPE", "Final layer"). */
#ifndef VDIT_DIT_H
#define VDIT_DIT_H

#include "attention_plan.h"
#include "backend.h"
#include "config.h"
#include "ulysses.h"
#include "weights.h"

G_BEGIN_DECLS

typedef struct vdit_dit vdit_dit;
typedef struct vdit_dit_text vdit_dit_text; /* per-prompt caption and cross-attn K/V */
typedef struct vdit_dit_ws vdit_dit_ws;     /* activations for one token grid */

vdit_dit *vdit_dit_new (vdit_backend *be, const vdit_config *cfg, const vdit_weights *w,
                        GError **error);
/* The weights of dit, run through another backend of the same kind that can read dit's
 * buffers: host memory (a CPU backend with its own thread pool and scratch) or the same
 * CUDA device (a backend with its own stream). Freeing the view leaves the weights to
 * dit, which must outlive it. */
vdit_dit *vdit_dit_new_view (const vdit_dit *dit, vdit_backend *be);
void vdit_dit_free (vdit_dit *dit);

/* text: ACT buffer (n_text, text_encoder.d_model) from the text encoder. A caption of
 * one token (the empty negative prompt: its end-of-text token) is one key, whose softmax
 * weight is 1 for every query: its cross-attention is then the same row added to every
 * token, made once here, and a forward skips that layer's Q projection, attention and
 * output projection (the same result up to rounding). */
vdit_dit_text *vdit_dit_text_new (vdit_dit *dit, const void *text, int n_text, GError **error);
int vdit_dit_text_tokens (const vdit_dit_text *t);
void vdit_dit_text_free (vdit_dit *dit, vdit_dit_text *t);

/* Workspace for a patch grid of gt × gh × gw tokens (t outermost). */
vdit_dit_ws *vdit_dit_ws_new (vdit_dit *dit, int gt, int gh, int gw, GError **error);
/* Sequence parallelism: a workspace for tokens [first, first + count) of the grid, whose
 * self-attention runs through sp (which must cover the same tokens and outlive ws). The
 * forward then takes and returns only those tokens' rows. */
vdit_dit_ws *vdit_dit_ws_new_shared (vdit_dit *dit, int gt, int gh, int gw, vdit_ulysses *sp,
                                     GError **error);
void vdit_dit_ws_free (vdit_dit *dit, vdit_dit_ws *ws);
/* Guidance: a step's conditional and unconditional passes see the same patches and
 * timestep, and the caption first enters at block 0's cross-attention. After this call a
 * pass-0 forward keeps x as block 0's self-attention leaves it (one more (tokens, D)
 * buffer) and a pass-1 forward starts from there, skipping the patch embedding (its
 * patches are not read), the timestep MLP and block 0's self-attention: the same result
 * bit for bit, provided each pass 1 follows its step's pass 0 in this workspace
 * (vdit_generate's order). Where the backend cannot copy rows (no copy_rows) nothing
 * changes. vdit_dit_ws_shares_prefix says whether it is on. */
gboolean vdit_dit_ws_share_prefix (vdit_dit *dit, vdit_dit_ws *ws, GError **error);
gboolean vdit_dit_ws_shares_prefix (const vdit_dit_ws *ws);
int vdit_dit_ws_tokens (const vdit_dit_ws *ws);

/* One forward: patches (tokens, C·P) host f32 in, out (tokens, P·C) host f32.
 * policy NULL = dense self-attention. Stops with VDIT_ERROR_CANCELLED when *cancel
 * becomes non-zero (checked after every block). */
gboolean vdit_dit_forward (vdit_dit *dit, vdit_dit_ws *ws, const float *patches, float timestep,
                           const vdit_dit_text *text, vdit_attn_policy *policy, int step,
                           int pass, float *out, const gint *cancel, GError **error);

/* The same forward with its input and output left on the backend: ws's input buffer
 * (ACT (tokens, C·P), patchify order) is filled by the caller (the backend's patchify),
 * the output (ACT (tokens, P·C), unpatchify order) stays there. Nothing is uploaded,
 * downloaded or waited for, so the ops can be recorded as a graph (backend.h) and
 * replayed: the timestep lives in a backend buffer set by vdit_dit_set_timestep (which
 * may wait), before the forward is queued or replayed. */
void *vdit_dit_ws_input (vdit_dit_ws *ws);
const void *vdit_dit_ws_output (const vdit_dit_ws *ws);
gboolean vdit_dit_set_timestep (vdit_dit *dit, vdit_dit_ws *ws, float timestep, GError **error);
gboolean vdit_dit_forward_queued (vdit_dit *dit, vdit_dit_ws *ws, const vdit_dit_text *text,
                                  vdit_attn_policy *policy, int step, int pass,
                                  const gint *cancel, GError **error);

/* Host layout conversions between a latent (T, H, W, C) and tokens. */
void vdit_patchify (float *patches, const float *latent, int T, int H, int W, int C,
                    const int patch[3]);
/* The same with every value times scale (rounded to f32), as the sampler's input scale. */
void vdit_patchify_scaled (float *patches, const float *latent, float scale, int T, int H,
                           int W, int C, const int patch[3]);
void vdit_unpatchify (float *latent, const float *tokens, int T, int H, int W, int C,
                      const int patch[3]);

G_END_DECLS

#endif
