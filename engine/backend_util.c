#include "backend_util.h"

void *
vdit_be_alloc (vdit_backend *be, size_t n, GError **error)
{
  return be->iface->alloc (be->context, n, VDIT_ELEM_ACT, error);
}

void
vdit_be_clear (vdit_backend *be, void **buf)
{
  if (*buf)
    be->iface->release (be->context, *buf);
  *buf = NULL;
}

void *
vdit_be_upload_f32 (vdit_backend *be, const float *host, size_t n, GError **error)
{
  void *buf = vdit_be_alloc (be, n, error);
  if (buf && !be->iface->upload (be->context, buf, host, n, VDIT_ELEM_ACT, error))
    vdit_be_clear (be, &buf);
  return buf;
}

void *
vdit_be_upload_concat (vdit_backend *be, const vdit_weights *w, const char *const *names,
                       int n_names, GError **error)
{
  size_t total = 0;
  for (int i = 0; i < n_names; i++) {
    const vdit_tensor_view *t = vdit_weights_get (w, names[i]);
    if (t == NULL) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "tensor %s is missing", names[i]);
      return NULL;
    }
    total += t->n_elements;
  }
  float *host = g_try_malloc (MAX (total, 1) * sizeof (float));
  if (host == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "out of host memory converting %s (%.1f MiB)", names[0], total * 4 / 1048576.0);
    return NULL;
  }
  size_t off = 0;
  void *buf = NULL;
  for (int i = 0; i < n_names; i++) {
    size_t n = vdit_weights_get (w, names[i])->n_elements;
    if (!vdit_weights_read_f32 (w, names[i], host + off, n, error))
      goto out;
    off += n;
  }
  buf = vdit_be_upload_f32 (be, host, total, error);
out:
  g_free (host);
  return buf;
}

void *
vdit_be_upload_weight (vdit_backend *be, const vdit_weights *w, const char *name, GError **error)
{
  return vdit_be_upload_concat (be, w, &name, 1, error);
}

char *
vdit_size_text (double bytes)
{
  const double kib = 1024.0, mib = kib * 1024.0, gib = mib * 1024.0;
  if (!(bytes >= 0.0))
    bytes = 0.0;
  if (bytes < kib)
    return g_strdup_printf ("%.0f bytes", bytes);
  if (bytes < mib)
    return g_strdup_printf ("%.1f KiB", bytes / kib);
  if (bytes < gib)
    return g_strdup_printf ("%.1f MiB", bytes / mib);
  return g_strdup_printf ("%.1f GiB", bytes / gib);
}
