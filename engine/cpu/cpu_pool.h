/* The CPU backend's thread pool: the calling thread plus threads − 1 helpers that
 * claim tasks from a shared counter.
 *
 * Why not OpenMP's fork/join: on a machine shared with other work, a parallel region
 * waits at its barrier for every thread of the team, so one thread the scheduler has
 * set aside stalls the step (measured on the 2-core machine under other builds: 224 ms a
 * step with 2 spinning OpenMP threads against 35 ms with one). Here the caller runs
 * every task no helper has claimed yet, and waits only for tasks already running; idle
 * helpers poll for some tens of microseconds (longer than the gap between two kernels)
 * and then sleep. */
#ifndef VDIT_CPU_POOL_H
#define VDIT_CPU_POOL_H

#include <stdint.h>

typedef struct cpu_pool cpu_pool;

/* task: index in [0, n_tasks); worker: 0 for the caller, 1 .. threads − 1 for helpers
 * (an index into per-worker scratch). */
typedef void (*cpu_task_fn) (void *arg, int64_t task, int worker);

/* threads ≥ 1 (1: no helper thread, tasks run on the caller). NULL when a thread cannot
 * be started. */
cpu_pool *cpu_pool_new (int threads);
void cpu_pool_free (cpu_pool *pool);
int cpu_pool_threads (const cpu_pool *pool);

/* Runs fn(arg, t, worker) for every t < n_tasks, each exactly once, and returns when all
 * have finished. One caller at a time. Which worker runs a task varies from run to run,
 * so a task's result must depend only on its index. */
void cpu_pool_run (cpu_pool *pool, int64_t n_tasks, cpu_task_fn fn, void *arg);

/* Once *flag is non-zero, cpu_pool_run skips the tasks not yet claimed (NULL: never). */
void cpu_pool_set_cancel (cpu_pool *pool, const int *flag);
/* Non-zero once that flag is set. */
int cpu_pool_cancelled (const cpu_pool *pool);

#endif
