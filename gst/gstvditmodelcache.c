/* Models loaded once per process and shared by every vditsrc that uses them: a
 * table of refcounted entries keyed by (canonical path, device, threads).
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvditmodelcache.h"

#include <limits.h>
#include <stdlib.h>

struct _GstVditModelEntry
{
  gchar *key;
  vdit_model *model;
  vdit_ctx *base;               /* the weights on the backend, shared by every user */
  guint users;                  /* under cache_lock */
};

/* Guards the table and every entry's users. Held while a model loads, so two
 * elements starting at once load it once. */
static GMutex cache_lock;
static GHashTable *cache;       /* key → GstVditModelEntry */

/* The path with symlinks and "..", so two spellings of one directory meet. */
static gchar *
canonical_path (const gchar * path)
{
  char *real = realpath (path, NULL);
  gchar *out;

  if (real == NULL)
    return g_canonicalize_filename (path, NULL);
  out = g_strdup (real);
  free (real);
  return out;
}

static void
entry_free (GstVditModelEntry * e)
{
  vdit_ctx_free (e->base);
  vdit_model_free (e->model);
  g_free (e->key);
  g_free (e);
}

static GstVditModelEntry *
entry_new (const gchar * key, const gchar * path, const vdit_ctx_params * params,
    GError ** error)
{
  GstVditModelEntry *e = g_new0 (GstVditModelEntry, 1);

  e->key = g_strdup (key);
  e->model = vdit_model_load (path, error);
  if (e->model == NULL)
    goto failed;
  /* the weights, uploaded once; each user runs on them with a context (a CPU
   * thread pool, a CUDA stream) of its own. base itself never generates. */
  e->base = vdit_ctx_new (e->model, params, error);
  if (e->base == NULL)
    goto failed;
  return e;

failed:
  entry_free (e);
  return NULL;
}

GstVditModelEntry *
gst_vdit_model_cache_acquire (const gchar * path,
    const vdit_ctx_params * params, vdit_ctx ** ctx, gboolean * loaded,
    GError ** error)
{
  GstVditModelEntry *e;
  gchar *canon, *key;
  gint cuda_device;

  *ctx = NULL;
  *loaded = FALSE;
  if (!vdit_ctx_params_check (params, &cuda_device, error))
    return NULL;
  canon = canonical_path (path);
  key = cuda_device < 0 ?
      g_strdup_printf ("%s\ncpu\n%d", canon, params->threads) :
      g_strdup_printf ("%s\ncuda:%d\n%d", canon, cuda_device, params->gpus);

  g_mutex_lock (&cache_lock);
  if (cache == NULL)
    cache = g_hash_table_new (g_str_hash, g_str_equal);
  e = g_hash_table_lookup (cache, key);
  if (e == NULL) {
    e = entry_new (key, canon, params, error);
    if (e == NULL)
      goto out;
    g_hash_table_insert (cache, e->key, e);
    *loaded = TRUE;
  }
  *ctx = vdit_ctx_new_shared (e->base, params->log, params->log_user_data,
      error);
  if (*ctx == NULL) {
    if (e->users == 0) {
      g_hash_table_remove (cache, e->key);
      entry_free (e);
    }
    *loaded = FALSE;
    e = NULL;
    goto out;
  }
  e->users++;

out:
  g_mutex_unlock (&cache_lock);
  g_free (key);
  g_free (canon);
  return e;
}

const vdit_model *
gst_vdit_model_entry_get_model (GstVditModelEntry * entry)
{
  return entry->model;
}

guint
gst_vdit_model_entry_get_users (GstVditModelEntry * entry)
{
  guint users;

  g_mutex_lock (&cache_lock);
  users = entry->users;
  g_mutex_unlock (&cache_lock);
  return users;
}

void
gst_vdit_model_cache_release (GstVditModelEntry * entry)
{
  gboolean last;

  if (entry == NULL)
    return;
  g_mutex_lock (&cache_lock);
  g_assert (entry->users > 0);
  last = --entry->users == 0;
  if (last)
    g_hash_table_remove (cache, entry->key);
  g_mutex_unlock (&cache_lock);
  /* freed outside the lock: other models load meanwhile */
  if (last)
    entry_free (entry);
}
