/* See dl_open.h. */
#include <dlfcn.h>

#include "dl_open.h"

void *
vdit_dl_open (const char *base, const char *so_version, GString *why)
{
  const char *dirs[] = { "", VDIT_CUDA_LIBDIR "/", "/usr/local/cuda/lib64/", "/usr/local/cuda/lib/" };
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++) {
    char *path = g_strconcat (dirs[i], base, ".so.", so_version, NULL);
    void *h = dlopen (path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL && i == 0)
      g_string_append_printf (why, "%s; ", dlerror ());
    g_free (path);
    if (h)
      return h;
  }
  return NULL;
}
