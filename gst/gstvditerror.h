/* Engine errors as GStreamer element errors: the domain and code GStreamer's own
 * elements use for the same kind of failure. */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

/* The element error domain and code for err: a GStreamer domain is kept, an
 * engine (vdit, GIO, GFile) error is mapped. */
void gst_vdit_error_classify (const GError * err, GQuark * domain, gint * code);

/* Posts err as an ERROR message of element, text "what: <engine message>", the
 * engine's message, domain and code in the debug string, and the location of
 * the caller. */
void gst_vdit_post_error_full (GstElement * element, const gchar * what,
    const GError * err, const gchar * file, const gchar * function, gint line);

#define gst_vdit_post_error(element, what, err) \
  gst_vdit_post_error_full (GST_ELEMENT (element), (what), (err), __FILE__, \
      GST_FUNCTION, __LINE__)

G_END_DECLS
