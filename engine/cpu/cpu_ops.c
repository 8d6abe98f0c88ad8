/* CPU reference kernels: OpenBLAS for GEMMs, plain loops for the rest, split across the
 * backend's pool (cpu_parallel_range) in ranges of rows that depend only on the sizes
 * and the thread count, never on timing: the same inputs give the same bits. */
#include "cpu_ops.h"
#include "cpu_act.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Below this many elements a loop runs on one thread: waking the team costs more. */
#define PARALLEL_MIN 16384
/* multiply-adds below which a GEMM runs on one thread */
#define GEMM_PARALLEL_MIN (1u << 18)

typedef struct {
  int64_t n, chunk;
  cpu_range_fn fn;
  void *arg;
} range_job;

static void
range_task (void *arg, int64_t task, int worker)
{
  const range_job *j = arg;
  const int64_t a = task * j->chunk, b = MIN (j->n, a + j->chunk);
  j->fn (j->arg, a, b, worker);
}

void
cpu_parallel_range (void *ctx, int64_t n, int64_t min_chunk, cpu_range_fn fn, void *arg)
{
  if (n <= 0)
    return;
  const int nt = CPU_THREADS (ctx);
  /* a few ranges per thread, so that one thread held up by the machine is made up
   * for by the others */
  int64_t n_chunks = MIN ((n + MAX (min_chunk, 1) - 1) / MAX (min_chunk, 1), 4 * (int64_t) nt);
  if (nt == 1 || n_chunks <= 1) {
    if (!cpu_cancelled (ctx))
      fn (arg, 0, n, 0);
    return;
  }
  range_job j = { n, (n + n_chunks - 1) / n_chunks, fn, arg };
  n_chunks = (n + j.chunk - 1) / j.chunk;
  cpu_run (ctx, n_chunks, range_task, &j);
}

void
cpu_run (void *ctx, int64_t n_tasks, cpu_task_fn fn, void *arg)
{
  cpu_context *c = ctx;
  if (c && c->pool) {
    cpu_pool_run (c->pool, n_tasks, fn, arg);
    return;
  }
  /* kernels called without a backend (tests): OpenMP's threads */
#pragma omp parallel for schedule(static, 1) num_threads (CPU_THREADS (ctx))
  for (int64_t t = 0; t < n_tasks; t++)
    fn (arg, t, omp_get_thread_num ());
}

/* Rows of a loop per element count: ranges of at least PARALLEL_MIN elements. */
static int64_t
rows_per_chunk (int d)
{
  return MAX (PARALLEL_MIN / MAX (d, 1), 1);
}

typedef struct {
  float *out;
  int ldo, ldi, m, n, k, chunk;
  const float *in, *w, *bias;
  float beta;
  gboolean by_rows;
  VditActivation act;
} gemm_job;

/* One thread's slice of a GEMM: rows of out, or columns (the weight's rows); then the
 * bias and activation of that slice while it is in cache. */
static void
gemm_task (void *arg, int64_t t, int worker)
{
  const gemm_job *g = arg;
  const int len = g->by_rows ? g->m : g->n;
  const int a = (int) t * g->chunk, b = MIN (len, a + g->chunk);
  if (a >= b)
    return;
  if (g->by_rows) {
    float *o = g->out + (size_t) a * g->ldo;
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, b - a, g->n, g->k, 1.0f,
                 g->in + (size_t) a * g->ldi, g->ldi, g->w, g->k, g->beta, o, g->ldo);
    cpu_bias_act_rows (o, g->ldo, g->bias, b - a, g->n, g->act);
  } else {
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, g->m, b - a, g->k, 1.0f, g->in,
                 g->ldi, g->w + (size_t) a * g->k, g->k, g->beta, g->out + a, g->ldo);
    cpu_bias_act_rows (g->out + a, g->ldo, g->bias ? g->bias + a : NULL, g->m, b - a, g->act);
  }
}

void
cpu_matmul (void *ctx, void *out, int ldo, const void *in, int ldi, const void *w,
            const void *bias, int m, int n, int k, VditActivation act, gboolean accumulate)
{
  if (m <= 0 || n <= 0)
    return;
  /* out = in · wᵀ (+ out when accumulating), BLAS single-threaded on each thread's slice.
   * BLAS packs both operands of every call, so a thread given rows packs all of w and a
   * thread given columns all of in: split the side that is larger (n > m: a DiT of a few
   * hundred tokens), as long as each slice keeps a few rows or 16 columns. */
  const int nt = CPU_THREADS (ctx);
  const gboolean by_rows = n < 16 * nt || (m >= 8 * nt && m >= n);
  gemm_job g = { out, ldo, ldi, m, n, k, 0, in, w, bias, accumulate ? 1.0f : 0.0f,
                 by_rows, act };
  if (nt > 1 && (size_t) m * n * k >= GEMM_PARALLEL_MIN) {
    const int len = g.by_rows ? m : n, align = g.by_rows ? 4 : 16;
    g.chunk = ((len + nt - 1) / nt + align - 1) / align * align;
    cpu_run (ctx, (len + g.chunk - 1) / g.chunk, gemm_task, &g);
  } else if (!cpu_cancelled (ctx)) {
    g.by_rows = TRUE;
    g.chunk = m;
    gemm_task (&g, 0, 0);
  }
}

typedef struct {
  float *out;
  const float *x, *w, *shift, *scale;
  int d;
  float eps;
} norm_job;

static void
rmsnorm_rows (void *arg, int64_t r0, int64_t r1, int worker)
{
  const norm_job *j = arg;
  const int d = j->d;
  for (int64_t i = r0; i < r1; i++) {
    const float *xi = j->x + (size_t) i * d;
    float *oi = j->out + (size_t) i * d;
    double ss = 0.0;
    for (int c = 0; c < d; c++)
      ss += (double) xi[c] * xi[c];
    float r = 1.0f / sqrtf ((float) (ss / d) + j->eps);
    for (int c = 0; c < d; c++)
      oi[c] = xi[c] * r * j->w[c];
  }
}

void
cpu_rmsnorm (void *ctx, void *out, const void *x, const void *w, int m, int d, float eps)
{
  norm_job j = { .out = out, .x = x, .w = w, .d = d, .eps = eps };
  cpu_parallel_range (ctx, m, rows_per_chunk (d), rmsnorm_rows, &j);
}

/* Σ x and Σ (x − mean)² in double over four interleaved partial sums, combined in a
 * fixed order: four chains of adds run side by side where one would wait on each. */
static inline double
sum_f64 (const float *x, int d)
{
  double s[4] = { 0.0, 0.0, 0.0, 0.0 };
  int c = 0;
  for (; c + 4 <= d; c += 4)
    for (int l = 0; l < 4; l++)
      s[l] += x[c + l];
  for (; c < d; c++)
    s[0] += x[c];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

static inline double
sum_sq_dev_f64 (const float *x, float mean, int d)
{
  double s[4] = { 0.0, 0.0, 0.0, 0.0 };
  int c = 0;
  for (; c + 4 <= d; c += 4)
    for (int l = 0; l < 4; l++) {
      const float dev = x[c + l] - mean;
      s[l] += (double) dev * dev;
    }
  for (; c < d; c++) {
    const float dev = x[c] - mean;
    s[0] += (double) dev * dev;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

static void
layernorm_modulate_rows (void *arg, int64_t r0, int64_t r1, int worker)
{
  const norm_job *j = arg;
  const int d = j->d;
  for (int64_t i = r0; i < r1; i++) {
    const float *xi = j->x + (size_t) i * d;
    float *oi = j->out + (size_t) i * d;
    const float mean = (float) (sum_f64 (xi, d) / d);
    const double var = sum_sq_dev_f64 (xi, mean, d);
    const float r = 1.0f / sqrtf ((float) (var / d) + j->eps);
    for (int c = 0; c < d; c++)
      oi[c] = (xi[c] - mean) * r * (1.0f + j->scale[c]) + j->shift[c];
  }
}

void
cpu_layernorm_modulate (void *ctx, void *out, const void *x, const void *shift,
                        const void *scale, int m, int d, float eps)
{
  norm_job j = { .out = out, .x = x, .shift = shift, .scale = scale, .d = d, .eps = eps };
  cpu_parallel_range (ctx, m, rows_per_chunk (d), layernorm_modulate_rows, &j);
}

typedef struct {
  float *out;
  const float *a, *b;
  int d;
  int64_t n;
  VditActivation act;
} elem_job;

static void
add_gated_rows (void *arg, int64_t r0, int64_t r1, int worker)
{
  const elem_job *j = arg;
  const int d = j->d;
  for (int64_t i = r0; i < r1; i++) {
    float *xi = j->out + (size_t) i * d;
    const float *hi = j->a ? j->a + (size_t) i * d : NULL;
    if (hi == NULL)
      for (int c = 0; c < d; c++)
        xi[c] += j->b[c];
    else if (j->b)
      for (int c = 0; c < d; c++)
        xi[c] += j->b[c] * hi[c];
    else
      for (int c = 0; c < d; c++)
        xi[c] += hi[c];
  }
}

void
cpu_add_gated (void *ctx, void *x, const void *h, const void *gate, int m, int d)
{
  elem_job j = { .out = x, .a = h, .b = gate, .d = d };
  cpu_parallel_range (ctx, m, rows_per_chunk (d), add_gated_rows, &j);
}

static void
mul_range (void *arg, int64_t i0, int64_t i1, int worker)
{
  const elem_job *j = arg;
  for (int64_t i = i0; i < i1; i++)
    j->out[i] = j->a[i] * j->b[i];
}

static void
add_range (void *arg, int64_t i0, int64_t i1, int worker)
{
  const elem_job *j = arg;
  for (int64_t i = i0; i < i1; i++)
    j->out[i] = j->a[i] + j->b[i];
}

void
cpu_mul (void *ctx, void *out, const void *a, const void *b, size_t n)
{
  elem_job j = { .out = out, .a = a, .b = b };
  cpu_parallel_range (ctx, (int64_t) n, PARALLEL_MIN, mul_range, &j);
}

void
cpu_add (void *ctx, void *out, const void *a, const void *b, size_t n)
{
  elem_job j = { .out = out, .a = a, .b = b };
  cpu_parallel_range (ctx, (int64_t) n, PARALLEL_MIN, add_range, &j);
}

/* in ranges of whole 4096-element blocks, so that a split never moves an element into a
 * vector's tail */
#define ACT_BLOCK 4096

static void
activate_blocks (void *arg, int64_t b0, int64_t b1, int worker)
{
  const elem_job *j = arg;
  const int64_t n = j->n;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t a = b * ACT_BLOCK, len = MIN (ACT_BLOCK, n - a);
    cpu_bias_act_rows (j->out + a, (int) len, NULL, 1, (int) len, j->act);
  }
}

void
cpu_activate (void *ctx, void *out, const void *in, size_t n, VditActivation act)
{
  if (out != in && n)
    memcpy (out, in, n * sizeof (float));
  elem_job j = { .out = out, .n = (int64_t) n, .act = act };
  cpu_parallel_range (ctx, (j.n + ACT_BLOCK - 1) / ACT_BLOCK,
                      PARALLEL_MIN / ACT_BLOCK, activate_blocks, &j);
}

typedef struct {
  float *x;
  const float *cos_t, *sin_t;
  int ld, heads, head_dim, n_chunks;
} rope_job;

static void
rope_rows (void *arg, int64_t r0, int64_t r1, int worker)
{
  const rope_job *j = arg;
  const int chunk = j->head_dim / j->n_chunks, half = chunk / 2, pairs = j->head_dim / 2;
  for (int64_t i = r0; i < r1; i++) {
    const float *c = j->cos_t + (size_t) i * pairs, *s = j->sin_t + (size_t) i * pairs;
    for (int h = 0; h < j->heads; h++) {
      float *xh = j->x + (size_t) i * j->ld + (size_t) h * j->head_dim;
      for (int ch = 0; ch < j->n_chunks; ch++) {
        float *a = xh + ch * chunk, *b = a + half;
        for (int p = 0; p < half; p++) {
          float cp = c[ch * half + p], sp = s[ch * half + p];
          float ap = a[p], bp = b[p];
          a[p] = ap * cp - bp * sp;
          b[p] = bp * cp + ap * sp;
        }
      }
    }
  }
}

void
cpu_rope (void *ctx, void *x, int ld, const float *cos_t, const float *sin_t, int n,
          int heads, int head_dim, int n_chunks)
{
  rope_job j = { x, cos_t, sin_t, ld, heads, head_dim, n_chunks };
  cpu_parallel_range (ctx, n, rows_per_chunk (heads * head_dim), rope_rows, &j);
}
