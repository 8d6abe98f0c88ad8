/* vditsrc: a GStreamer source that turns a text prompt into video frames
 * computed by the vdit engine.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#ifndef GST_VDIT_SRC_H
#define GST_VDIT_SRC_H

#include <gst/gst.h>
#include <gst/base/gstpushsrc.h>

G_BEGIN_DECLS

#define GST_TYPE_VDIT_SRC (gst_vdit_src_get_type ())
G_DECLARE_FINAL_TYPE (GstVditSrc, gst_vdit_src, GST, VDIT_SRC, GstPushSrc)

#define GST_TYPE_VDIT_SRC_DEVICE (gst_vdit_src_device_get_type ())
GType gst_vdit_src_device_get_type (void);

#define GST_TYPE_VDIT_SRC_ATTENTION (gst_vdit_src_attention_get_type ())
GType gst_vdit_src_attention_get_type (void);

GST_ELEMENT_REGISTER_DECLARE (vditsrc);

G_END_DECLS

#endif /* GST_VDIT_SRC_H */
