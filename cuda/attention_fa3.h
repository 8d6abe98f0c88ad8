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

} // namespace vdit
