/* The CPU backend's default thread count (cpu_threads.c). */
#ifndef VDIT_CPU_THREADS_H
#define VDIT_CPU_THREADS_H

#include <glib.h>

G_BEGIN_DECLS

/* The CPUs this process may use: affinity mask, CPU quota of its cgroup (v1 or v2) and
 * physical cores, whichever is smallest; at least 1. *why (free with g_free; may be NULL)
 * says what limited it, e.g. "8 CPUs in the affinity mask, 4 physical cores among them". */
int vdit_cpu_default_threads (char **why);

/* More threads than this per usable CPU are refused: they only add contention. */
#define VDIT_CPU_THREADS_PER_CPU 4

G_END_DECLS

#endif
