/* Opens cuBLAS / cuBLASLt at run time (see cublas_dl.h). */
#include <dlfcn.h>

#include "cublas_dl.h"
#include "dl_open.h"
#include "vdit.h"

vdit_cublas_fns vdit_cublas;

#define SO_VERSION G_STRINGIFY (CUBLAS_VER_MAJOR)

typedef struct {
  gboolean ok;
  char *message;
} load_result;

static gpointer
load (gpointer data)
{
  static load_result r;
  GString *why = g_string_new (NULL);
  void *lt = vdit_dl_open ("libcublasLt", SO_VERSION, why);
  void *blas = lt ? vdit_dl_open ("libcublas", SO_VERSION, why) : NULL;
  gboolean ok = lt && blas;
#define SYM(lib, field, name)                                                               \
  if (ok && !(*(void **) &vdit_cublas.field = dlsym (lib, name))) {                        \
    g_string_append_printf (why, "%s missing; ", name);                                     \
    ok = FALSE;                                                                             \
  }
  SYM (lt, LtCreate, "cublasLtCreate");
  SYM (lt, LtDestroy, "cublasLtDestroy");
  SYM (lt, LtMatmul, "cublasLtMatmul");
  SYM (lt, LtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
  SYM (lt, LtMatmulDescCreate, "cublasLtMatmulDescCreate");
  SYM (lt, LtMatmulDescDestroy, "cublasLtMatmulDescDestroy");
  SYM (lt, LtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
  SYM (lt, LtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
  SYM (lt, LtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
  SYM (lt, LtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
  SYM (lt, LtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
  SYM (lt, LtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
  SYM (blas, Create, "cublasCreate_v2");
  SYM (blas, Destroy, "cublasDestroy_v2");
  SYM (blas, SetStream, "cublasSetStream_v2");
  SYM (blas, GemmEx, "cublasGemmEx");
  SYM (blas, GetStatusString, "cublasGetStatusString");
#undef SYM
  r.ok = ok;
  if (!ok)
    r.message = g_strdup_printf ("cannot load cuBLAS %s (libcublasLt / libcublas): %s",
                                 SO_VERSION, why->str);
  g_string_free (why, TRUE);
  return &r;
}

gboolean
vdit_cublas_load (GError **error)
{
  static GOnce once = G_ONCE_INIT;
  const load_result *r = g_once (&once, load, NULL);
  if (!r->ok)
    g_set_error_literal (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE, r->message);
  return r->ok;
}
