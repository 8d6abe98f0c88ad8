/* Timing hooks for `vdit bench`: measure parts of a generation in isolation. */
#ifndef VDIT_BENCH_H
#define VDIT_BENCH_H

#include "backend_timing.h"
#include "vdit.h"

G_BEGIN_DECLS

typedef struct {
  int frames;              /* video frames of the random latent */
  VditAttention attention; /* resolved mode (not DEFAULT) */
  int repeat, warmup;      /* timed runs, untimed runs first */
  gboolean breakdown;      /* time each op kind (backend_timing.h) */
  float guidance;          /* > 1: a guided step (conditional and unconditional pass) */
  const char *negative_prompt; /* guided: the unconditional pass's caption (NULL = "") */
} vdit_bench_step_params;

typedef struct {
  double ms, ms_min;       /* mean and fastest timed run, milliseconds */
  vdit_op_times per_step;  /* with breakdown: the timed runs' mean per kind */
  gboolean have_peak;      /* the backend reports its memory high-water mark: */
  size_t peak_bytes;       /* the most in use at once during the timed runs */
  gboolean sampler_on_backend; /* the latent stayed on the backend (its sampler slots) */
  gboolean graphs;         /* the step's forwards were recorded as a graph (CUDA graphs) */
  int graph_replays;       /* timed runs that replayed a graph recorded in an earlier run */
  gboolean shared_prefix;  /* guided: the passes shared block 0's self-attention (dit.h) */
  int negative_tokens;     /* guided: the unconditional caption's tokens (1: one key, dit.h) */
} vdit_bench_step_result;

/* Times one sampling step's DiT work on random latents (one forward, or with guidance > 1
 * the conditional and the unconditional forward and their mix): warmup
 * untimed runs, then repeat timed ones. Where the sampler runs on the backend a run is a
 * whole step (patches, forwards, guidance, update, finiteness check), and from the second
 * run on its forwards are replayed from a graph where the backend records them (so
 * warmup ≥ 2 times replays only). With breakdown every op is bracketed by marks,
 * which adds a little time to ms; the kinds' times are measured on the backend's queue
 * (GPU) or the host clock (CPU). */
gboolean vdit_bench_dit_step (vdit_ctx *ctx, const vdit_bench_step_params *params,
                              vdit_bench_step_result *result, GError **error);

G_END_DECLS

#endif
