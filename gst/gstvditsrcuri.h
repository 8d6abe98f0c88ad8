/* vditsrc as a GstURIHandler for vdit:// URIs:
 *
 *   vdit:///?prompt=a%20red%20circle&seed=3&frames=8
 *
 * The query parameters are the element's own properties (percent-encoded
 * values, `+` for a space, as gst-launch would parse them); a property the
 * URI leaves out is set back to its default, so a URI describes the whole
 * clip. An unknown parameter or a bad value is an error that changes nothing. */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_VDIT_URI_SCHEME "vdit"

void gst_vdit_src_uri_handler_init (gpointer g_iface, gpointer iface_data);

G_END_DECLS
