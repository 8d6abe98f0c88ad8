#include "backend_util.h"

#include <string.h>

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

/* bf16 tensors straight from the mapping (one), or gathered into one host block. */
static void *
upload_bf16 (vdit_backend *be, const vdit_weights *w, const char *const *names, int n_names,
             size_t total, GError **error)
{
  void *buf = vdit_be_alloc (be, total, error);
  if (buf == NULL)
    return NULL;
  const void *src = vdit_weights_get (w, names[0])->data;
  uint16_t *host = NULL;
  if (n_names > 1) {
    host = g_try_malloc (MAX (total, 1) * sizeof (uint16_t));
    if (host == NULL) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                   "out of host memory gathering %s (%.1f MiB)", names[0], total * 2 / 1048576.0);
      vdit_be_clear (be, &buf);
      return NULL;
    }
    size_t off = 0;
    for (int i = 0; i < n_names; i++) {
      const vdit_tensor_view *t = vdit_weights_get (w, names[i]);
      memcpy (host + off, t->data, (size_t) t->n_elements * sizeof (uint16_t));
      off += t->n_elements;
    }
    src = host;
  }
  if (!be->iface->upload (be->context, buf, src, total, VDIT_ELEM_BF16, error))
    vdit_be_clear (be, &buf);
  g_free (host);
  return buf;
}

void *
vdit_be_upload_concat (vdit_backend *be, const vdit_weights *w, const char *const *names,
                       int n_names, GError **error)
{
  size_t total = 0;
  gboolean all_bf16 = TRUE;
  for (int i = 0; i < n_names; i++) {
    const vdit_tensor_view *t = vdit_weights_get (w, names[i]);
    if (t == NULL) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "tensor %s is missing", names[i]);
      return NULL;
    }
    total += t->n_elements;
    all_bf16 = all_bf16 && t->dtype == VDIT_DTYPE_BF16;
  }
  if (all_bf16) /* as stored: no f32 copy on the host, half the bytes over the bus */
    return upload_bf16 (be, w, names, n_names, total, error);
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
