/* Reusable scratch buffers of the CPU backend. */
#include "cpu_scratch.h"

#include <glib.h>
#include <stdlib.h>

void *
cpu_scratch_get (cpu_scratch *s, size_t bytes)
{
  if (bytes <= s->bytes && s->p)
    return s->p;
  free (s->p);
  s->p = NULL;
  s->bytes = 0;
  /* round up so that slightly larger later calls do not reallocate */
  const size_t want = (bytes + bytes / 4 + 63) / 64 * 64;
  if (posix_memalign (&s->p, 64, want ? want : 64) != 0)
    g_error ("out of host memory allocating %.1f MiB of CPU scratch", want / 1048576.0);
  s->bytes = want;
  return s->p;
}

void
cpu_scratch_free (cpu_scratch *s)
{
  free (s->p);
  s->p = NULL;
  s->bytes = 0;
}
