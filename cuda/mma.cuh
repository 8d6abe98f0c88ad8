// Warp-level tensor-core helpers for sm_80+ (mma.sync, ldmatrix, cp.async), shared by the
// attention and block-score kernels. Fragment layouts are those of the PTX ISA for
// mma.m16n8k16 (bf16 in, f32 accumulate): lane = 4·g + t holds rows g and g+8 and
// columns 2t, 2t+1 of each 8-column accumulator tile.
#pragma once

#include <cuda_bf16.h>
#include <stdint.h>

#include "common.cuh" // bf16

namespace vdit {

__device__ __forceinline__ uint32_t
smem_addr (const void *p)
{
  return (uint32_t) __cvta_generic_to_shared (p);
}

// 16-byte global->shared copy; src_bytes = 0 fills the destination with zeros.
__device__ __forceinline__ void
cp_async16 (void *dst, const void *src, int src_bytes)
{
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr (dst)),
                "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void
cp_async_commit ()
{
  asm volatile ("cp.async.commit_group;\n" ::);
}

template <int N>
__device__ __forceinline__ void
cp_async_wait ()
{
  asm volatile ("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void
ldmatrix_x4 (uint32_t r[4], const void *p)
{
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                : "r"(smem_addr (p)));
}

__device__ __forceinline__ void
ldmatrix_x4_trans (uint32_t r[4], const void *p)
{
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                : "r"(smem_addr (p)));
}

// c(16x8, f32) += a(16x16, bf16 row) · b(16x8, bf16 col)
__device__ __forceinline__ void
mma_bf16 (float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t
pack_bf16 (float lo, float hi)
{
  __nv_bfloat162 v = __floats2bfloat162_rn (lo, hi);
  return *reinterpret_cast<uint32_t *> (&v);
}

} // namespace vdit
