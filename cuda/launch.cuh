// Kernel attributes set once per device, not on every launch.
#pragma once

#include <atomic>
#include <cuda_runtime.h>

namespace vdit {

// Raises Kernel's dynamic shared memory limit to smem bytes on the current device the
// first time it is asked there (the setting stays with the device's context); later
// calls cost a cudaGetDevice. Each kernel instantiation here always asks for the same
// size, so one flag per device is all that is kept.
template <auto Kernel>
cudaError_t
set_max_dynamic_smem (int smem)
{
  static std::atomic<unsigned long long> done_on{ 0 }; // bit d: set on device d
  int dev = 0;
  cudaError_t err = cudaGetDevice (&dev);
  if (err != cudaSuccess)
    return err;
  const unsigned long long bit = dev < 64 ? 1ull << dev : 0;
  if (bit && (done_on.load (std::memory_order_acquire) & bit))
    return cudaSuccess;
  err = cudaFuncSetAttribute (Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err == cudaSuccess && bit)
    done_on.fetch_or (bit, std::memory_order_release);
  return err;
}

} // namespace vdit
