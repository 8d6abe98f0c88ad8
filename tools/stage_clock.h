/* `vdit generate --stats FILE`: when each stage of a generation began, how long each
 * denoising step took, the first frame, and the backend's memory high-water mark,
 * written as one JSON line. */
#ifndef VDIT_TOOLS_STAGE_CLOCK_H
#define VDIT_TOOLS_STAGE_CLOCK_H

#include <glib.h>

#include "json_writer.h"
#include "vdit.h"

G_BEGIN_DECLS

typedef struct {
  gint64 start;             /* before the model loads (monotonic µs) */
  gint64 ready;             /* model and context made */
  gint64 stage[3];          /* first report of each VditStage, 0 = none */
  gint64 first_frame, end;  /* 0 = none */
  gint64 *step_at;          /* the first generation's denoising reports 0..steps, 0 = none */
  int n_step_at;
} vdit_stage_clock;

void vdit_stage_clock_start (vdit_stage_clock *c);
void vdit_stage_clock_ready (vdit_stage_clock *c);
/* A progress report (the engine's: each stage's first is its start, a denoising step's
 * after the step, whose end the backend has seen: its latent is checked on the host). */
void vdit_stage_clock_report (vdit_stage_clock *c, VditStage stage, int step, int steps);
void vdit_stage_clock_frame (vdit_stage_clock *c);
void vdit_stage_clock_end (vdit_stage_clock *c);
void vdit_stage_clock_clear (vdit_stage_clock *c);

/* What was run, for the line. */
typedef struct {
  const char *model, *device, *attention;
  int frames, width, height, steps;
  double guidance;
  double sparsity;          /* --sparsity as given; < 0: not given (the model's) */
  gboolean have_peak;
  size_t peak_bytes;
} vdit_stage_clock_run;

/* The stage times as fields of the object j is writing: text_ms, denoise_ms, decode_ms;
 * and step_ms, the first generation's steps. */
void vdit_stage_clock_stages (vdit_json *j, const vdit_stage_clock *c);
void vdit_stage_clock_step_times (vdit_json *j, const vdit_stage_clock *c);

/* Appends the line to path ("-": standard error). */
gboolean vdit_stage_clock_write (const vdit_stage_clock *c, const vdit_stage_clock_run *run,
                                 const char *path, GError **error);

G_END_DECLS

#endif
