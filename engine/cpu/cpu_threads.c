/* How many threads the CPU backend runs by default: the CPUs this process may actually
 * use. That is the smallest of
 *   - the CPUs in its affinity mask (taskset, cpusets),
 *   - its CPU quota rounded up (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us / period, the
 *     tightest over the cgroup and its ancestors),
 *   - the physical cores among those CPUs: GEMM-bound loops gain nothing from a core's
 *     second hyperthread and lose to the extra synchronisation.
 * Anything unreadable (no /sys, no cgroup) simply does not limit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cpu_threads.h"

#include "backend.h"
#include "vdit.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

/* A quota in CPUs from one cgroup directory; 0 when unlimited or unreadable. */
static double
quota_in_dir (const char *dir, gboolean v2)
{
  char *text = NULL;
  double cpus = 0.0;
  if (v2) {
    char *path = g_build_filename (dir, "cpu.max", NULL);
    if (g_file_get_contents (path, &text, NULL, NULL)) {
      char max[32] = "";
      double period = 0.0;
      if (sscanf (text, "%31s %lf", max, &period) == 2 && strcmp (max, "max") != 0 && period > 0)
        cpus = g_ascii_strtod (max, NULL) / period;
    }
    g_free (path);
  } else {
    char *qpath = g_build_filename (dir, "cpu.cfs_quota_us", NULL);
    char *ppath = g_build_filename (dir, "cpu.cfs_period_us", NULL);
    char *ptext = NULL;
    if (g_file_get_contents (qpath, &text, NULL, NULL) &&
        g_file_get_contents (ppath, &ptext, NULL, NULL)) {
      const double quota = g_ascii_strtod (text, NULL), period = g_ascii_strtod (ptext, NULL);
      if (quota > 0 && period > 0)
        cpus = quota / period;
    }
    g_free (ptext);
    g_free (qpath);
    g_free (ppath);
  }
  g_free (text);
  return cpus > 0 ? cpus : 0.0;
}

/* The mount point of the cgroup hierarchy holding the cpu controller (v1) or of the
 * unified hierarchy (v2), and the hierarchy path mounted there (a container sees only its
 * own subtree), from /proc/self/mountinfo. */
static char *
cgroup_mount (gboolean v2, char **root)
{
  char *text = NULL, *found = NULL;
  if (!g_file_get_contents ("/proc/self/mountinfo", &text, NULL, NULL))
    return NULL;
  char **lines = g_strsplit (text, "\n", -1);
  for (char **l = lines; *l && found == NULL; l++) {
    /* id parent major:minor root mount_point options [optional...] - fstype source super */
    char **f = g_strsplit (*l, " ", -1);
    const guint n = g_strv_length (f);
    guint dash = 6;
    while (dash < n && strcmp (f[dash], "-") != 0)
      dash++;
    if (dash + 3 < n) {
      const char *fstype = f[dash + 1];
      char **opts = g_strsplit (f[dash + 3], ",", -1);
      if ((v2 && strcmp (fstype, "cgroup2") == 0) ||
          (!v2 && strcmp (fstype, "cgroup") == 0 &&
           g_strv_contains ((const char *const *) opts, "cpu"))) {
        found = g_strdup (f[4]);
        *root = g_strdup (f[3]);
      }
      g_strfreev (opts);
    }
    g_strfreev (f);
  }
  g_strfreev (lines);
  g_free (text);
  return found;
}

/* The tightest quota over this process's cgroup and its ancestors, in CPUs; 0 if none. */
static double
cgroup_quota (void)
{
  char *text = NULL;
  double best = 0.0;
  if (!g_file_get_contents ("/proc/self/cgroup", &text, NULL, NULL))
    return 0.0;
  char **lines = g_strsplit (text, "\n", -1);
  for (char **l = lines; *l; l++) {
    /* "id:controllers:path": v2 is "0::path", v1 lists its controllers */
    char **f = g_strsplit (*l, ":", 3);
    if (g_strv_length (f) == 3) {
      char **ctrl = g_strsplit (f[1], ",", -1);
      const gboolean v2 = f[1][0] == '\0' && strcmp (f[0], "0") == 0;
      char *root = NULL;
      char *mount = (v2 || g_strv_contains ((const char *const *) ctrl, "cpu"))
                        ? cgroup_mount (v2, &root) : NULL;
      if (mount) {
        const char *rel = f[2];
        if (strcmp (root, "/") != 0 && g_str_has_prefix (rel, root))
          rel += strlen (root);
        char *top = g_canonicalize_filename (mount, "/");
        char *dir = g_canonicalize_filename (*rel == '/' ? rel + 1 : rel, top);
        while (g_str_has_prefix (dir, top)) {
          const double q = quota_in_dir (dir, v2);
          if (q > 0 && (best == 0 || q < best))
            best = q;
          if (strcmp (dir, top) == 0)
            break;
          char *up = g_path_get_dirname (dir);
          g_free (dir);
          dir = up;
        }
        g_free (dir);
        g_free (top);
      }
      g_free (mount);
      g_free (root);
      g_strfreev (ctrl);
    }
    g_strfreev (f);
  }
  g_strfreev (lines);
  g_free (text);
  return best;
}

/* Physical cores among the CPUs of `set`: CPUs whose core_cpus_list (or, on older
 * kernels, thread_siblings_list) starts with the same CPU share a core. 0 if unknown. */
static int
physical_cores (const cpu_set_t *set)
{
  GHashTable *cores = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gboolean known = TRUE;
  for (int cpu = 0; cpu < CPU_SETSIZE && known; cpu++) {
    if (!CPU_ISSET (cpu, set))
      continue;
    char *text = NULL;
    char *p1 = g_strdup_printf ("/sys/devices/system/cpu/cpu%d/topology/core_cpus_list", cpu);
    char *p2 = g_strdup_printf ("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
    known = g_file_get_contents (p1, &text, NULL, NULL) || g_file_get_contents (p2, &text, NULL, NULL);
    if (known)
      g_hash_table_add (cores, g_strdup (g_strstrip (text)));
    g_free (text);
    g_free (p1);
    g_free (p2);
  }
  const int n = known ? (int) g_hash_table_size (cores) : 0;
  g_hash_table_unref (cores);
  return n;
}

int
vdit_cpu_default_threads (char **why)
{
  int n = (int) g_get_num_processors ();
  GString *s = g_string_new (NULL);
  cpu_set_t set;
  CPU_ZERO (&set);
  int affinity = 0;
  if (sched_getaffinity (0, sizeof set, &set) == 0)
    affinity = CPU_COUNT (&set);
  if (affinity > 0) {
    n = affinity;
    g_string_append_printf (s, "%d CPUs in the affinity mask", affinity);
  } else {
    g_string_append_printf (s, "%d CPUs online", n);
  }
  const int cores = affinity > 0 ? physical_cores (&set) : 0;
  if (cores > 0 && cores < n) {
    n = cores;
    g_string_append_printf (s, ", %d physical cores among them", cores);
  }
  const double quota = cgroup_quota ();
  if (quota > 0) {
    const int q = MAX (1, (int) ceil (quota - 1e-9));
    g_string_append_printf (s, ", a CPU quota of %.2f", quota);
    n = MIN (n, q);
  }
  n = MAX (n, 1);
  if (why)
    *why = g_string_free (s, FALSE);
  else
    g_string_free (s, TRUE);
  return n;
}

gboolean
vdit_cpu_threads_check (int threads, GError **error)
{
  if (threads == 0)
    return TRUE;
  char *why = NULL;
  const int usable = vdit_cpu_default_threads (&why);
  const int most = VDIT_CPU_THREADS_PER_CPU * usable;
  const gboolean ok = threads > 0 && threads <= most;
  if (!ok)
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "threads = %d is out of range: 1 to %d (%d per CPU this process may use: %s), "
                 "or 0 for %d", threads, most, VDIT_CPU_THREADS_PER_CPU, why, usable);
  g_free (why);
  return ok;
}
