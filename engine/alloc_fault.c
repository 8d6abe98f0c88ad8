/* Fault injection for tests: one backend allocation made to fail, as running out of
 * memory would, so that every error path of a generation can be walked without a full
 * device or host. Process-wide, so a test reaches contexts it cannot see (an element's). */
#include "backend.h"

static gint countdown; /* atomic: allocations left until the one that fails; 0 = off */

int
vdit_fault_alloc_fail_in (int n)
{
  return g_atomic_int_exchange (&countdown, MAX (n, 0));
}

gboolean
vdit_fault_alloc_now (void)
{
  int left;
  do {
    left = g_atomic_int_get (&countdown);
    if (left <= 0)
      return FALSE;
  } while (!g_atomic_int_compare_and_exchange (&countdown, left, left - 1));
  return left == 1;
}
