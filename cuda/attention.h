/* Flash attention forward (dense and block-sparse) and AdaSpa block scores on bf16
 * activations: C launch interface for cuda/attention.cu and cuda/block_scores.cu. */
#ifndef VDIT_CUDA_ATTENTION_H
#define VDIT_CUDA_ATTENTION_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layout tile: 64 query rows by 64 keys. The sm_80 kernel runs one query tile per block;
 * the sm_90a kernel a pair (2 warpgroups × 64 rows) sharing the union of their key tiles. */
#define VDIT_CUDA_ATTN_TILE_Q 64
#define VDIT_CUDA_ATTN_TILE_K 64
/* Tiles of the FlashAttention-3-structured sm_90a kernel: 2 consumer warpgroups × 64
 * query rows by 128 keys. */
#define VDIT_CUDA_ATTN_WIDE_Q 128
#define VDIT_CUDA_ATTN_WIDE_K 128
/* Largest head dim the kernels take (head dims are padded up to 16, 32, 64, 96, 128). */
#define VDIT_CUDA_ATTN_MAX_HEAD_DIM 128
/* Set in a `cols` entry: the kernel tile is only partly kept (it straddles a layout block
 * boundary, or holds the ragged end of the keys): mask element by element. */
#define VDIT_CUDA_ATTN_PARTIAL ((int32_t) 0x40000000)

/* A block layout mapped onto kernel tiles (made by vdit_cuda_layout_new). Pointers are
 * device memory; the ints describe the original layout, whose blocks may have any size
 * (a latent frame of 3,600 tokens in tile mode, 64 in adaptive mode). */
typedef struct {
  int n_heads;             /* 1 = shared by every head */
  int nq, nk;              /* tokens */
  int n_qtiles, n_ktiles;  /* kernel tiles */
  int block_q, block_k, n_qblocks, n_kblocks;
  const int32_t *row_ptr;  /* (n_heads, n_qtiles + 1) into cols */
  const int32_t *cols;     /* key tile | VDIT_CUDA_ATTN_PARTIAL, ascending per row */
  const int32_t *order;    /* (n_heads, n_qtiles): query tiles, heaviest first */
  const int32_t *order2;   /* (n_heads, ceil(n_qtiles / 2)): tile pairs, heaviest first */
  const uint32_t *bitmap;  /* (n_heads, n_qblocks, n_kblocks) kept bits, row-major */
  int64_t kept_tiles;      /* kernel tiles listed over the layout's heads (times the
                              attention's heads when n_heads == 1) */
  int64_t partial_tiles;   /* of those, the masked ones */
  /* the same over WIDE_Q × WIDE_K tiles */
  int n_wide_qtiles;
  const int32_t *wide_row_ptr, *wide_cols, *wide_order;
  int64_t wide_kept_tiles, wide_partial_tiles;
} vdit_cuda_attn_layout;

typedef struct {
  void *out;               /* bf16 (nq, ldo): head h at columns [h·hd, (h+1)·hd) */
  const void *q, *k, *v;   /* bf16, rows of ldq / ldk / ldv */
  const void *bias;        /* NULL or bf16 (heads, nq, nk), added to the scaled scores */
  float *lse;              /* NULL or (heads, nq) */
  int ldo, ldq, ldk, ldv;
  int nq, nk, heads, head_dim;
  float scale;
  const vdit_cuda_attn_layout *layout; /* NULL = dense */
} vdit_cuda_attn_args;

/* Queues the attention on `stream`; returns the launch error (cudaErrorInvalidValue for
 * a head dim over VDIT_CUDA_ATTN_MAX_HEAD_DIM or a layout of other sizes). */
cudaError_t vdit_cuda_attention_launch (const vdit_cuda_attn_args *a, cudaStream_t stream);

/* scores(heads, ceil(nq/block_q), ceil(nk/block_k)) = Σ over each block of
 * exp(q·kᵀ·scale − lse[row]); rows with lse = −inf add nothing. */
cudaError_t vdit_cuda_block_scores_launch (float *scores, const void *q, int ldq,
                                           const void *k, int ldk, const float *lse, int nq,
                                           int nk, int heads, int head_dim, float scale,
                                           int block_q, int block_k, cudaStream_t stream);

/* Dense attention that also leaves AdaSpa's 64 × 64 block scores: out and lse (needed)
 * as vdit_cuda_attention_launch with no layout, scores (heads, ceil(nq/64), ceil(nk/64))
 * as vdit_cuda_block_scores_launch with that lse, from the attention's own exponentials
 * (one pass over K and V instead of a second pass over K). row_lse: F32 scratch of
 * row_lse_elems ≥ vdit_cuda_attention_scored_elems (a, 1); more lets more heads go in one
 * launch (all of them at vdit_cuda_attention_scored_elems (a, a->heads)). Returns
 * cudaErrorNotSupported when vdit_cuda_attention_scored_usable (a) is false. */
int vdit_cuda_attention_scored_usable (const vdit_cuda_attn_args *a);
size_t vdit_cuda_attention_scored_elems (const vdit_cuda_attn_args *a, int heads);
cudaError_t vdit_cuda_attention_scored_launch (const vdit_cuda_attn_args *a, float *scores,
                                               float *row_lse, size_t row_lse_elems,
                                               cudaStream_t stream);
/* The last step of it: scores from row_lse (heads, ceil(nk/64), nq), each row's
 * log2 Σ 2^(s·scale·log2 e) over each 64-key block, and lse (heads, nq). */
cudaError_t vdit_cuda_block_scores_from_rows_launch (float *scores, const float *row_lse,
                                                     const float *lse, int nq, int nk,
                                                     int heads, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
