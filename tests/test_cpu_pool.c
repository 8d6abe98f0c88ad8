/* The CPU backend's thread pool: every task runs exactly once per job, worker indices
 * stay below the thread count, and jobs in quick succession (as kernels of a step
 * follow each other) never mix. */
#include "cpu/cpu_pool.h"

#include <glib.h>
#include <stdatomic.h>

typedef struct {
  atomic_int *hits;
  int threads;
  atomic_int bad_worker;
  int job;
  atomic_int *owner; /* job that last touched each task */
} count_job;

static void
count_task (void *arg, int64_t t, int worker)
{
  count_job *j = arg;
  if (worker < 0 || worker >= j->threads)
    atomic_store (&j->bad_worker, 1);
  atomic_fetch_add (&j->hits[t], 1);
  atomic_store (&j->owner[t], j->job);
  if (t % 7 == 0)
    g_usleep (t % 3); /* some tasks slower, so helpers and the caller interleave */
}

static void
run_jobs (int threads)
{
  cpu_pool *pool = cpu_pool_new (threads);
  g_assert_nonnull (pool);
  g_assert_cmpint (cpu_pool_threads (pool), ==, threads);
  enum { MAX_TASKS = 97 };
  atomic_int hits[MAX_TASKS], owner[MAX_TASKS];
  for (int job = 0; job < 800; job++) {
    const int n = 1 + job % MAX_TASKS;
    for (int t = 0; t < MAX_TASKS; t++) {
      atomic_init (&hits[t], 0);
      atomic_init (&owner[t], -1);
    }
    count_job j = { hits, threads, 0, job, owner };
    cpu_pool_run (pool, n, count_task, &j);
    g_assert_cmpint (atomic_load (&j.bad_worker), ==, 0);
    for (int t = 0; t < MAX_TASKS; t++) {
      g_assert_cmpint (atomic_load (&hits[t]), ==, t < n ? 1 : 0);
      g_assert_cmpint (atomic_load (&owner[t]), ==, t < n ? job : -1);
    }
  }
  cpu_pool_free (pool);
}

static void
test_one_thread (void)
{
  run_jobs (1);
}

static void
test_two_threads (void)
{
  run_jobs (2);
}

static void
test_oversubscribed (void)
{
  /* more threads than CPUs: helpers are often descheduled; the caller carries on */
  run_jobs (8);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cpu-pool/one-thread", test_one_thread);
  g_test_add_func ("/cpu-pool/two-threads", test_two_threads);
  g_test_add_func ("/cpu-pool/oversubscribed", test_oversubscribed);
  return g_test_run ();
}
