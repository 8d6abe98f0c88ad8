/* The CPU backend's thread pool: every task runs exactly once per job, worker indices
 * stay below the thread count, and jobs in quick succession (as kernels of a step
 * follow each other) never mix; once cancelled, no op of the backend writes anything. */
#include "backend.h"
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

static gboolean
all_equal (const float *x, size_t n, float v)
{
  for (size_t i = 0; i < n; i++)
    if (x[i] != v)
      return FALSE;
  return TRUE;
}

/* Ops issued after a cancel, small ones (run on the caller alone) and large ones (on the
 * pool): none writes its output, else it would compute on outputs that skipped ops never
 * wrote (valgrind saw the text encoder's RMSNorm read them). After a reset they run. */
static void
test_cancelled_ops (void)
{
  GError *error = NULL;
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 2, &error));
  const vdit_backend_i *f = be.iface;
  void *c = be.context;
  gint cancel = 1;
  vdit_backend_cpu_set_cancel (&be, &cancel);
  enum { BIG = 2048 * 64 };
  float *in = g_new (float, BIG), *w = g_new (float, BIG), *out = g_new (float, BIG);
  for (size_t i = 0; i < BIG; i++)
    in[i] = w[i] = 0.5f;
  for (int run = 0; run < 2; run++) {
    const float v = 7.0f;
    const gboolean skip = run == 0;
    for (int big = 0; big < 2; big++) {
      const int m = big ? 2048 : 4, d = big ? 64 : 32; /* 2048×64×64: pooled GEMM */
      const size_t n = (size_t) m * d;
      for (size_t i = 0; i < n; i++)
        out[i] = v;
      f->rmsnorm (c, out, in, w, m, d, 1e-6f);
      g_assert_true (all_equal (out, n, v) == skip);
      for (size_t i = 0; i < n; i++)
        out[i] = v;
      f->matmul (c, out, d, in, d, w, NULL, m, d, d, VDIT_ACT_NONE, FALSE);
      g_assert_true (all_equal (out, n, v) == skip);
      for (size_t i = 0; i < n; i++)
        out[i] = v;
      f->mul (c, out, in, w, n);
      g_assert_true (all_equal (out, n, v) == skip);
    }
    /* 4 tokens, 4 heads of 8: out (4, 32) */
    for (size_t i = 0; i < 4 * 32; i++)
      out[i] = v;
    f->attention (c, out, 32, in, 96, in + 32, 96, in + 64, 96, 4, 4, 4, 8, 1.0f, NULL, NULL,
                  NULL);
    g_assert_true (all_equal (out, 4 * 32, v) == skip);
    cancel = 0;
  }
  g_free (in);
  g_free (w);
  g_free (out);
  vdit_backend_free (&be);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cpu-pool/one-thread", test_one_thread);
  g_test_add_func ("/cpu-pool/two-threads", test_two_threads);
  g_test_add_func ("/cpu-pool/oversubscribed", test_oversubscribed);
  g_test_add_func ("/cpu-pool/cancelled-ops", test_cancelled_ops);
  return g_test_run ();
}
