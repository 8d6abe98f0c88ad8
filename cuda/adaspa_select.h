/* AdaSpa's pattern choice on the device (adaspa_select.cu): the launches behind the CUDA
 * backend's adaptive_layout slot (cuda_layout.c). */
#ifndef VDIT_CUDA_ADASPA_SELECT_H
#define VDIT_CUDA_ADASPA_SELECT_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most key blocks a row may have (a row is sorted in 8 bytes of shared memory each). */
#define VDIT_CUDA_ADAPTIVE_MAX_BLOCKS 4096

/* Device scratch the two launches share: running sums, orders, recall curves. */
size_t vdit_cuda_adaptive_scratch_bytes (int heads, int nqb, int nkb);

/* scores (heads, nqb, nkb) → keep_dev (heads): blocks per row of each head, chosen as
 * engine/adaptive_select.c chooses them (target and min_keep as it computes them, `bar`
 * its VDIT_ADAPTIVE_RECALL). */
cudaError_t vdit_cuda_adaptive_rank_launch (void *scratch, int *keep_dev, const float *scores,
                                            int heads, int nqb, int nkb, int target,
                                            int min_keep, double bar, cudaStream_t stream);

/* The layout of 64 × 64 tiles for the chosen counts: row_ptr (heads, nqb + 1), cols
 * (Σ keep·nqb), tile_order (heads, nqb), bitmap (heads·nqb·nkb bits, zeroed before). */
cudaError_t vdit_cuda_adaptive_build_launch (int32_t *row_ptr, int32_t *cols,
                                             int32_t *tile_order, uint32_t *bitmap,
                                             const void *scratch, const int *keep_dev,
                                             int heads, int nqb, int nkb, int n_k,
                                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
