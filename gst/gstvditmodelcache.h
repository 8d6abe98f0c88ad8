/* Models loaded once per process and shared by every vditsrc that uses them.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#ifndef GST_VDIT_MODEL_CACHE_H
#define GST_VDIT_MODEL_CACHE_H

#include <glib.h>

#include "vdit.h"

G_BEGIN_DECLS

typedef struct _GstVditModelEntry GstVditModelEntry;

/* The model in directory `path` on the device `params` asks for, loaded on the
 * first call and shared by later ones (keyed by the canonical path, the device and
 * the thread count). *ctx receives a context of the caller's own (its cancel flag,
 * log, CPU thread pool or CUDA stream) that runs on the weights every user shares:
 * they are uploaded once per model and device. *loaded says whether this call
 * loaded the model. Thread-safe.
 * Release with gst_vdit_model_cache_release() after freeing *ctx. */
GstVditModelEntry *gst_vdit_model_cache_acquire (const gchar * path,
    const vdit_ctx_params * params, vdit_ctx ** ctx, gboolean * loaded,
    GError ** error);

const vdit_model *gst_vdit_model_entry_get_model (GstVditModelEntry * entry);

/* How many users the entry has now (for logs). */
guint gst_vdit_model_entry_get_users (GstVditModelEntry * entry);

/* Drops one user; the last one frees the model and its weights. */
void gst_vdit_model_cache_release (GstVditModelEntry * entry);

G_END_DECLS

#endif /* GST_VDIT_MODEL_CACHE_H */
