/* AdaSpa's pattern choice, on the host: from the attention mass of every
 * (query block, key block) pair to a block layout with head-adaptive sparsity. */
#ifndef VDIT_ADAPTIVE_SELECT_H
#define VDIT_ADAPTIVE_SELECT_H

#include "backend.h"

G_BEGIN_DECLS

/* A head whose kept blocks hold at least this fraction of its attention mass may give
 * blocks to the heads that hold less. */
#define VDIT_ADAPTIVE_RECALL 0.8

/* scores (heads, n_qblocks, n_kblocks) as backend block_scores computes them. Every row
 * of head h keeps the same number keep[h] of key blocks: key block 0 (the sink) and the
 * highest-scoring others. keep starts at round((1 − sparsity)·n_kblocks) for every head
 * (at least min(2, n_kblocks)); then, one block at a time, the head with the lowest
 * recall below VDIT_ADAPTIVE_RECALL takes a block from the head that stays most above
 * it, so the average is unchanged. Fills out (n_heads = heads; the caller frees
 * row_ptr and cols with g_free) and, when not NULL, keep (heads). Returns the fraction of
 * block pairs kept. */
double vdit_adaptive_select (vdit_block_layout *out, int *keep, const float *scores, int heads,
                             int n_q, int n_k, int block_q, int block_k, float sparsity);

/* Fraction of the attention mass in scores that the layout keeps, per head (recall,
 * heads entries) and overall (returned). */
double vdit_layout_recall (const vdit_block_layout *layout, const float *scores, int heads,
                           double *recall);

G_END_DECLS

#endif
