// Hopper (sm_90a) asynchronous-pipeline primitives for attention_fa3.cu: shared-memory
// mbarriers, TMA tensor loads that complete on them, named barriers between warpgroups
// and register reallocation. Each is one PTX instruction; on other targets they compile
// to nothing (the kernels that use them trap there and are never launched).
#pragma once

#include <cuda.h>
#include <stdint.h>

#include "wgmma.cuh"

namespace vdit {

__device__ __forceinline__ uint32_t
smem_u32 (const void *p)
{
  return (uint32_t) __cvta_generic_to_shared (p);
}

__device__ __forceinline__ void
mbar_init (uint64_t *bar, uint32_t count)
{
#ifdef VDIT_WGMMA
  asm volatile ("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32 (bar)), "r"(count));
#endif
}

// Makes the initialised barriers visible to the async proxy (TMA) and the other threads.
__device__ __forceinline__ void
mbar_init_fence ()
{
#ifdef VDIT_WGMMA
  asm volatile ("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// One arrival that also announces `bytes` of TMA traffic for the current phase.
__device__ __forceinline__ void
mbar_expect_tx (uint64_t *bar, uint32_t bytes)
{
#ifdef VDIT_WGMMA
  asm volatile ("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32 (bar)),
                "r"(bytes)
                : "memory");
#endif
}

__device__ __forceinline__ void
mbar_arrive (uint64_t *bar)
{
#ifdef VDIT_WGMMA
  asm volatile ("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32 (bar)) : "memory");
#endif
}

// Waits until the phase of parity `parity` has completed. A fresh barrier counts its
// (never run) phase of parity 1 as complete, so producers start waiting on parity 1.
__device__ __forceinline__ void
mbar_wait (uint64_t *bar, uint32_t parity)
{
#ifdef VDIT_WGMMA
  asm volatile ("{\n.reg .pred done;\n"
                "WAIT_%=:\n"
                "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                "@!done bra WAIT_%=;\n}\n" ::"r"(smem_u32 (bar)),
                "r"(parity)
                : "memory");
#endif
}

// A 4-D TMA box load into shared memory, completing on `bar` (transaction bytes).
__device__ __forceinline__ void
tma_load_4d (void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1, int c2, int c3)
{
#ifdef VDIT_WGMMA
  asm volatile ("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
                " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(smem_u32 (dst)),
                "l"(reinterpret_cast<uint64_t> (map)), "r"(smem_u32 (bar)), "r"(c0), "r"(c1),
                "r"(c2), "r"(c3)
                : "memory");
#endif
}

__device__ __forceinline__ void
tma_prefetch_map (const CUtensorMap *map)
{
#ifdef VDIT_WGMMA
  asm volatile ("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t> (map)) : "memory");
#endif
}

// Named barriers (ids 1..15; 0 is __syncthreads): `threads` counts every participant,
// those that wait (sync) and those that only signal (arrive).
__device__ __forceinline__ void
named_sync (int id, int threads)
{
  asm volatile ("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void
named_arrive (int id, int threads)
{
  asm volatile ("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Register reallocation between warpgroups (whole warpgroup executes it).
template <int N>
__device__ __forceinline__ void
regs_raise ()
{
#ifdef VDIT_WGMMA
  asm volatile ("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

template <int N>
__device__ __forceinline__ void
regs_lower ()
{
#ifdef VDIT_WGMMA
  asm volatile ("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

__device__ __forceinline__ float
fast_exp2 (float x)
{
  float y;
  asm ("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

} // namespace vdit
