/* Timing hooks for `vdit bench`: measure parts of a generation in isolation. */
#ifndef VDIT_BENCH_H
#define VDIT_BENCH_H

#include "vdit.h"

G_BEGIN_DECLS

/* Times one DiT forward (one sampling step without guidance) on random latents of
 * `frames` video frames: `warmup` untimed runs, then `repeat` timed ones; *ms_per_step
 * is their mean and *ms_min the fastest, in milliseconds. */
gboolean vdit_bench_dit_step (vdit_ctx *ctx, int frames, VditAttention attention, int repeat,
                              int warmup, double *ms_per_step, double *ms_min,
                              GError **error);

G_END_DECLS

#endif
