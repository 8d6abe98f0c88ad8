/* Progress display for `vdit generate`. */
#include "progress.h"

#include <stdio.h>

#define BAR_WIDTH 30

struct vdit_progress {
  gboolean tty, quiet;
  gboolean line_open;   /* a bar is drawn without its newline yet */
  int last_stage;       /* for plain output: print each stage's start once */
  gint64 stage_start;   /* monotonic µs */
};

static const char *
stage_name (VditStage stage)
{
  switch (stage) {
  case VDIT_STAGE_ENCODE_TEXT: return "encoding text";
  case VDIT_STAGE_DENOISE: return "denoising";
  case VDIT_STAGE_DECODE: return "decoding";
  }
  return "working";
}

vdit_progress *
vdit_progress_new (gboolean tty, gboolean quiet)
{
  vdit_progress *p = g_new0 (vdit_progress, 1);
  p->tty = tty;
  p->quiet = quiet;
  p->last_stage = -1;
  return p;
}

static void
draw_bar (vdit_progress *p, const char *label, int done, int total)
{
  double fraction = total > 0 ? CLAMP ((double) done / total, 0.0, 1.0) : 0.0;
  int filled = (int) (fraction * BAR_WIDTH + 0.5);
  char bar[BAR_WIDTH + 1];
  for (int i = 0; i < BAR_WIDTH; i++)
    bar[i] = i < filled ? '#' : '.';
  bar[BAR_WIDTH] = '\0';
  double seconds = (g_get_monotonic_time () - p->stage_start) / 1e6;
  /* \r and erase-to-end redraw the same line. */
  fprintf (stderr, "\r\033[K%-13s [%s] %d/%d  %.1f s", label, bar, done, total, seconds);
  if (done > 0 && done < total)
    fprintf (stderr, ", %.0f s left", seconds / done * (total - done));
  fflush (stderr);
  p->line_open = TRUE;
}

void
vdit_progress_stage (vdit_progress *p, VditStage stage, int step, int steps)
{
  if (p->quiet)
    return;
  gboolean new_stage = (int) stage != p->last_stage;
  if (new_stage) {
    p->stage_start = g_get_monotonic_time ();
    if (p->tty && p->line_open) {
      fputc ('\n', stderr);
      p->line_open = FALSE;
    }
    p->last_stage = stage;
  }
  if (p->tty) {
    draw_bar (p, stage_name (stage), step, steps);
  } else if ((stage == VDIT_STAGE_DENOISE && step > 0) || new_stage) {
    /* Plain lines: every denoising step, and the start of other stages. */
    if (stage == VDIT_STAGE_DENOISE && step > 0)
      fprintf (stderr, "vdit: %s step %d/%d\n", stage_name (stage), step, steps);
    else
      fprintf (stderr, "vdit: %s\n", stage_name (stage));
  }
}

void
vdit_progress_free (vdit_progress *p)
{
  if (p->line_open)
    fputc ('\n', stderr);
  g_free (p);
}
