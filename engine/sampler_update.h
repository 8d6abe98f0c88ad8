/* The per-element arithmetic of a sampler step (backend.h, vdit_sampler_update): the one
 * place the host sampler and the CPU backend's sampler_update take it from, so both give
 * the same bits. Every intermediate is a float, in the order written. */
#ifndef VDIT_SAMPLER_UPDATE_H
#define VDIT_SAMPLER_UPDATE_H

#include "backend.h"

/* x's new value from model output m and noise (ignored unless has_noise). */
static inline float
vdit_sampler_update_value (const vdit_sampler_update *u, float x, float m, float noise,
                           int has_noise)
{
  const float *c = u->c;
  switch (u->kind) {
    case VDIT_UPDATE_FLOW:
      return x + c[0] * m;
    case VDIT_UPDATE_DDIM_V: {
      const float x0 = c[0] * x - c[1] * m;
      const float eps = c[0] * m + c[1] * x;
      return c[2] * x0 + c[3] * eps;
    }
    case VDIT_UPDATE_DDIM_EPS: {
      const float x0 = (x - c[1] * m) / c[0];
      return c[2] * x0 + c[3] * m;
    }
    case VDIT_UPDATE_ANCESTRAL_V:
    case VDIT_UPDATE_ANCESTRAL_EPS: {
      const float x0 = u->kind == VDIT_UPDATE_ANCESTRAL_V ? m * c[0] + x * c[1] : x - c[2] * m;
      const float deriv = (x - x0) / c[2];
      float y = x + deriv * c[3];
      if (has_noise)
        y += noise * c[4];
      return y;
    }
  }
  return x;
}

/* Classifier-free guidance's mix of the two outputs, as the host has always made it. */
static inline float
vdit_guidance_value (float cond, float uncond, float guidance)
{
  return uncond + guidance * (cond - uncond);
}

#endif
