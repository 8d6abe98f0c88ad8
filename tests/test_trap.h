/* Hostile input may crash or hang a loader: such tests run in a subprocess with a time
 * limit, so that a failure is reported as one and the other tests still run. */
#ifndef VDIT_TEST_TRAP_H
#define VDIT_TEST_TRAP_H

#include <glib.h>

/* TRUE in the subprocess, which runs the test's body; the parent waits for it to pass. */
static inline gboolean
run_in_subprocess (void)
{
  if (g_test_subprocess ())
    return TRUE;
  g_test_trap_subprocess (NULL, 20 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
  return FALSE;
}

#endif
