/* The signal handler only does what is async-signal-safe: it writes one byte to a
 * pipe. A watcher thread blocked on the pipe makes the actual vdit_cancel call, so
 * nothing here depends on how the engine implements cancellation. */
#include "interrupt.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <gio/gio.h>

static int wake_pipe[2] = { -1, -1 };
static volatile sig_atomic_t signalled;
static struct sigaction old_int, old_term;
static GThread *watcher;

static void
on_signal (int signo)
{
  int saved = errno;
  signalled = 1;
  char byte = (char) signo;
  if (write (wake_pipe[1], &byte, 1) < 0) {
    /* Nothing safe to do here; the second signal still kills the process. */
  }
  /* The next Ctrl-C is not caught: it ends the process at once. */
  struct sigaction dfl = { 0 };
  dfl.sa_handler = SIG_DFL;
  sigemptyset (&dfl.sa_mask);
  sigaction (signo, &dfl, NULL);
  errno = saved;
}

static gpointer
watch_pipe (gpointer data)
{
  vdit_ctx *ctx = data;
  char byte;
  for (;;) {
    ssize_t n = read (wake_pipe[0], &byte, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 || byte == 0)
      return NULL; /* byte 0: unwatch asked us to stop */
    g_printerr ("\nvdit: interrupted, stopping (press Ctrl-C again to kill)\n");
    vdit_cancel (ctx);
  }
}

gboolean
vdit_interrupt_watch (vdit_ctx *ctx, GError **error)
{
  if (pipe (wake_pipe) != 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create a pipe: %s",
                 g_strerror (saved));
    return FALSE;
  }
  signalled = 0;
  watcher = g_thread_new ("vdit-interrupt", watch_pipe, ctx);

  struct sigaction sa = { 0 };
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction (SIGINT, &sa, &old_int);
  sigaction (SIGTERM, &sa, &old_term);
  return TRUE;
}

gboolean
vdit_interrupt_unwatch (void)
{
  if (watcher == NULL)
    return FALSE;
  sigaction (SIGINT, &old_int, NULL);
  sigaction (SIGTERM, &old_term, NULL);
  char stop = 0;
  while (write (wake_pipe[1], &stop, 1) < 0 && errno == EINTR)
    ;
  g_thread_join (watcher);
  watcher = NULL;
  close (wake_pipe[0]);
  close (wake_pipe[1]);
  wake_pipe[0] = wake_pipe[1] = -1;
  return signalled != 0;
}
