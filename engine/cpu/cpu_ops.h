/* CPU reference kernels (f32). Same contracts as the slots of engine/backend.h. */
#ifndef VDIT_CPU_OPS_H
#define VDIT_CPU_OPS_H

#include "backend.h"
#include "cpu_pool.h"
#include "cpu_scratch.h"

#include <omp.h>

/* The CPU backend's context: every kernel splits its work across one pool of `threads`
 * threads (the caller and its helpers, cpu_pool.h), and BLAS runs single-threaded
 * inside them: one pool, nothing left spinning against it. */
typedef struct {
  int threads;
  cpu_pool *pool;
  /* attention's scratch, reused from call to call; one caller at a time per context */
  cpu_scratch attn_keys, attn_work;
} cpu_context;

/* Threads of a kernel; kernels called directly (tests) may pass no context, and then run
 * on OpenMP's threads. */
static inline int
cpu_threads (const void *ctx)
{
  return ctx ? ((const cpu_context *) ctx)->threads : omp_get_max_threads ();
}
#define CPU_THREADS(ctx) cpu_threads (ctx)

/* The context's cancel flag is set (vdit_backend_cpu_set_cancel): the pool skips every
 * task, so an op run on the caller alone must be skipped too, or it would compute on
 * outputs the skipped ops never wrote. */
static inline gboolean
cpu_cancelled (const void *ctx)
{
  return ctx && cpu_pool_cancelled (((const cpu_context *) ctx)->pool);
}

/* fn(arg, t, worker) for t < n_tasks on the context's pool (OpenMP's threads without a
 * context); worker < CPU_THREADS (ctx) indexes per-thread scratch. */
void cpu_run (void *ctx, int64_t n_tasks, cpu_task_fn fn, void *arg);
/* fn(arg, begin, end, worker) over ranges covering [0, n), each at least min_chunk long
 * (but the last), a few per thread; on the caller alone when there is one range. */
typedef void (*cpu_range_fn) (void *arg, int64_t begin, int64_t end, int worker);
void cpu_parallel_range (void *ctx, int64_t n, int64_t min_chunk, cpu_range_fn fn, void *arg);

void cpu_matmul (void *ctx, void *out, int ldo, const void *in, int ldi, const void *w,
                 const void *bias, int m, int n, int k, VditActivation act, gboolean accumulate);
void cpu_rmsnorm (void *ctx, void *out, const void *x, const void *w, int m, int d, float eps);
void cpu_layernorm_modulate (void *ctx, void *out, const void *x, const void *shift,
                             const void *scale, int m, int d, float eps);
void cpu_add_gated (void *ctx, void *x, const void *h, const void *gate, int m, int d);
void cpu_mul (void *ctx, void *out, const void *a, const void *b, size_t n);
void cpu_add (void *ctx, void *out, const void *a, const void *b, size_t n);
void cpu_activate (void *ctx, void *out, const void *in, size_t n, VditActivation act);
void cpu_rope (void *ctx, void *x, int ld, const float *cos_t, const float *sin_t, int n,
               int heads, int head_dim, int n_chunks);

#endif
