/* Scratch memory the CPU kernels reuse from call to call, so a DiT step allocates
 * nothing once the first step has sized it. */
#ifndef VDIT_CPU_SCRATCH_H
#define VDIT_CPU_SCRATCH_H

#include <stddef.h>

typedef struct {
  void *p;
  size_t bytes;
} cpu_scratch;

/* At least `bytes` bytes, 64-byte aligned, kept for the next call; grows (contents
 * lost) when a call needs more. Aborts like g_malloc when memory runs out. */
void *cpu_scratch_get (cpu_scratch *s, size_t bytes);
void cpu_scratch_free (cpu_scratch *s);

#endif
