/* matmul: out(m, n) = act(in(m, k) · w(n, k)ᵀ + bias(n)) [+ out], bf16 in and out with
 * f32 accumulation, through cuBLASLt with its bias/GELU epilogues.
 *
 * Row-major out is column-major outᵀ (n × m, ld ldo) = op(A)·B with A = w viewed
 * column-major as k × n (transposed), B = in viewed as k × m (ld ldi). Everything a call
 * needs but its pointers — descriptor, layouts, algorithm — is made once per shape and
 * alignment and kept (a DiT step repeats a handful of shapes hundreds of times). The
 * algorithm is the fastest of cuBLASLt's first LT_CANDIDATES heuristic answers, timed on
 * the device the first time a shape is seen (VDIT_CUBLASLT_TUNE=0 takes the first answer
 * untimed). Shapes cuBLASLt declines fall back to cublasGemmEx plus a bias/activation
 * kernel. SiLU has no epilogue and runs as that kernel too. */
#include "cuda_ctx.h"
#include "ops.h"

#include <string.h>

#define LT_CANDIDATES 8
#define LT_TUNE_RUNS 3

typedef struct {
  int m, n, k, ldo, ldi;
  int epi;
  int accumulate;
  unsigned align_w, align_in, align_out, align_bias;
} lt_key;

typedef struct {
  lt_key key;
  gboolean found;
  cublasLtMatmulAlgo_t algo;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
} lt_plan;

static unsigned
align_of (const void *p)
{
  unsigned a = 256;
  while (a > 1 && ((uintptr_t) p % a) != 0)
    a /= 2;
  return a;
}

static guint
key_hash (gconstpointer p)
{
  const lt_key *key = p;
  const int *v = (const int *) key;
  guint h = 2166136261u;
  for (size_t i = 0; i < sizeof *key / sizeof (int); i++)
    h = (h ^ (guint) v[i]) * 16777619u;
  return h;
}

static gboolean
key_equal (gconstpointer a, gconstpointer b)
{
  return memcmp (a, b, sizeof (lt_key)) == 0;
}

static void
plan_free (gpointer p)
{
  lt_plan *plan = p;
  if (plan->lc)
    cublasLtMatrixLayoutDestroy (plan->lc);
  if (plan->lb)
    cublasLtMatrixLayoutDestroy (plan->lb);
  if (plan->la)
    cublasLtMatrixLayoutDestroy (plan->la);
  if (plan->desc)
    cublasLtMatmulDescDestroy (plan->desc);
  g_free (plan);
}

GHashTable *
vdit_cuda_matmul_plans_new (void)
{
  return g_hash_table_new_full (key_hash, key_equal, NULL, plan_free);
}

static gboolean
tune_enabled (void)
{
  const char *v = g_getenv ("VDIT_CUBLASLT_TUNE");
  return v == NULL || g_strcmp0 (v, "0") != 0;
}

/* Times each candidate into a scratch output (the real one may be an input of an
 * accumulating call) and returns the index of the fastest; 0 when timing fails. */
static int
fastest (vdit_cuda_ctx *c, lt_plan *plan, const cublasLtMatmulHeuristicResult_t *res, int n_res,
         const void *w, const void *in, const void *bias, float beta)
{
  const lt_key *key = &plan->key;
  const float alpha = 1.0f;
  const size_t bytes = ((size_t) key->ldo * (key->m - 1) + key->n) * 2 + 256;
  void *scratch = NULL;
  cudaEvent_t ev[2] = { NULL, NULL };
  int best = 0;
  float best_ms = G_MAXFLOAT;
  /* without room to try candidates, the heuristic's first choice serves */
  if ((scratch = vdit_cuda_mem_alloc (c, bytes, "timing GEMM candidates", NULL)) == NULL ||
      cudaEventCreate (&ev[0]) != cudaSuccess || cudaEventCreate (&ev[1]) != cudaSuccess)
    goto out;
  /* 256-byte aligned: every candidate for the output's alignment also runs here */
  void *d = scratch;
  if (bias)
    cublasLtMatmulDescSetAttribute (plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                    sizeof bias);
  for (int i = 0; i < n_res; i++) {
    gboolean ok = TRUE;
    for (int r = 0; r <= LT_TUNE_RUNS && ok; r++) { /* run 0 warms up */
      if (r == 1)
        cudaEventRecord (ev[0], c->stream);
      ok = cublasLtMatmul (c->lt, plan->desc, &alpha, w, plan->la, in, plan->lb, &beta, d,
                           plan->lc, d, plan->lc, &res[i].algo, c->lt_workspace,
                           c->lt_workspace_size, c->stream) == CUBLAS_STATUS_SUCCESS;
    }
    float ms = 0.0f;
    if (ok && cudaEventRecord (ev[1], c->stream) == cudaSuccess &&
        cudaEventSynchronize (ev[1]) == cudaSuccess &&
        cudaEventElapsedTime (&ms, ev[0], ev[1]) == cudaSuccess && ms < best_ms) {
      best_ms = ms;
      best = i;
    }
  }
  g_debug ("cuBLASLt %d×%d×%d (epilogue %d): candidate %d of %d, %.3f ms", key->m, key->n,
           key->k, key->epi, best, n_res, best_ms / LT_TUNE_RUNS);
out:
  cudaGetLastError (); /* a candidate that failed to launch is not the backend's error */
  for (int i = 0; i < 2; i++)
    if (ev[i])
      cudaEventDestroy (ev[i]);
  vdit_cuda_mem_free (c, scratch);
  return best;
}

/* The plan of a shape, made on first use (descriptor, layouts, chosen algorithm). */
static lt_plan *
plan_for (vdit_cuda_ctx *c, const lt_key *key, const void *w, const void *in,
          const void *bias, float beta)
{
  lt_plan *plan = g_hash_table_lookup (c->lt_algos, key);
  if (plan)
    return plan;
  plan = g_new0 (lt_plan, 1);
  plan->key = *key;
  g_hash_table_insert (c->lt_algos, &plan->key, plan);

  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const cudaDataType_t bias_type = CUDA_R_16BF;
  const cublasLtEpilogue_t epi = (cublasLtEpilogue_t) key->epi;
  const int m = key->m, n = key->n, k = key->k;
  cublasLtMatmulPreference_t pref = NULL;
  if (!VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescCreate (&plan->desc, CUBLAS_COMPUTE_32F,
                                                       CUDA_R_32F)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                 plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                 plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                 plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi)) ||
      (bias && !VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                          plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                          &bias_type, sizeof bias_type))) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatrixLayoutCreate (&plan->la, CUDA_R_16BF, k, n, k)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatrixLayoutCreate (&plan->lb, CUDA_R_16BF, k, m,
                                                         key->ldi)) ||
      !VDIT_CUBLAS_CHECK (c, cublasLtMatrixLayoutCreate (&plan->lc, CUDA_R_16BF, n, m,
                                                         key->ldo)))
    return plan; /* not found: the cuBLAS fallback */

  cublasLtMatmulHeuristicResult_t res[LT_CANDIDATES];
  int n_res = 0;
  const uint32_t aw = key->align_w, ai = key->align_in, ao = key->align_out;
  if (cublasLtMatmulPreferenceCreate (&pref) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &c->lt_workspace_size,
                                            sizeof c->lt_workspace_size) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                            &aw, sizeof aw) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                            &ai, sizeof ai) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                            &ao, sizeof ao) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                            &ao, sizeof ao) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulAlgoGetHeuristic (c->lt, plan->desc, plan->la, plan->lb, plan->lc,
                                      plan->lc, pref, LT_CANDIDATES, res, &n_res) ==
          CUBLAS_STATUS_SUCCESS &&
      n_res > 0) {
    const int pick = n_res > 1 && tune_enabled () ? fastest (c, plan, res, n_res, w, in, bias,
                                                             beta)
                                                  : 0;
    plan->found = TRUE;
    plan->algo = res[pick].algo;
  }
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  return plan;
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
  const float alpha = 1.0f;
  const lt_key key = { .m = m, .n = n, .k = k, .ldo = ldo, .ldi = ldi, .epi = (int) epi,
                       .accumulate = beta != 0.0f, .align_w = align_of (w),
                       .align_in = align_of (in), .align_out = align_of (out),
                       .align_bias = bias ? align_of (bias) : 0 };
  gboolean done = FALSE;
  /* the plan's descriptor carries this call's bias pointer until the call is queued */
  g_mutex_lock (&c->lt_lock);
  lt_plan *plan = plan_for (c, &key, w, in, bias, beta);
  if (plan->found &&
      (!bias || VDIT_CUBLAS_CHECK (c, cublasLtMatmulDescSetAttribute (
                                          plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                          sizeof bias))))
    done = VDIT_CUBLAS_CHECK (c, cublasLtMatmul (c->lt, plan->desc, &alpha, w, plan->la, in,
                                                 plan->lb, &beta, out, plan->lc, out, plan->lc,
                                                 &plan->algo, c->lt_workspace,
                                                 c->lt_workspace_size, c->stream));
  g_mutex_unlock (&c->lt_lock);
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
