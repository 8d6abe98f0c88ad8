/* The CPU backend's thread pool (see cpu_pool.h). */
#include "cpu_pool.h"

#include <glib.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause ()
#else
#define CPU_RELAX() ((void) 0)
#endif

/* Pause iterations an idle helper polls for new work before it sleeps: some tens of
 * microseconds (a pause is 10-40 ns), longer than the host-side gap between two kernels
 * of a step, far shorter than a scheduler tick. */
#define HELPER_SPIN 2000
/* Pause iterations the caller polls for running tasks before it yields its CPU. */
#define CALLER_SPIN 2000

struct cpu_pool {
  int threads;
  pthread_t *helpers;
  int n_started;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  /* the job: written under lock while no helper is registered (active == 0) */
  cpu_task_fn fn;
  void *arg;
  int64_t n_tasks;
  atomic_int_fast64_t next; /* next unclaimed task */
  atomic_int_fast64_t done; /* finished tasks */
  atomic_uint generation;   /* bumped for every job */
  atomic_int active;        /* helpers registered on the current job */
  int sleepers;             /* helpers waiting on `wake` (under lock) */
  gboolean stop;
  const int *cancel; /* cpu_pool_set_cancel */
};

typedef struct {
  cpu_pool *pool;
  int worker;
} helper_arg;

int
cpu_pool_cancelled (const cpu_pool *p)
{
  return p->cancel != NULL && g_atomic_int_get (p->cancel) != 0;
}

static void
claim_tasks (cpu_pool *p, cpu_task_fn fn, void *arg, int64_t n, int worker)
{
  for (;;) {
    const int64_t t = atomic_fetch_add_explicit (&p->next, 1, memory_order_relaxed);
    if (t >= n)
      return;
    if (!cpu_pool_cancelled (p))
      fn (arg, t, worker);
    atomic_fetch_add_explicit (&p->done, 1, memory_order_release);
  }
}

static void *
helper_main (void *data)
{
  helper_arg *ha = data;
  cpu_pool *p = ha->pool;
  const int worker = ha->worker;
  g_free (ha);
  unsigned seen = atomic_load (&p->generation);
  for (;;) {
    for (int i = 0; i < HELPER_SPIN && atomic_load_explicit (&p->generation,
                                                             memory_order_relaxed) == seen; i++)
      CPU_RELAX ();
    pthread_mutex_lock (&p->lock);
    while (!p->stop && atomic_load (&p->generation) == seen) {
      p->sleepers++;
      pthread_cond_wait (&p->wake, &p->lock);
      p->sleepers--;
    }
    if (p->stop) {
      pthread_mutex_unlock (&p->lock);
      return NULL;
    }
    seen = atomic_load (&p->generation);
    const cpu_task_fn fn = p->fn;
    void *const arg = p->arg;
    const int64_t n = p->n_tasks;
    atomic_fetch_add (&p->active, 1);
    pthread_mutex_unlock (&p->lock);
    claim_tasks (p, fn, arg, n, worker);
    atomic_fetch_sub_explicit (&p->active, 1, memory_order_release);
  }
}

cpu_pool *
cpu_pool_new (int threads)
{
  cpu_pool *p = g_new0 (cpu_pool, 1);
  p->threads = MAX (threads, 1);
  pthread_mutex_init (&p->lock, NULL);
  pthread_cond_init (&p->wake, NULL);
  atomic_init (&p->next, 0);
  atomic_init (&p->done, 0);
  atomic_init (&p->generation, 0);
  atomic_init (&p->active, 0);
  p->helpers = g_new0 (pthread_t, p->threads);
  for (int i = 1; i < p->threads; i++) {
    helper_arg *ha = g_new (helper_arg, 1);
    ha->pool = p;
    ha->worker = i;
    if (pthread_create (&p->helpers[i - 1], NULL, helper_main, ha) != 0) {
      g_free (ha);
      cpu_pool_free (p);
      return NULL;
    }
    p->n_started++;
  }
  return p;
}

void
cpu_pool_free (cpu_pool *p)
{
  if (p == NULL)
    return;
  pthread_mutex_lock (&p->lock);
  p->stop = TRUE;
  pthread_cond_broadcast (&p->wake);
  pthread_mutex_unlock (&p->lock);
  for (int i = 0; i < p->n_started; i++)
    pthread_join (p->helpers[i], NULL);
  pthread_cond_destroy (&p->wake);
  pthread_mutex_destroy (&p->lock);
  g_free (p->helpers);
  g_free (p);
}

int
cpu_pool_threads (const cpu_pool *p)
{
  return p->threads;
}

void
cpu_pool_run (cpu_pool *p, int64_t n_tasks, cpu_task_fn fn, void *arg)
{
  if (n_tasks <= 0)
    return;
  if (p->threads == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks && !cpu_pool_cancelled (p); t++)
      fn (arg, t, 0);
    return;
  }
  /* post the job once no helper is still registered on the previous one (a helper that
   * woke late may hold the old counters for a moment, claiming nothing) */
  pthread_mutex_lock (&p->lock);
  while (atomic_load (&p->active) > 0) {
    pthread_mutex_unlock (&p->lock);
    sched_yield ();
    pthread_mutex_lock (&p->lock);
  }
  p->fn = fn;
  p->arg = arg;
  p->n_tasks = n_tasks;
  atomic_store (&p->next, 0);
  atomic_store (&p->done, 0);
  atomic_fetch_add (&p->generation, 1);
  if (p->sleepers > 0)
    pthread_cond_broadcast (&p->wake);
  pthread_mutex_unlock (&p->lock);

  claim_tasks (p, fn, arg, n_tasks, 0);
  for (int i = 0; atomic_load_explicit (&p->done, memory_order_acquire) < n_tasks; i++) {
    if (i < CALLER_SPIN)
      CPU_RELAX ();
    else
      sched_yield ();
  }
}

void
cpu_pool_set_cancel (cpu_pool *p, const int *flag)
{
  p->cancel = flag;
}
