// The sm_90a attention kernel's entry points (C++; used by attention.cu's dispatcher).
#pragma once

#include <cuda_runtime_api.h>

namespace vdit {

struct AttnParams;

// TRUE when the current device is compute capability 9.0 and `kernel` carries sm_90a
// code; state[device] caches the answer (0 unknown, 1 usable, 2 not).
bool vdit_cuda_sm90a_kernel_usable (const void *kernel, int state[64]);
// TRUE when the current device is compute capability 9.0 and this build carries the
// sm_90a kernel (gpu_archs containing 90a); cached per device.
bool vdit_cuda_attention_sm90_usable ();
// Head dims 33..128 (padded to 64, 96, 128), 16-byte aligned q/k/v rows, no bias;
// dense or layouts with query blocks of at least 128 rows.
cudaError_t vdit_cuda_attention_sm90_launch (const AttnParams &p, int heads,
                                             cudaStream_t stream);

} // namespace vdit
