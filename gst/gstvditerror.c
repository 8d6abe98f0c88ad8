/* Engine errors as GStreamer element errors.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvditerror.h"

#include <gio/gio.h>

#include "vdit.h"

static void
classify_vdit (VditError code, GQuark * domain, gint * out)
{
  switch (code) {
    case VDIT_ERROR_MISSING:
      /* a model file or tensor that is not there, as filesrc's missing file */
      *domain = GST_RESOURCE_ERROR;
      *out = GST_RESOURCE_ERROR_NOT_FOUND;
      return;
    case VDIT_ERROR_FORMAT:
    case VDIT_ERROR_CONFIG:
    case VDIT_ERROR_SHAPE:
      /* the model is there but cannot be used as one */
      *domain = GST_RESOURCE_ERROR;
      *out = GST_RESOURCE_ERROR_FAILED;
      return;
    case VDIT_ERROR_INVALID_ARGUMENT:
    case VDIT_ERROR_NO_DEVICE:
      /* a property the user set: change it */
      *domain = GST_RESOURCE_ERROR;
      *out = GST_RESOURCE_ERROR_SETTINGS;
      return;
    case VDIT_ERROR_OUT_OF_MEMORY:
      /* host or GPU memory is a resource the request needs more of than there is;
       * memory, not storage: NO_SPACE_LEFT means a full disk */
      *domain = GST_RESOURCE_ERROR;
      *out = GST_RESOURCE_ERROR_FAILED;
      return;
    case VDIT_ERROR_BACKEND:
    case VDIT_ERROR_NOT_FINITE:
      /* the compute library (CUDA, BLAS, the sampler) failed */
      *domain = GST_LIBRARY_ERROR;
      *out = GST_LIBRARY_ERROR_FAILED;
      return;
    case VDIT_ERROR_CANCELLED:
      break;
  }
  *domain = GST_CORE_ERROR;
  *out = GST_CORE_ERROR_FAILED;
}

void
gst_vdit_error_classify (const GError * err, GQuark * domain, gint * code)
{
  if (err->domain == GST_STREAM_ERROR || err->domain == GST_CORE_ERROR ||
      err->domain == GST_LIBRARY_ERROR || err->domain == GST_RESOURCE_ERROR) {
    *domain = err->domain;
    *code = err->code;
  } else if (err->domain == VDIT_ERROR) {
    classify_vdit ((VditError) err->code, domain, code);
  } else if (err->domain == G_IO_ERROR || err->domain == G_FILE_ERROR) {
    gboolean missing = (err->domain == G_IO_ERROR &&
        err->code == G_IO_ERROR_NOT_FOUND) || (err->domain == G_FILE_ERROR &&
        err->code == G_FILE_ERROR_NOENT);

    *domain = GST_RESOURCE_ERROR;
    *code = missing ? GST_RESOURCE_ERROR_NOT_FOUND : GST_RESOURCE_ERROR_READ;
  } else {
    *domain = GST_CORE_ERROR;
    *code = GST_CORE_ERROR_FAILED;
  }
}

void
gst_vdit_post_error_full (GstElement * element, const gchar * what,
    const GError * err, const gchar * file, const gchar * function, gint line)
{
  GQuark domain;
  gint code;

  gst_vdit_error_classify (err, &domain, &code);
  gst_element_message_full (element, GST_MESSAGE_ERROR, domain, code,
      g_strdup_printf ("%s: %s", what, err->message),
      g_strdup_printf ("%s (%s, code %d)", err->message,
          g_quark_to_string (err->domain), err->code), file, function, line);
}
