/* Opens cuDNN at run time (see cudnn_dl.h). libcudnn.so.9 is the dispatcher that loads
 * its sub-libraries (ops, cnn, engines) itself. */
#include <dlfcn.h>

#include "cudnn_dl.h"
#include "dl_open.h"
#include "vdit.h"

vdit_cudnn_fns vdit_cudnn;

#define SO_VERSION G_STRINGIFY (CUDNN_MAJOR)

static gpointer
load (gpointer data)
{
  GString *why = g_string_new (NULL);
  void *lib = vdit_dl_open ("libcudnn", SO_VERSION, why);
#ifdef VDIT_CUDNN_LIBDIR /* the cudnn_root option: cuDNN outside the toolkit */
  if (lib == NULL)
    lib = dlopen (VDIT_CUDNN_LIBDIR "/libcudnn.so." SO_VERSION, RTLD_NOW | RTLD_LOCAL);
#endif
  gboolean ok = lib != NULL;
#define SYM(field, name)                                                                    \
  if (ok && !(*(void **) &vdit_cudnn.field = dlsym (lib, name))) {                          \
    g_string_append_printf (why, "%s missing; ", name);                                     \
    ok = FALSE;                                                                             \
  }
  SYM (Create, "cudnnCreate");
  SYM (Destroy, "cudnnDestroy");
  SYM (SetStream, "cudnnSetStream");
  SYM (GetErrorString, "cudnnGetErrorString");
  SYM (CreateTensorDescriptor, "cudnnCreateTensorDescriptor");
  SYM (SetTensorNdDescriptor, "cudnnSetTensorNdDescriptor");
  SYM (DestroyTensorDescriptor, "cudnnDestroyTensorDescriptor");
  SYM (CreateFilterDescriptor, "cudnnCreateFilterDescriptor");
  SYM (SetFilterNdDescriptor, "cudnnSetFilterNdDescriptor");
  SYM (DestroyFilterDescriptor, "cudnnDestroyFilterDescriptor");
  SYM (CreateConvolutionDescriptor, "cudnnCreateConvolutionDescriptor");
  SYM (SetConvolutionNdDescriptor, "cudnnSetConvolutionNdDescriptor");
  SYM (SetConvolutionMathType, "cudnnSetConvolutionMathType");
  SYM (DestroyConvolutionDescriptor, "cudnnDestroyConvolutionDescriptor");
  SYM (GetConvolutionForwardAlgorithm_v7, "cudnnGetConvolutionForwardAlgorithm_v7");
  SYM (GetConvolutionForwardWorkspaceSize, "cudnnGetConvolutionForwardWorkspaceSize");
  SYM (ConvolutionForward, "cudnnConvolutionForward");
#undef SYM
  char *message = NULL;
  if (!ok)
    message = g_strdup_printf ("cannot load cuDNN %s (libcudnn): %s", SO_VERSION, why->str);
  g_string_free (why, TRUE);
  return message; /* NULL: loaded */
}

gboolean
vdit_cudnn_load (GError **error)
{
  static GOnce once = G_ONCE_INIT;
  const char *message = g_once (&once, load, NULL);
  if (message != NULL)
    g_set_error_literal (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE, message);
  return message == NULL;
}
