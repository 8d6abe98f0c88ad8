/* CPU reference kernels: OpenBLAS for GEMMs, plain loops (OpenMP over rows) for the
 * rest. Row loops use static scheduling and no cross-thread reductions, so results do
 * not depend on the thread count's timing: the same inputs give the same bits. */
#include "cpu_ops.h"
#include "cpu_act.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Below this many elements a loop runs on one thread: waking the team costs more. */
#define PARALLEL_MIN 16384
/* multiply-adds below which a GEMM runs on one thread */
#define GEMM_PARALLEL_MIN (1u << 18)

void
cpu_matmul (void *ctx, void *out_, int ldo, const void *in_, int ldi, const void *w_,
            const void *bias_, int m, int n, int k, VditActivation act, gboolean accumulate)
{
  float *out = out_;
  const float *in = in_, *w = w_, *bias = bias_;
  if (m <= 0 || n <= 0)
    return;
  /* out = in · wᵀ (+ out when accumulating), BLAS single-threaded on each thread's slice:
   * rows of out when there are enough, else columns (the weight's rows); each thread
   * then adds the bias and applies the activation to its slice while it is in cache */
  const int nt = CPU_THREADS (ctx);
  const float beta = accumulate ? 1.0f : 0.0f;
  if (nt > 1 && (size_t) m * n * k >= GEMM_PARALLEL_MIN) {
    const gboolean by_rows = m >= 8 * nt;
    const int len = by_rows ? m : n, align = by_rows ? 4 : 16;
    const int chunk = ((len + nt - 1) / nt + align - 1) / align * align;
#pragma omp parallel for schedule(static) num_threads (nt)
    for (int t = 0; t < nt; t++) {
      const int a = t * chunk, b = MIN (len, a + chunk);
      if (a >= b)
        continue;
      if (by_rows) {
        float *o = out + (size_t) a * ldo;
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, b - a, n, k, 1.0f,
                     in + (size_t) a * ldi, ldi, w, k, beta, o, ldo);
        cpu_bias_act_rows (o, ldo, bias, b - a, n, act);
      } else {
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, m, b - a, k, 1.0f, in, ldi,
                     w + (size_t) a * k, k, beta, out + a, ldo);
        cpu_bias_act_rows (out + a, ldo, bias ? bias + a : NULL, m, b - a, act);
      }
    }
  } else {
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, in, ldi, w, k, beta,
                 out, ldo);
    cpu_bias_act_rows (out, ldo, bias, m, n, act);
  }
}

void
cpu_rmsnorm (void *ctx, void *out_, const void *x_, const void *w_, int m, int d, float eps)
{
  float *out = out_;
  const float *x = x_, *w = w_;
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if ((size_t) m * d >= PARALLEL_MIN)
  for (int i = 0; i < m; i++) {
    const float *xi = x + (size_t) i * d;
    float *oi = out + (size_t) i * d;
    double ss = 0.0;
    for (int j = 0; j < d; j++)
      ss += (double) xi[j] * xi[j];
    float r = 1.0f / sqrtf ((float) (ss / d) + eps);
    for (int j = 0; j < d; j++)
      oi[j] = xi[j] * r * w[j];
  }
}

void
cpu_layernorm_modulate (void *ctx, void *out_, const void *x_, const void *shift_,
                        const void *scale_, int m, int d, float eps)
{
  float *out = out_;
  const float *x = x_, *shift = shift_, *scale = scale_;
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if ((size_t) m * d >= PARALLEL_MIN)
  for (int i = 0; i < m; i++) {
    const float *xi = x + (size_t) i * d;
    float *oi = out + (size_t) i * d;
    double sum = 0.0;
    for (int j = 0; j < d; j++)
      sum += xi[j];
    float mean = (float) (sum / d);
    double var = 0.0;
    for (int j = 0; j < d; j++) {
      float c = xi[j] - mean;
      var += (double) c * c;
    }
    float r = 1.0f / sqrtf ((float) (var / d) + eps);
    for (int j = 0; j < d; j++)
      oi[j] = (xi[j] - mean) * r * (1.0f + scale[j]) + shift[j];
  }
}

void
cpu_add_gated (void *ctx, void *x_, const void *h_, const void *gate_, int m, int d)
{
  float *x = x_;
  const float *h = h_, *gate = gate_;
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if ((size_t) m * d >= PARALLEL_MIN)
  for (int i = 0; i < m; i++) {
    float *xi = x + (size_t) i * d;
    const float *hi = h + (size_t) i * d;
    for (int j = 0; j < d; j++)
      xi[j] += (gate ? gate[j] : 1.0f) * hi[j];
  }
}

void
cpu_mul (void *ctx, void *out_, const void *a_, const void *b_, size_t n)
{
  float *out = out_;
  const float *a = a_, *b = b_;
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if (n >= PARALLEL_MIN)
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] * b[i];
}

void
cpu_add (void *ctx, void *out_, const void *a_, const void *b_, size_t n)
{
  float *out = out_;
  const float *a = a_, *b = b_;
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if (n >= PARALLEL_MIN)
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] + b[i];
}

void
cpu_activate (void *ctx, void *out_, const void *in_, size_t n, VditActivation act)
{
  float *out = out_;
  const float *in = in_;
  if (out != in && n)
    memcpy (out, in, n * sizeof (float));
  /* in chunks of whole vectors, so that a split never moves an element to a tail */
  const size_t chunk = 4096;
  const int64_t n_chunks = (int64_t) ((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if (n >= PARALLEL_MIN)
  for (int64_t c = 0; c < n_chunks; c++) {
    const size_t a = (size_t) c * chunk, len = MIN (chunk, n - a);
    cpu_bias_act_rows (out + a, (int) len, NULL, 1, (int) len, act);
  }
}

void
cpu_rope (void *ctx, void *x_, int ld, const float *cos_t, const float *sin_t, int n,
          int heads, int head_dim, int n_chunks)
{
  float *x = x_;
  const int chunk = head_dim / n_chunks, half = chunk / 2, pairs = head_dim / 2;
#pragma omp parallel for schedule(static) num_threads (CPU_THREADS (ctx)) if ((size_t) n * heads * head_dim >= PARALLEL_MIN)
  for (int i = 0; i < n; i++) {
    const float *c = cos_t + (size_t) i * pairs, *s = sin_t + (size_t) i * pairs;
    for (int h = 0; h < heads; h++) {
      float *xh = x + (size_t) i * ld + (size_t) h * head_dim;
      for (int ch = 0; ch < n_chunks; ch++) {
        float *a = xh + ch * chunk, *b = a + half;
        for (int j = 0; j < half; j++) {
          float cj = c[ch * half + j], sj = s[ch * half + j];
          float aj = a[j], bj = b[j];
          a[j] = aj * cj - bj * sj;
          b[j] = bj * cj + aj * sj;
        }
      }
    }
  }
}
