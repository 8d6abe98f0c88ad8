/* Small helpers over the backend table: weights to the device, buffers with names. */
#ifndef VDIT_BACKEND_UTIL_H
#define VDIT_BACKEND_UTIL_H

#include "backend.h"
#include "weights.h"

G_BEGIN_DECLS

/* An ACT buffer holding the named weight tensor. */
void *vdit_be_upload_weight (vdit_backend *be, const vdit_weights *w, const char *name,
                             GError **error);
/* An ACT buffer holding the named tensors concatenated along their first axis (fused
 * q/k/v projections). */
void *vdit_be_upload_concat (vdit_backend *be, const vdit_weights *w,
                             const char *const *names, int n_names, GError **error);
/* An ACT buffer with a copy of host f32 data. */
void *vdit_be_upload_f32 (vdit_backend *be, const float *host, size_t n, GError **error);
/* An uninitialised ACT buffer of n elements. */
void *vdit_be_alloc (vdit_backend *be, size_t n, GError **error);
/* NULL-safe release that clears the pointer. */
void vdit_be_clear (vdit_backend *be, void **buf);

G_END_DECLS

#endif
