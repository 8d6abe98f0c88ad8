// The FlashAttention-3-structured sm_90a kernel's entry points (C++; used by
// attention.cu's dispatcher).
#pragma once

#include <cuda_runtime_api.h>

namespace vdit {

struct AttnParams;

// TRUE when the current device is compute capability 9.0, this build carries sm_90a code
// and the driver offers cuTensorMapEncodeTiled; cached per device.
bool vdit_cuda_attention_fa3_usable ();
// Head dims 64, 96 and 128 exactly; q/k/v 16-byte aligned with row strides a multiple of
// 8 elements; no bias. Sparse: p's row_ptr / cols / order / n_qtiles are the layout's
// VDIT_CUDA_ATTN_WIDE_Q × VDIT_CUDA_ATTN_WIDE_K lists, or with `narrow` its 64 × 64 ones
// (layouts whose query blocks are under 128 rows, whose 64-row tiles differ).
cudaError_t vdit_cuda_attention_fa3_launch (const AttnParams &p, int heads, bool narrow,
                                            cudaStream_t stream);

// Dense attention (p.row_ptr NULL) that also writes p.row_lse (attention_tile.cuh), for
// AdaSpa's 64 × 64 block scores in one pass with the attention; same head dims and
// alignment as above.
cudaError_t vdit_cuda_attention_scored_fa3_launch (const AttnParams &p, int heads,
                                                   cudaStream_t stream);

// TRUE when VDIT_CUDA_ATTN (a comma-separated list) names this variant of the fa3 kernels.
bool vdit_cuda_attention_variant (const char *name);

// TRUE when VDIT_CUDA_ATTN forces one of the older kernels (attention.cu).
bool vdit_cuda_attention_forced ();

// AdaSpa block scores (attention.h's vdit_cuda_block_scores_launch) for 64 × 64 blocks
// with this kernel's pipeline; same head dims and alignment; scores need no zeroing.
cudaError_t vdit_cuda_block_scores_fa3_launch (float *scores, const void *q, int ldq,
                                               const void *k, int ldk, const float *lse, int nq,
                                               int nk, int heads, int head_dim, float scale_log2,
                                               cudaStream_t stream);

} // namespace vdit
