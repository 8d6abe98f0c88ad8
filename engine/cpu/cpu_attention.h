/* CPU block-sparse flash attention and AdaSpa block scores (contracts in backend.h).
 * All buffers are host f32; ctx is the CPU backend context and is not used. */
#ifndef VDIT_CPU_ATTENTION_H
#define VDIT_CPU_ATTENTION_H

#include "backend.h"

G_BEGIN_DECLS

void cpu_attention (void *ctx, void *out, int ldo, const void *q, int ldq, const void *k,
                    int ldk, const void *v, int ldv, int nq, int nk, int heads, int head_dim,
                    float scale, const void *bias, const void *layout, float *lse);
void *cpu_layout_new (void *ctx, const vdit_block_layout *layout, GError **error);
void cpu_layout_free (void *ctx, void *layout);
void cpu_block_scores (void *ctx, float *scores, const void *q, int ldq, const void *k,
                       int ldk, const float *lse, int nq, int nk, int heads, int head_dim,
                       float scale, int block_q, int block_k);

G_END_DECLS

#endif
