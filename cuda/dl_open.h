/* NVIDIA libraries opened at run time (cuBLAS, cuDNN): one search order for all. */
#ifndef VDIT_DL_OPEN_H
#define VDIT_DL_OPEN_H

#include <glib.h>

G_BEGIN_DECLS

/* dlopen of BASE.so.SO_VERSION by soname first (LD_LIBRARY_PATH, ld.so.cache), then in
 * the toolkit we were built with; NULL with dlerror's reason appended to why. */
void *vdit_dl_open (const char *base, const char *so_version, GString *why);

G_END_DECLS

#endif
