/* matmul: out(m, n) = act(in(m, k) · w(n, k)ᵀ + bias(n)) [+ out], bf16 in and out with
 * f32 accumulation, through cuBLASLt with its bias/GELU epilogues.
 *
 * Row-major out is column-major outᵀ (n × m, ld ldo) = op(A)·B with A = w viewed
 * column-major as k × n (transposed), B = in viewed as k × m (ld ldi). The algorithm
 * heuristic runs once per shape/alignment and is cached; shapes cuBLASLt declines fall
 * back to cublasGemmEx plus a bias/activation kernel. SiLU has no epilogue and runs as
 * that kernel too. */
#include "cuda_ctx.h"
#include "ops.h"

typedef struct {
  gboolean found;
  cublasLtMatmulAlgo_t algo;
} lt_choice;

static unsigned
align_of (const void *p)
{
  unsigned a = 256;
  while (a > 1 && ((uintptr_t) p % a) != 0)
    a /= 2;
  return a;
}

static void
fallback_gemm (vdit_cuda_ctx *c, void *out, int ldo, const void *in, int ldi, const void *w,
               int m, int n, int k, float beta)
{
  const float alpha = 1.0f;
  VDIT_CUBLAS_CHECK (c, cublasGemmEx (c->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w,
                                      CUDA_R_16BF, k, in, CUDA_R_16BF, ldi, &beta, out,
                                      CUDA_R_16BF, ldo, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* One cuBLASLt call; FALSE (nothing queued, nothing recorded) when cuBLASLt has no
 * algorithm for this shape. */
static gboolean
lt_gemm (vdit_cuda_ctx *c, void *out, int ldo, const void *in, int ldi, const void *w,
         const void *bias, int m, int n, int k, cublasLtEpilogue_t epi, float beta)
{
  cublasLtMatmulDesc_t desc = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const cudaDataType_t bias_type = CUDA_R_16BF;
  const float alpha = 1.0f;
  gboolean done = FALSE;

  char *key = g_strdup_printf ("%d,%d,%d,%d,%d,%d,%d,%u,%u,%u,%u", m, n, k, ldo, ldi, (int) epi,
                               beta != 0.0f, align_of (w), align_of (in), align_of (out),
                               align_of (bias));
  if (!VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescCreate (&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                             &ta, sizeof ta)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                             &tb, sizeof tb)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                             &epi, sizeof epi)))
    goto out;
  if (bias &&
      (!VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                  desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias)) ||
       !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                  desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                  sizeof bias_type))))
    goto out;
  if (!VDIT_CUBLAS_CHECK (c, cublasLtMatrixLayoutCreate (&la, CUDA_R_16BF, k, n, k)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatrixLayoutCreate (&lb, CUDA_R_16BF, k, m, ldi)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatrixLayoutCreate (&lc, CUDA_R_16BF, n, m, ldo)))
    goto out;

  g_mutex_lock (&c->lt_lock);
  lt_choice *choice = g_hash_table_lookup (c->lt_algos, key);
  if (choice == NULL) {
    choice = g_new0 (lt_choice, 1);
    cublasLtMatmulHeuristicResult_t res;
    int n_res = 0;
    uint32_t aw = align_of (w), ai = align_of (in), ao = align_of (out);
    if (cublasLtMatmulPreferenceCreate (&pref) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                              &c->lt_workspace_size,
                                              sizeof c->lt_workspace_size) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                              &aw, sizeof aw) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                              &ai, sizeof ai) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                              &ao, sizeof ao) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                              &ao, sizeof ao) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulAlgoGetHeuristic (c->lt, desc, la, lb, lc, lc, pref, 1, &res, &n_res) ==
            CUBLAS_STATUS_SUCCESS &&
        n_res > 0) {
      choice->found = TRUE;
      choice->algo = res.algo;
    }
    g_hash_table_insert (c->lt_algos, g_strdup (key), choice);
  }
  const gboolean found = choice->found;
  const cublasLtMatmulAlgo_t algo = choice->algo;
  g_mutex_unlock (&c->lt_lock);

  if (found)
    done = VDIT_CUBLAS_CHECK (c, cublasLtMatmul (c->lt, desc, &alpha, w, la, in, lb, &beta, out,
                                                 lc, out, lc, &algo, c->lt_workspace,
                                                 c->lt_workspace_size, c->stream));
out:
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  if (lc)
    cublasLtMatrixLayoutDestroy (lc);
  if (lb)
    cublasLtMatrixLayoutDestroy (lb);
  if (la)
    cublasLtMatrixLayoutDestroy (la);
  if (desc)
    cublasLtMatmulDescDestroy (desc);
  g_free (key);
  return done;
}

void
vdit_cuda_matmul (void *ctx, void *out, int ldo, const void *in, int ldi, const void *w,
                  const void *bias, int m, int n, int k, VditActivation act, gboolean accumulate)
{
  vdit_cuda_ctx *c = ctx;
  if (m <= 0 || n <= 0 || !vdit_cuda_enter (c))
    return;
  const float beta = accumulate ? 1.0f : 0.0f;
  if (k <= 0) {
    if (!accumulate)
      VDIT_CUDA_CHECK (c, cudaMemset2DAsync (out, (size_t) ldo * 2, 0, (size_t) n * 2, m,
                                             c->stream));
    VDIT_CUDA_CHECK (c, vdit_cuda_bias_act (out, ldo, bias, m, n, act, c->stream));
    return;
  }
  /* epilogues: bias when its pointer suits cuBLASLt; GELU only after an epilogue bias */
  const gboolean epi_bias = bias != NULL && align_of (bias) >= 16;
  const gboolean epi_gelu = act == VDIT_ACT_GELU_TANH && (bias == NULL || epi_bias);
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (epi_bias && epi_gelu)
    epi = CUBLASLT_EPILOGUE_GELU_BIAS;
  else if (epi_bias)
    epi = CUBLASLT_EPILOGUE_BIAS;
  else if (epi_gelu)
    epi = CUBLASLT_EPILOGUE_GELU;

  if (lt_gemm (c, out, ldo, in, ldi, w, epi_bias ? bias : NULL, m, n, k, epi, beta)) {
    const void *post_bias = epi_bias ? NULL : bias;
    const VditActivation post_act = epi_gelu ? VDIT_ACT_NONE : act;
    VDIT_CUDA_CHECK (c, vdit_cuda_bias_act (out, ldo, post_bias, m, n, post_act, c->stream));
    return;
  }
  fallback_gemm (c, out, ldo, in, ldi, w, m, n, k, beta);
  VDIT_CUDA_CHECK (c, vdit_cuda_bias_act (out, ldo, bias, m, n, act, c->stream));
}
