/* Where vditsrc looks for models.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#ifndef GST_VDIT_MODEL_H
#define GST_VDIT_MODEL_H

#include <glib.h>

G_BEGIN_DECLS

/* A directory path is returned as given; a bare name ("tiny") is looked up in
 * $VDIT_MODEL_PATH, the installed models, then the source tree's; NULL finds
 * the default model ("default", else "tiny"). NULL when nothing is found. */
gchar *gst_vdit_model_find (const gchar * name);

G_END_DECLS

#endif /* GST_VDIT_MODEL_H */
