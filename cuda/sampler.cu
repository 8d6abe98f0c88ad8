// The sampler on the device: the latent's patches in and out of a forward, the guided
// update of every sampler type, and the finiteness check. The arithmetic is
// engine/sampler_update.h's, each operation rounded on its own (__fmul_rn and friends:
// no fma contraction), so the device's latent is the host's bits for the same outputs.
#include "common.cuh"
#include "sampler_ops.h"

namespace vdit {
namespace {

// VditUpdateKind, as engine/backend.h numbers it
enum { FLOW, DDIM_V, DDIM_EPS, ANCESTRAL_V, ANCESTRAL_EPS };

struct update_args {
  int kind;
  float c[5];
  float guidance;
  bool has_uncond, has_noise;
};

__device__ __forceinline__ float
update_value (const update_args &a, float x, float cond, float uncond, float noise)
{
  // uncond + g·(cond − uncond)
  const float m = a.has_uncond ? __fadd_rn (uncond, __fmul_rn (a.guidance, __fsub_rn (cond, uncond)))
                               : cond;
  const float *c = a.c;
  switch (a.kind) {
    case FLOW:
      return __fadd_rn (x, __fmul_rn (c[0], m));
    case DDIM_V: {
      const float x0 = __fsub_rn (__fmul_rn (c[0], x), __fmul_rn (c[1], m));
      const float eps = __fadd_rn (__fmul_rn (c[0], m), __fmul_rn (c[1], x));
      return __fadd_rn (__fmul_rn (c[2], x0), __fmul_rn (c[3], eps));
    }
    case DDIM_EPS: {
      const float x0 = __fdiv_rn (__fsub_rn (x, __fmul_rn (c[1], m)), c[0]);
      return __fadd_rn (__fmul_rn (c[2], x0), __fmul_rn (c[3], m));
    }
    default: { // ANCESTRAL_V, ANCESTRAL_EPS
      const float x0 = a.kind == ANCESTRAL_V
                         ? __fadd_rn (__fmul_rn (m, c[0]), __fmul_rn (x, c[1]))
                         : __fsub_rn (x, __fmul_rn (c[2], m));
      const float deriv = __fdiv_rn (__fsub_rn (x, x0), c[2]);
      float y = __fadd_rn (x, __fmul_rn (deriv, c[3]));
      if (a.has_noise)
        y = __fadd_rn (y, __fmul_rn (noise, c[4]));
      return y;
    }
  }
}

// Four values a thread, 16-byte loads and stores: n4 = n / 4, pointers 16-byte aligned.
__global__ void
update4_kernel (float4 *x, const float4 *cond, const float4 *uncond, const float4 *noise,
                size_t n4, update_args a)
{
  GRID_LOOP (i, n4) {
    float4 v = x[i];
    const float4 cv = cond[i];
    const float4 uv = a.has_uncond ? uncond[i] : make_float4 (0, 0, 0, 0);
    const float4 nv = a.has_noise ? noise[i] : make_float4 (0, 0, 0, 0);
    v.x = update_value (a, v.x, cv.x, uv.x, nv.x);
    v.y = update_value (a, v.y, cv.y, uv.y, nv.y);
    v.z = update_value (a, v.z, cv.z, uv.z, nv.z);
    v.w = update_value (a, v.w, cv.w, uv.w, nv.w);
    x[i] = v;
  }
}

// The values past the last whole four (or all of them when a pointer is not aligned).
__global__ void
update_kernel (float *x, const float *cond, const float *uncond, const float *noise,
               size_t first, size_t n, update_args a)
{
  GRID_LOOP (j, n - first) {
    const size_t i = first + j;
    x[i] = update_value (a, x[i], cond[i], a.has_uncond ? uncond[i] : 0.0f,
                         a.has_noise ? noise[i] : 0.0f);
  }
}

// The latent's value li (T, H, W, C) and its place in a token of patch (pt, ph, pw):
// (c, dt, dy, dx) going in, (dt, dy, dx, c) coming out, as vdit_patchify/unpatchify.
struct patch_geom {
  int H, W, C, pt, ph, pw, gh, gw;
};

__device__ __forceinline__ size_t
token_index (const patch_geom &g, size_t li, bool in_order)
{
  const int ch = (int) (li % g.C);
  size_t r = li / g.C;
  const int x = (int) (r % g.W);
  r /= g.W;
  const int y = (int) (r % g.H);
  const int t = (int) (r / g.H);
  const size_t token = ((size_t) (t / g.pt) * g.gh + y / g.ph) * g.gw + x / g.pw;
  const int dt = t % g.pt, dy = y % g.ph, dx = x % g.pw;
  const int per = g.pt * g.ph * g.pw * g.C;
  const int within = in_order ? ((ch * g.pt + dt) * g.ph + dy) * g.pw + dx
                              : ((dt * g.ph + dy) * g.pw + dx) * g.C + ch;
  return token * per + within;
}

__global__ void
patchify_kernel (bf16 *tokens, const float *latent, float scale, size_t n, patch_geom g)
{
  GRID_LOOP (li, n)
    tokens[token_index (g, li, true)] = __float2bfloat16_rn (__fmul_rn (latent[li], scale));
}

__global__ void
unpatchify_kernel (float *latent, const bf16 *tokens, size_t n, patch_geom g)
{
  GRID_LOOP (li, n)
    latent[li] = __bfloat162float (tokens[token_index (g, li, false)]);
}

// *bad |= 1 when any of x's n values has an all-ones exponent (NaN, ±inf).
__global__ void
non_finite_kernel (unsigned *bad, const float *x, size_t n)
{
  unsigned found = 0;
  GRID_LOOP (i, n)
    found |= (__float_as_uint (x[i]) & 0x7f800000u) == 0x7f800000u;
  found = __syncthreads_or (found);
  if (found && threadIdx.x == 0)
    atomicOr (bad, 1u);
}

patch_geom
geom (int T, int H, int W, int C, const int patch[3])
{
  return patch_geom { H, W, C, patch[0], patch[1], patch[2], H / patch[1], W / patch[2] };
}

} // namespace
} // namespace vdit

using namespace vdit;

extern "C" cudaError_t
vdit_cuda_sampler_update (float *x, const float *cond, const float *uncond, float guidance,
                          const float *noise, int kind, const float c[5], size_t n,
                          cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  update_args a;
  a.kind = kind;
  for (int i = 0; i < 5; i++)
    a.c[i] = c[i];
  a.guidance = guidance;
  a.has_uncond = uncond != nullptr;
  a.has_noise = noise != nullptr;
  size_t done = 0;
  if (aligned16 (x, cond, uncond, noise) && n >= 4) {
    const size_t n4 = n / 4;
    update4_kernel<<<ew_blocks (n4), EW_THREADS, 0, s>>> (
        reinterpret_cast<float4 *> (x), reinterpret_cast<const float4 *> (cond),
        reinterpret_cast<const float4 *> (uncond), reinterpret_cast<const float4 *> (noise), n4,
        a);
    done = 4 * n4;
  }
  if (done < n)
    update_kernel<<<ew_blocks (n - done), EW_THREADS, 0, s>>> (x, cond, uncond, noise, done, n,
                                                               a);
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_patchify (void *tokens, const float *latent, float scale, int T, int H, int W, int C,
                    const int patch[3], cudaStream_t s)
{
  const size_t n = (size_t) T * H * W * C;
  if (n == 0)
    return cudaSuccess;
  patchify_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (static_cast<bf16 *> (tokens), latent,
                                                        scale, n, geom (T, H, W, C, patch));
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_unpatchify (float *latent, const void *tokens, int T, int H, int W, int C,
                      const int patch[3], cudaStream_t s)
{
  const size_t n = (size_t) T * H * W * C;
  if (n == 0)
    return cudaSuccess;
  unpatchify_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (
      latent, static_cast<const bf16 *> (tokens), n, geom (T, H, W, C, patch));
  return cudaGetLastError ();
}

extern "C" cudaError_t
vdit_cuda_non_finite (unsigned *bad, const float *x, size_t n, cudaStream_t s)
{
  if (n == 0)
    return cudaSuccess;
  non_finite_kernel<<<ew_blocks (n), EW_THREADS, 0, s>>> (bad, x, n);
  return cudaGetLastError ();
}
