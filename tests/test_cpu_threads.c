/* The CPU backend's threads: the default follows the affinity mask and a cgroup CPU quota,
 * absurd counts are refused, and GEMMs split across threads give the single-thread
 * result run after run. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "backend.h"
#include "cpu/cpu_threads.h"
#include "vdit.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_default (void)
{
  char *why = NULL;
  const int n = vdit_cpu_default_threads (&why);
  g_test_message ("default: %d threads (%s)", n, why);
  g_assert_cmpint (n, >=, 1);
  g_assert_cmpint (n, <=, (int) g_get_num_processors ());
  g_assert_nonnull (strstr (why, "CPU"));
  g_free (why);
}

/* One CPU in the affinity mask (taskset -c 0) means one thread. */
static void
test_affinity (void)
{
  cpu_set_t old, one;
  g_assert_cmpint (sched_getaffinity (0, sizeof old, &old), ==, 0);
  int first = 0;
  while (!CPU_ISSET (first, &old))
    first++;
  CPU_ZERO (&one);
  CPU_SET (first, &one);
  g_assert_cmpint (sched_setaffinity (0, sizeof one, &one), ==, 0);
  char *why = NULL;
  const int n = vdit_cpu_default_threads (&why);
  g_assert_cmpint (sched_setaffinity (0, sizeof old, &old), ==, 0);
  g_test_message ("pinned to CPU %d: %d threads (%s)", first, n, why);
  g_assert_cmpint (n, ==, 1);
  g_assert_nonnull (strstr (why, "1 CPUs in the affinity mask"));
  g_free (why);
}

/* cgroup files take a plain write (g_file_set_contents renames a temporary). */
static gboolean
write_text (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");
  if (f == NULL)
    return FALSE;
  const gboolean ok = fputs (text, f) >= 0;
  return fclose (f) == 0 && ok;
}

/* A child process in a cgroup-v1 CPU quota of one CPU defaults to one thread. Needs a
 * writable cpu hierarchy (root in most containers); skipped otherwise. */
static void
test_quota (void)
{
  const char *base = "/sys/fs/cgroup/cpu";
  char *dir = g_strdup_printf ("%s/vdit-test-%d", base, (int) getpid ());
  if (g_get_num_processors () < 2 || access (base, W_OK) != 0 || mkdir (dir, 0755) != 0) {
    g_test_skip ("no writable cgroup-v1 cpu hierarchy, or a single CPU");
    g_free (dir);
    return;
  }
  char *quota = g_build_filename (dir, "cpu.cfs_quota_us", NULL);
  char *period = g_build_filename (dir, "cpu.cfs_period_us", NULL);
  char *tasks = g_build_filename (dir, "tasks", NULL);
  g_assert_true (write_text (period, "100000"));
  g_assert_true (write_text (quota, "100000"));
  const pid_t pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    char *me = g_strdup_printf ("%d", (int) getpid ());
    if (!write_text (tasks, me))
      _exit (3);
    char *why = NULL;
    const int n = vdit_cpu_default_threads (&why);
    printf ("# in a 1-CPU quota: %d threads (%s)\n", n, why);
    fflush (stdout);
    _exit (n == 1 && strstr (why, "quota of 1.00") ? 0 : 1);
  }
  int status = 0;
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  for (int i = 0; i < 100 && rmdir (dir) != 0; i++) /* the kernel frees it a moment later */
    g_usleep (10000);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  g_free (quota), g_free (period), g_free (tasks), g_free (dir);
}

static void
test_bounds (void)
{
  GError *error = NULL;
  const int usable = vdit_cpu_default_threads (NULL);
  g_assert_true (vdit_cpu_threads_check (0, &error));
  g_assert_true (vdit_cpu_threads_check (1, &error));
  g_assert_true (vdit_cpu_threads_check (VDIT_CPU_THREADS_PER_CPU * usable, &error));
  g_assert_no_error (error);
  const int bad[] = { -1, VDIT_CPU_THREADS_PER_CPU * usable + 1, 5000, G_MAXINT };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_assert_false (vdit_cpu_threads_check (bad[i], &error));
    g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "out of range"));
    g_clear_error (&error);
  }
  vdit_backend be = { 0 };
  g_assert_false (vdit_backend_cpu_init (&be, 5000, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

/* out = in · wᵀ split by rows (m large) and by columns (m small) over 2 threads: the same
 * bits on every run, and within rounding of one thread. */
static void
test_split_gemm (void)
{
  const int shapes[][3] = { { 96, 200, 300 }, { 3, 1000, 256 } };
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
    const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
    GRand *rng = g_rand_new_with_seed (7);
    float *in = g_new (float, (size_t) m * k), *w = g_new (float, (size_t) n * k);
    for (size_t i = 0; i < (size_t) m * k; i++)
      in[i] = (float) g_rand_double_range (rng, -1, 1);
    for (size_t i = 0; i < (size_t) n * k; i++)
      w[i] = (float) g_rand_double_range (rng, -1, 1);
    g_rand_free (rng);
    float *out[3];
    const int threads[3] = { 1, 2, 2 };
    for (int r = 0; r < 3; r++) {
      vdit_backend be = { 0 };
      GError *error = NULL;
      if (!vdit_backend_cpu_init (&be, threads[r], &error)) {
        /* a single usable CPU allows at most 4 threads: 2 is always fine */
        g_error ("%s", error->message);
      }
      out[r] = g_new (float, (size_t) m * n);
      be.iface->matmul (be.context, out[r], n, in, k, w, NULL, m, n, k, VDIT_ACT_NONE, FALSE);
      vdit_backend_free (&be);
    }
    g_assert_cmpmem (out[1], (size_t) m * n * 4, out[2], (size_t) m * n * 4);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t) m * n; i++)
      worst = MAX (worst, fabs ((double) out[0][i] - out[1][i]));
    g_assert_cmpfloat (worst, <, 1e-4);
    g_free (in), g_free (w);
    for (int r = 0; r < 3; r++)
      g_free (out[r]);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cpu-threads/default", test_default);
  g_test_add_func ("/cpu-threads/affinity", test_affinity);
  g_test_add_func ("/cpu-threads/quota", test_quota);
  g_test_add_func ("/cpu-threads/bounds", test_bounds);
  g_test_add_func ("/cpu-threads/split-gemm", test_split_gemm);
  return g_test_run ();
}
