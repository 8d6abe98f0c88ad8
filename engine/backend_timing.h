/* Per-kind op times of a backend, for `vdit bench step --breakdown`.
 *
 * vdit_backend_timing_wrap puts a timing table in front of a backend: every op still
 * runs on the backend underneath, bracketed by marks. On a backend whose ops are queued
 * (CUDA) the marks are the backend's own (events on its stream), so a kind's time is
 * what the device spent on it; where an op is done when it returns (CPU) the host clock
 * times it. Buffers, layouts and host memory made before or after wrapping are the same
 * objects: the wrapper only passes them through. */
#ifndef VDIT_BACKEND_TIMING_H
#define VDIT_BACKEND_TIMING_H

#include "backend.h"

G_BEGIN_DECLS

typedef enum {
  VDIT_OP_GEMM,        /* matmul; vae_conv3d */
  VDIT_OP_ATTENTION,   /* attention, block_scores, adaptive_layout; vae_frame_attention */
  VDIT_OP_NORM,        /* rmsnorm, layernorm_modulate; vae_group_norm */
  VDIT_OP_ELEMENTWISE, /* add_gated, mul, add, activate, rope, timestep_embedding;
                          vae_upsample */
  VDIT_OP_TRANSFER,    /* upload, download, decode_rgb, copy_rows */
  VDIT_OP_KINDS
} VditOpKind;

typedef struct {
  double ms[VDIT_OP_KINDS];
  gint64 calls[VDIT_OP_KINDS];
} vdit_op_times;

typedef struct vdit_backend_timing vdit_backend_timing;

/* Wraps be in place (be->iface and be->context now point at the wrapper) until
 * vdit_backend_timing_unwrap. Not thread-safe: one thread drives a timed backend. */
vdit_backend_timing *vdit_backend_timing_wrap (vdit_backend *be);
/* Waits for the queued work and adds its times to *times (zeroed by the caller);
 * FALSE with the backend's first failure. The counters start again from zero. */
gboolean vdit_backend_timing_collect (vdit_backend_timing *t, vdit_op_times *times,
                                      GError **error);
/* Restores be (which must be the wrapped one) and frees the wrapper. */
void vdit_backend_timing_unwrap (vdit_backend *be, vdit_backend_timing *t);

const char *vdit_op_kind_name (VditOpKind kind);

G_END_DECLS

#endif
