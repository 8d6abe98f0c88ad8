/* Stage times of one `vdit generate` (stage_clock.h). */
#include "stage_clock.h"

#include <errno.h>
#include <stdio.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "json_writer.h"

void
vdit_stage_clock_start (vdit_stage_clock *c)
{
  *c = (vdit_stage_clock) { .start = g_get_monotonic_time () };
}

void
vdit_stage_clock_ready (vdit_stage_clock *c)
{
  c->ready = g_get_monotonic_time ();
}

void
vdit_stage_clock_report (vdit_stage_clock *c, VditStage stage, int step, int steps)
{
  const gint64 now = g_get_monotonic_time ();
  if ((int) stage >= 0 && (int) stage < (int) G_N_ELEMENTS (c->stage) && c->stage[stage] == 0)
    c->stage[stage] = now;
  if (stage != VDIT_STAGE_DENOISE || steps <= 0 || step < 0 || step > steps)
    return;
  if (c->step_at == NULL && step == 0) {
    c->step_at = g_new0 (gint64, steps + 1);
    c->n_step_at = steps + 1;
  }
  /* later generations (a prompt file) keep the first one's */
  if (c->step_at != NULL && c->n_step_at == steps + 1 && c->step_at[step] == 0)
    c->step_at[step] = now;
}

void
vdit_stage_clock_frame (vdit_stage_clock *c)
{
  if (c->first_frame == 0)
    c->first_frame = g_get_monotonic_time ();
}

void
vdit_stage_clock_end (vdit_stage_clock *c)
{
  c->end = g_get_monotonic_time ();
}

void
vdit_stage_clock_clear (vdit_stage_clock *c)
{
  g_clear_pointer (&c->step_at, g_free);
  c->n_step_at = 0;
}

/* Each denoising step's milliseconds, when every report of the first generation came. */
void
vdit_stage_clock_step_times (vdit_json *j, const vdit_stage_clock *c)
{
  for (int i = 0; i < c->n_step_at; i++)
    if (c->step_at[i] == 0)
      return;
  if (c->n_step_at < 2)
    return;
  vdit_json_begin_array (j, "step_ms");
  for (int i = 1; i < c->n_step_at; i++)
    vdit_json_double (j, NULL, (double) ((c->step_at[i] - c->step_at[i - 1]) / 100) / 10.0);
  vdit_json_end_array (j);
}

/* Milliseconds from a to b, or nothing when either was never seen. */
static void
span (vdit_json *j, const char *key, gint64 a, gint64 b)
{
  if (a != 0 && b != 0 && b >= a)
    vdit_json_double (j, key, (double) ((b - a) / 100) / 10.0);
}

void
vdit_stage_clock_stages (vdit_json *j, const vdit_stage_clock *c)
{
  const gint64 text = c->stage[VDIT_STAGE_ENCODE_TEXT], denoise = c->stage[VDIT_STAGE_DENOISE],
               decode = c->stage[VDIT_STAGE_DECODE];
  /* a stage lasts until the next one begins; the text stage may be skipped (cached) */
  span (j, "text_ms", text, denoise);
  span (j, "denoise_ms", denoise, decode);
  span (j, "decode_ms", decode, c->end);
}

gboolean
vdit_stage_clock_write (const vdit_stage_clock *c, const vdit_stage_clock_run *run,
                        const char *path, GError **error)
{
  vdit_json j;
  vdit_json_init (&j);
  vdit_json_begin_object (&j, NULL);
  vdit_json_string (&j, "bench", "generate");
  vdit_json_string (&j, "model", run->model);
  vdit_json_string (&j, "device", run->device);
  vdit_json_string (&j, "attention", run->attention);
  vdit_json_int (&j, "frames", run->frames);
  vdit_json_int (&j, "width", run->width);
  vdit_json_int (&j, "height", run->height);
  vdit_json_int (&j, "steps", run->steps);
  vdit_json_double (&j, "guidance", run->guidance);
  if (run->sparsity >= 0.0)
    vdit_json_double (&j, "sparsity", run->sparsity);
  span (&j, "load_ms", c->start, c->ready);
  vdit_stage_clock_stages (&j, c);
  span (&j, "first_frame_ms", c->ready, c->first_frame);
  span (&j, "run_ms", c->ready, c->end);
  span (&j, "total_ms", c->start, c->end);
  vdit_stage_clock_step_times (&j, c);
  if (run->have_peak)
    vdit_json_double (&j, "peak_gib", (double) (run->peak_bytes >> 20) / 1024.0);
  vdit_json_end_object (&j);

  const gboolean to_stderr = g_str_equal (path, "-");
  FILE *f = to_stderr ? stderr : g_fopen (path, "a");
  if (f == NULL) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 "cannot open stats file '%s': %s", path, g_strerror (saved));
    g_string_free (j.text, TRUE);
    return FALSE;
  }
  fprintf (f, "%s\n", j.text->str);
  g_string_free (j.text, TRUE);
  if (!to_stderr && fclose (f) != 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 "cannot write stats file '%s': %s", path, g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}
