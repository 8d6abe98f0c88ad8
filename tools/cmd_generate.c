/* `vdit generate`: a prompt to a y4m clip or a folder of PNG frames. */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "frame_sink.h"
#include "interrupt.h"
#include "progress.h"

#define UNSET G_MININT

typedef struct {
  vdit_frame_sink *sink;
  vdit_progress *progress;
  GError *error; /* the sink's, when it stopped the generation */
} generate_state;

static gboolean
on_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int width, int height,
          int stride)
{
  generate_state *s = user_data;
  if (!vdit_frame_sink_write (s->sink, index, rgb, width, height, stride, &s->error))
    return FALSE;
  return TRUE;
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  generate_state *s = user_data;
  vdit_progress_stage (s->progress, stage, step, steps);
}

static void
on_log (void *user_data, GLogLevelFlags level, const char *message)
{
  gboolean *verbose = user_data;
  if ((level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) || *verbose)
    g_printerr ("vdit: %s\n", message);
}

int
vdit_cmd_generate (int argc, char **argv)
{
  const char *cmd = "vdit generate";
  char *model_dir = NULL, *prompt = NULL, *negative = NULL, *out = NULL;
  char *seed_text = NULL, *device_name = NULL, *attention_name = NULL;
  int frames = UNSET, steps = UNSET, threads = 0, gpus = 1;
  double guidance = -1.0, sparsity = -1.0;
  gboolean quiet = FALSE, verbose = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Model directory", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_FILENAME, &prompt, "What the clip shows", "TEXT" },
    { "negative-prompt", 'n', 0, G_OPTION_ARG_FILENAME, &negative,
      "What to steer away from (guidance)", "TEXT" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &frames, "Number of frames (default: the model's)",
      "N" },
    { "steps", 's', 0, G_OPTION_ARG_INT, &steps, "Sampling steps (default: the model's)", "S" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &guidance,
      "Guidance scale; 1 or less turns guidance off (default: the model's)", "G" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_text, "Noise seed (default 0)", "X" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device_name, "auto, cpu or cuda (default auto)",
      "DEV" },
    { "gpus", 0, 0, G_OPTION_ARG_INT, &gpus, "GPUs for sequence parallelism (default 1)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (default: all cores)", "N" },
    { "attention", 'a', 0, G_OPTION_ARG_STRING, &attention_name,
      "full, tile or adaptive (default: the model's)", "MODE" },
    { "sparsity", 0, 0, G_OPTION_ARG_DOUBLE, &sparsity,
      "Adaptive attention: fraction of blocks skipped, 0 to 1 (default: the model's)", "S" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out,
      "Output: FILE.y4m, - (y4m on stdout), or a folder (ending in '/') of PNG frames",
      "FILE" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress output", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Show the engine's log", NULL },
    { NULL }
  };

  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  vdit_model *model = NULL;
  vdit_ctx *ctx = NULL;
  vdit_frame_sink *sink = NULL;
  GOptionContext *octx = g_option_context_new ("- render a clip from a text prompt");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "The output format follows --out: a name ending in .y4m (or -, standard output)\n"
      "gives a YUV4MPEG2 stream (4:4:4, BT.601); a folder gives frame-0000.png,\n"
      "frame-0001.png, ...\n\n"
      "Example:\n"
      "  vdit generate --model models/tiny --prompt \"a red ball\" --out clip.y4m\n");
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;

  /* Check every argument before the (possibly slow) model load. */
  VditDevice device;
  VditAttention attention;
  uint64_t seed;
  if (argc > 1) {
    status = vdit_cli_usage (cmd, "unexpected argument '%s'", argv[1]);
    goto out;
  }
  if (model_dir == NULL) {
    status = vdit_cli_usage (cmd, "missing --model DIR");
    goto out;
  }
  if (prompt == NULL) {
    status = vdit_cli_usage (cmd, "missing --prompt TEXT");
    goto out;
  }
  if (out == NULL) {
    status = vdit_cli_usage (cmd, "missing --out FILE");
    goto out;
  }
  if (frames != UNSET && frames < 1) {
    status = vdit_cli_usage (cmd, "--frames must be at least 1, not %d", frames);
    goto out;
  }
  if (steps != UNSET && steps < 1) {
    status = vdit_cli_usage (cmd, "--steps must be at least 1, not %d", steps);
    goto out;
  }
  if (gpus < 1 || threads < 0) {
    status = vdit_cli_usage (cmd, "--gpus must be at least 1 and --threads not negative");
    goto out;
  }
  if (sparsity != -1.0 && !(sparsity >= 0.0 && sparsity < 1.0)) {
    status = vdit_cli_usage (cmd, "--sparsity must be in [0, 1), not %g", sparsity);
    goto out;
  }
  if (!vdit_cli_check_utf8 ("--prompt", prompt, &error) ||
      !vdit_cli_check_utf8 ("--negative-prompt", negative, &error) ||
      !vdit_cli_parse_seed (seed_text, &seed, &error) ||
      !vdit_cli_parse_device (device_name, &device, &error) ||
      !vdit_cli_parse_attention (attention_name, &attention, &error)) {
    status = vdit_cli_usage (cmd, "%s", error->message);
    g_clear_error (&error);
    goto out;
  }
  char *stripped = g_strstrip (g_strdup (prompt));
  gboolean empty = stripped[0] == '\0';
  g_free (stripped);
  if (empty) {
    status = vdit_cli_usage (cmd, "the prompt is empty");
    goto out;
  }

  model = vdit_model_load (model_dir, &error);
  if (model == NULL)
    goto fail;
  const vdit_model_info *info = vdit_model_get_info (model);
  if (frames == UNSET)
    frames = info->frames;
  if (!vdit_model_check_frames (model, frames, &error))
    goto fail;

  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  cp.gpus = gpus;
  cp.threads = threads;
  cp.log = on_log;
  cp.log_user_data = &verbose;
  ctx = vdit_ctx_new (model, &cp, &error);
  if (ctx == NULL)
    goto fail;

  sink = vdit_frame_sink_open (out, info->width, info->height, info->fps, &error);
  if (sink == NULL)
    goto fail;

  gboolean tty = isatty (STDERR_FILENO);
  generate_state state = { sink, vdit_progress_new (tty, quiet), NULL };
  vdit_gen_params gp;
  vdit_gen_params_init (&gp);
  gp.prompt = prompt;
  gp.negative_prompt = negative;
  gp.frames = frames;
  gp.steps = steps == UNSET ? 0 : steps;
  gp.guidance = (float) guidance;
  gp.seed = seed;
  gp.attention = attention;
  gp.sparsity = (float) sparsity;
  gp.progress = on_progress;
  gp.on_frame = on_frame;
  gp.user_data = &state;

  if (!quiet)
    g_printerr ("vdit: %s on %s, %d frames %dx%d, seed %" G_GUINT64_FORMAT "\n",
                info->name, vdit_ctx_get_device_name (ctx), frames, info->width,
                info->height, seed);
  gint64 start = g_get_monotonic_time ();
  if (!vdit_interrupt_watch (ctx, &error)) {
    vdit_progress_free (state.progress);
    goto fail;
  }
  gboolean ok = vdit_generate (ctx, &gp, &error);
  gboolean interrupted = vdit_interrupt_unwatch ();
  vdit_progress_free (state.progress);
  double seconds = (g_get_monotonic_time () - start) / 1e6;

  if (ok && vdit_frame_sink_count (sink) != frames) {
    g_set_error (&error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "the engine delivered %d frames, %d were asked for",
                 vdit_frame_sink_count (sink), frames);
    ok = FALSE;
  }
  if (!ok && state.error != NULL) {
    /* The sink stopped the run: its error is the cause, not the cancellation. */
    g_clear_error (&error);
    error = g_steal_pointer (&state.error);
  }
  g_clear_error (&state.error);
  int written = vdit_frame_sink_count (sink);
  gboolean closed = vdit_frame_sink_close (sink, ok, ok ? &error : NULL);
  sink = NULL;
  if (!ok || !closed) {
    if (interrupted && g_error_matches (error, VDIT_ERROR, VDIT_ERROR_CANCELLED)) {
      g_printerr ("vdit: interrupted after %d frame%s\n", written, written == 1 ? "" : "s");
      g_clear_error (&error);
      status = VDIT_EXIT_INTERRUPTED;
      goto out;
    }
    goto fail;
  }
  if (!quiet)
    g_printerr ("vdit: wrote %d frames to %s in %.1f s\n", written,
                g_str_equal (out, "-") ? "standard output" : out, seconds);
  goto out;

fail:
  status = vdit_cli_fail (error);
out:
  if (sink != NULL)
    vdit_frame_sink_close (sink, FALSE, NULL);
  if (ctx != NULL)
    vdit_ctx_free (ctx);
  if (model != NULL)
    vdit_model_free (model);
  g_option_context_free (octx);
  g_free (model_dir);
  g_free (prompt);
  g_free (negative);
  g_free (out);
  g_free (seed_text);
  g_free (device_name);
  g_free (attention_name);
  return status;
}
