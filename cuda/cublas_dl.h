/* cuBLAS and cuBLASLt are opened on first use (dlopen), not linked: together they are
 * ~600 MB, and a process that never uses the GPU (gst-inspect, the CPU backend, valgrind
 * runs) should not map them. Code calls the usual names; the macros below send them
 * through the table that vdit_cublas_load fills. */
#ifndef VDIT_CUBLAS_DL_H
#define VDIT_CUBLAS_DL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  __typeof__ (cublasLtCreate) *LtCreate;
  __typeof__ (cublasLtDestroy) *LtDestroy;
  __typeof__ (cublasLtMatmul) *LtMatmul;
  __typeof__ (cublasLtMatmulAlgoGetHeuristic) *LtMatmulAlgoGetHeuristic;
  __typeof__ (cublasLtMatmulDescCreate) *LtMatmulDescCreate;
  __typeof__ (cublasLtMatmulDescDestroy) *LtMatmulDescDestroy;
  __typeof__ (cublasLtMatmulDescSetAttribute) *LtMatmulDescSetAttribute;
  __typeof__ (cublasLtMatmulPreferenceCreate) *LtMatmulPreferenceCreate;
  __typeof__ (cublasLtMatmulPreferenceDestroy) *LtMatmulPreferenceDestroy;
  __typeof__ (cublasLtMatmulPreferenceSetAttribute) *LtMatmulPreferenceSetAttribute;
  __typeof__ (cublasLtMatrixLayoutCreate) *LtMatrixLayoutCreate;
  __typeof__ (cublasLtMatrixLayoutDestroy) *LtMatrixLayoutDestroy;
  __typeof__ (cublasCreate_v2) *Create;
  __typeof__ (cublasDestroy_v2) *Destroy;
  __typeof__ (cublasSetStream_v2) *SetStream;
  __typeof__ (cublasGemmEx) *GemmEx;
  __typeof__ (cublasGetStatusString) *GetStatusString;
} vdit_cublas_fns;

extern vdit_cublas_fns vdit_cublas;

/* Opens both libraries once (thread-safe); FALSE with VDIT_ERROR_NO_DEVICE naming what
 * is missing. */
gboolean vdit_cublas_load (GError **error);

#define cublasLtCreate vdit_cublas.LtCreate
#define cublasLtDestroy vdit_cublas.LtDestroy
#define cublasLtMatmul vdit_cublas.LtMatmul
#define cublasLtMatmulAlgoGetHeuristic vdit_cublas.LtMatmulAlgoGetHeuristic
#define cublasLtMatmulDescCreate vdit_cublas.LtMatmulDescCreate
#define cublasLtMatmulDescDestroy vdit_cublas.LtMatmulDescDestroy
#define cublasLtMatmulDescSetAttribute vdit_cublas.LtMatmulDescSetAttribute
#define cublasLtMatmulPreferenceCreate vdit_cublas.LtMatmulPreferenceCreate
#define cublasLtMatmulPreferenceDestroy vdit_cublas.LtMatmulPreferenceDestroy
#define cublasLtMatmulPreferenceSetAttribute vdit_cublas.LtMatmulPreferenceSetAttribute
#define cublasLtMatrixLayoutCreate vdit_cublas.LtMatrixLayoutCreate
#define cublasLtMatrixLayoutDestroy vdit_cublas.LtMatrixLayoutDestroy
#undef cublasCreate
#undef cublasDestroy
#undef cublasSetStream
#define cublasCreate vdit_cublas.Create
#define cublasDestroy vdit_cublas.Destroy
#define cublasSetStream vdit_cublas.SetStream
#define cublasGemmEx vdit_cublas.GemmEx
#define cublasGetStatusString vdit_cublas.GetStatusString

G_END_DECLS

#endif
