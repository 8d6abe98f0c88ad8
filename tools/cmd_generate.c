/* `vdit generate`: a prompt to a y4m clip or a folder of PNG frames. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "cli.h"
#include "cli_parallel.h"
#include "commands.h"
#include "ctx.h"
#include "frame_sink.h"
#include "interrupt.h"
#include "progress.h"
#include "stage_clock.h"

#define COMMAND "vdit generate"
/* A prompt file is text; this only stops `--prompt-file /dev/zero` from eating memory. */
#define MAX_PROMPT_FILE (16 << 20)

/* The command line, as parsed; strings owned. */
typedef struct {
  char *model_dir, *prompt, *prompt_file, *negative, *out;
  char *seed_text, *device_name, *attention_name, *stats;
  int frames, steps, threads, gpus;
  double guidance, sparsity;
  gboolean quiet, verbose;
  /* derived */
  VditDevice device;
  VditAttention attention;
  uint64_t seed;
} generate_options;

typedef struct {
  vdit_frame_sink *sink;
  vdit_progress *progress;
  vdit_stage_clock *clock;
  GError *error; /* the sink's, when it stopped the generation */
} generate_state;

static gboolean
on_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int width, int height,
          int stride)
{
  generate_state *s = user_data;
  vdit_stage_clock_frame (s->clock);
  return vdit_frame_sink_write (s->sink, index, rgb, width, height, stride, &s->error);
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  generate_state *s = user_data;
  vdit_stage_clock_report (s->clock, stage, step, steps);
  vdit_progress_stage (s->progress, stage, step, steps);
}

static void
on_log (void *user_data, GLogLevelFlags level, const char *message)
{
  const generate_options *o = user_data;
  if ((level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) ||
      o->verbose)
    g_printerr ("vdit: %s\n", message);
}

static void
options_clear (generate_options *o)
{
  g_free (o->model_dir);
  g_free (o->prompt);
  g_free (o->prompt_file);
  g_free (o->negative);
  g_free (o->out);
  g_free (o->seed_text);
  g_free (o->device_name);
  g_free (o->attention_name);
  g_free (o->stats);
}

/* The prompt from a file ("-": standard input), as given with --prompt: UTF-8 text
 * without a byte-order mark or final line ends. Errors name the file. */
static char *
read_prompt_file (const char *path, GError **error)
{
  gboolean is_stdin = g_str_equal (path, "-");
  const char *name = is_stdin ? "standard input" : path;
  FILE *file = is_stdin ? stdin : g_fopen (path, "rb");
  if (file == NULL) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 "cannot open prompt file '%s': %s", name, g_strerror (saved));
    return NULL;
  }
  GString *text = g_string_new (NULL);
  char buffer[65536];
  size_t n;
  while (text->len <= MAX_PROMPT_FILE && (n = fread (buffer, 1, sizeof buffer, file)) > 0)
    g_string_append_len (text, buffer, n);
  int saved = ferror (file) ? errno : 0;
  if (!is_stdin)
    fclose (file);

  gboolean text_ok = saved == 0 && text->len <= MAX_PROMPT_FILE &&
                     memchr (text->str, '\0', text->len) == NULL &&
                     g_utf8_validate_len (text->str, text->len, NULL);
  if (text_ok) {
    if (g_str_has_prefix (text->str, "\xEF\xBB\xBF"))
      g_string_erase (text, 0, 3);
    while (text->len > 0 && strchr ("\r\n", text->str[text->len - 1]) != NULL)
      g_string_truncate (text, text->len - 1);
  }

  if (saved != 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 "cannot read prompt file '%s': %s", name, g_strerror (saved));
  else if (text->len > MAX_PROMPT_FILE)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "prompt file '%s' is larger than %d MiB", name, MAX_PROMPT_FILE >> 20);
  else if (!text_ok && memchr (text->str, '\0', text->len) != NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "prompt file '%s' contains a NUL byte (is it a text file?)", name);
  else if (!text_ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "prompt file '%s' is not valid UTF-8 text", name);
  else if (vdit_cli_is_blank (text->str))
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "prompt file '%s' is empty",
                 name);
  else
    return g_string_free (text, FALSE);
  g_string_free (text, TRUE);
  return NULL;
}

/* Parses and checks every argument before the (possibly slow) model load. Returns
 * VDIT_EXIT_OK, or the exit status after printing the problem. */
static int
parse_options (int argc, char **argv, generate_options *o)
{
  *o = (generate_options) { .frames = VDIT_CLI_UNSET, .steps = VDIT_CLI_UNSET, .gpus = 1,
                            .guidance = VDIT_CLI_UNSET_GUIDANCE, .sparsity = -1.0 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o->model_dir, "Model directory", "DIR" },
    /* FILENAME: raw bytes, not converted from the locale (which may be "C"). */
    { "prompt", 'p', 0, G_OPTION_ARG_FILENAME, &o->prompt, "What the clip shows", "TEXT" },
    { "prompt-file", 0, 0, G_OPTION_ARG_FILENAME, &o->prompt_file,
      "Read the prompt from FILE (UTF-8 text; - for standard input) instead of --prompt",
      "FILE" },
    { "negative-prompt", 'n', 0, G_OPTION_ARG_FILENAME, &o->negative,
      "What to steer away from (guidance)", "TEXT" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &o->frames,
      "Number of frames (default: the model's)", "N" },
    { "steps", 's', 0, G_OPTION_ARG_INT, &o->steps,
      "Sampling steps, 1 to 10000 (default: the model's)", "S" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &o->guidance,
      "Guidance scale, 0 to 100; 1 or less turns guidance off (default: the model's)",
      "G" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &o->seed_text, "Noise seed (default 0)", "X" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &o->device_name,
      "auto, cpu or cuda (default auto)", "DEV" },
    { "gpus", 0, 0, G_OPTION_ARG_INT, &o->gpus, "GPUs for sequence parallelism (default 1)",
      "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &o->threads, "CPU threads (default: the CPUs this process may use)",
      "N" },
    { "attention", 'a', 0, G_OPTION_ARG_STRING, &o->attention_name,
      "full, tile or adaptive (default: the model's)", "MODE" },
    { "sparsity", 0, 0, G_OPTION_ARG_DOUBLE, &o->sparsity,
      "Adaptive attention: fraction of blocks skipped, 0 to 1 (default: the model's)", "S" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &o->out,
      "Output: FILE.y4m, - (y4m on stdout), or a folder (ending in '/') of PNG frames",
      "FILE" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "No progress output", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &o->verbose, "Show the engine's log", NULL },
    { "stats", 0, 0, G_OPTION_ARG_FILENAME, &o->stats,
      "Append one JSON line to FILE (- for standard error): load, text, denoising and "
      "decoding times, each denoising step's time, the first frame, the device memory "
      "high-water mark", "FILE" },
    { NULL }
  };
  GOptionContext *octx = g_option_context_new ("- render a clip from a text prompt");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "The output format follows --out: a name ending in .y4m (or -, standard output)\n"
      "gives a YUV4MPEG2 stream (4:4:4, BT.601); a folder gives frame-0000.png,\n"
      "frame-0001.png, ...\n\n"
      "An existing output is replaced only when the run ends: by the finished clip, or,\n"
      "after Ctrl-C, by the frames made so far. A run that fails leaves it as it was.\n\n"
      "The prompt is --prompt TEXT or, for text longer than a command-line argument\n"
      "may be, --prompt-file FILE; a final line end in the file is ignored.\n\n"
      "Example:\n"
      "  vdit generate --model models/tiny --prompt \"a red ball\" --out clip.y4m\n"
      "  vdit generate --model models/tiny --prompt-file story.txt --out frames/\n");
  int status = VDIT_EXIT_OK;
  gboolean parsed = vdit_cli_parse (octx, COMMAND, &argc, &argv, &status);
  g_option_context_free (octx);
  if (!parsed)
    return status;

  GError *error = NULL;
  if (argc > 1)
    return vdit_cli_usage (COMMAND, "unexpected argument '%s'", argv[1]);
  if (o->model_dir == NULL)
    return vdit_cli_usage (COMMAND, "missing --model DIR");
  if (o->prompt == NULL && o->prompt_file == NULL)
    return vdit_cli_usage (COMMAND, "missing --prompt TEXT or --prompt-file FILE");
  if (o->prompt != NULL && o->prompt_file != NULL)
    return vdit_cli_usage (COMMAND, "give either --prompt or --prompt-file, not both");
  if (o->out == NULL)
    return vdit_cli_usage (COMMAND, "missing --out FILE");
  if (o->prompt != NULL && vdit_cli_is_blank (o->prompt))
    return vdit_cli_usage (COMMAND, "the prompt is empty");
  status = vdit_cli_check_clip_options (COMMAND, o->frames, o->steps, o->guidance);
  if (status != VDIT_EXIT_OK)
    return status;
  if (o->gpus < 1 || o->threads < 0)
    return vdit_cli_usage (COMMAND, "--gpus must be at least 1 and --threads not negative");
  if (o->sparsity != -1.0 && !(o->sparsity >= 0.0 && o->sparsity < 1.0))
    return vdit_cli_usage (COMMAND, "--sparsity must be in [0, 1), not %g", o->sparsity);
  if (!vdit_cli_check_utf8 ("--prompt", o->prompt, &error) ||
      !vdit_cli_check_utf8 ("--negative-prompt", o->negative, &error) ||
      !vdit_cli_parse_seed (o->seed_text, &o->seed, &error) ||
      !vdit_cli_parse_device (o->device_name, &o->device, &error) ||
      !vdit_cli_parse_attention (o->attention_name, &o->attention, &error) ||
      !vdit_frame_sink_check (o->out, &error)) {
    status = vdit_cli_usage (COMMAND, "%s", error->message);
    g_error_free (error);
    return status;
  }
  /* The stats file is opened for appending now, so a bad path fails before the work. */
  if (o->stats != NULL && !g_str_equal (o->stats, "-")) {
    FILE *f = g_fopen (o->stats, "a");
    if (f == NULL) {
      int saved = errno;
      return vdit_cli_usage (COMMAND, "cannot open stats file '%s': %s", o->stats,
                             g_strerror (saved));
    }
    fclose (f);
  }
  /* Last: standard input may block, and should not be read for a bad command line. */
  if (o->prompt_file != NULL) {
    o->prompt = read_prompt_file (o->prompt_file, &error);
    if (o->prompt == NULL)
      return vdit_cli_fail (error);
  }
  return VDIT_EXIT_OK;
}

/* The model's own defaults must be in range too (a config.json can say anything the
 * loader accepts); vdit_generate would reject them only after the output was made. */
static gboolean
check_model_defaults (const vdit_model_info *info, const generate_options *o,
                      GError **error)
{
  if (o->steps == VDIT_CLI_UNSET && (info->steps < 1 || info->steps > VDIT_CLI_MAX_STEPS)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                 "%s/config.json: sampler.steps = %d is out of range (1..%d); pass --steps",
                 info->path, info->steps, VDIT_CLI_MAX_STEPS);
    return FALSE;
  }
  if (o->guidance == VDIT_CLI_UNSET_GUIDANCE &&
      !(info->guidance >= 0.0f && info->guidance <= VDIT_CLI_MAX_GUIDANCE)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                 "%s/config.json: sampler.guidance = %g is out of range (0..%g); pass "
                 "--guidance", info->path, info->guidance, VDIT_CLI_MAX_GUIDANCE);
    return FALSE;
  }
  return TRUE;
}

/* Runs the generation into sink with Ctrl-C watched. On failure *error explains it; the
 * sink's own error wins over the cancellation it caused. */
static gboolean
run (vdit_ctx *ctx, const generate_options *o, int frames, vdit_frame_sink *sink,
     vdit_stage_clock *clock, gboolean *interrupted, GError **error)
{
  generate_state state = { sink, vdit_progress_new (isatty (STDERR_FILENO), o->quiet), clock,
                           NULL };
  vdit_gen_params gp;
  vdit_gen_params_init (&gp);
  gp.prompt = o->prompt;
  gp.negative_prompt = o->negative;
  gp.frames = frames;
  gp.steps = o->steps == VDIT_CLI_UNSET ? 0 : o->steps;
  gp.guidance = o->guidance == VDIT_CLI_UNSET_GUIDANCE ? -1.0f : (float) o->guidance;
  gp.seed = o->seed;
  gp.attention = o->attention;
  gp.sparsity = (float) o->sparsity;
  gp.progress = on_progress;
  gp.on_frame = on_frame;
  gp.user_data = &state;

  gboolean ok = vdit_interrupt_watch (ctx, error);
  if (ok) {
    ok = vdit_generate (ctx, &gp, error);
    *interrupted = vdit_interrupt_unwatch ();
  }
  vdit_progress_free (state.progress);
  if (!ok && state.error != NULL) {
    g_clear_error (error);
    g_propagate_error (error, g_steal_pointer (&state.error));
  }
  g_clear_error (&state.error);
  if (ok && vdit_frame_sink_count (sink) != frames) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "the engine delivered %d frames, %d were asked for",
                 vdit_frame_sink_count (sink), frames);
    ok = FALSE;
  }
  return ok;
}

static int
generate (int argc, char **argv, const vdit_comm *comm)
{
  generate_options o;
  int status = parse_options (argc, argv, &o);
  if (status != VDIT_EXIT_OK) {
    options_clear (&o);
    return status;
  }

  GError *error = NULL;
  vdit_ctx *ctx = NULL;
  vdit_frame_sink *sink = NULL;
  vdit_stage_clock clock;
  vdit_stage_clock_start (&clock);
  vdit_model *model = vdit_model_load (o.model_dir, &error);
  if (model == NULL)
    goto fail;
  const vdit_model_info *info = vdit_model_get_info (model);
  int frames = o.frames == VDIT_CLI_UNSET ? info->frames : o.frames;
  if (!vdit_model_check_frames (model, frames, &error) ||
      !check_model_defaults (info, &o, &error))
    goto fail;

  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = o.device;
  cp.device_id = vdit_cli_rank_device (o.device); /* one GPU per rank under mpirun */
  cp.gpus = o.gpus;
  cp.threads = o.threads;
  cp.log = on_log;
  cp.log_user_data = &o;
  ctx = vdit_ctx_new (model, &cp, &error);
  if (ctx == NULL || !vdit_ctx_set_comm (ctx, comm, &error))
    goto fail;
  /* Opened before the work, so a bad path fails at once; the output itself is replaced
   * only at the end. */
  sink = vdit_frame_sink_open (o.out, info->width, info->height, info->fps, &error);
  if (sink == NULL)
    goto fail;

  if (!o.quiet)
    g_printerr ("vdit: %s on %s%s, %d frames %dx%d, seed %" G_GUINT64_FORMAT "\n", info->name,
                vdit_ctx_get_device_name (ctx),
                vdit_comm_size (comm) > 1 ? " over the job's ranks" : "", frames, info->width,
                info->height, o.seed);
  const vdit_backend *be = vdit_ctx_get_backend (ctx);
  size_t peak = 0;
  if (be->iface->mem_peak) /* the run's high-water mark; the weights in use count */
    be->iface->mem_peak (be->context, TRUE, &peak);
  gint64 start = g_get_monotonic_time ();
  vdit_stage_clock_ready (&clock);
  gboolean interrupted = FALSE;
  gboolean ok = run (ctx, &o, frames, sink, &clock, &interrupted, &error);
  vdit_stage_clock_end (&clock);
  int written = vdit_frame_sink_count (sink);
  gboolean stopped =
      !ok && interrupted && g_error_matches (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  /* The output is replaced by a finished clip, or by the frames of an interrupted run
   * (the documented Ctrl-C behaviour); after any other failure it stays as it was. */
  if (stopped)
    g_clear_error (&error);
  gboolean commit = ok || (stopped && written > 0);
  ok = vdit_frame_sink_close (sink, commit, commit ? &error : NULL) && ok;
  sink = NULL;
  if (stopped && error == NULL) {
    g_printerr ("vdit: interrupted after %d frame%s\n", written, written == 1 ? "" : "s");
    status = VDIT_EXIT_INTERRUPTED;
    goto out;
  }
  if (!ok)
    goto fail;
  if (o.stats != NULL) {
    vdit_stage_clock_run r = {
      info->name, vdit_ctx_get_device_name (ctx),
      o.attention_name ? o.attention_name : vdit_attention_name (info->attention), frames,
      info->width, info->height, o.steps == VDIT_CLI_UNSET ? info->steps : o.steps,
      o.guidance == VDIT_CLI_UNSET_GUIDANCE ? info->guidance : o.guidance, o.sparsity,
      be->iface->mem_peak != NULL && be->iface->mem_peak (be->context, FALSE, &peak), peak };
    if (!vdit_stage_clock_write (&clock, &r, o.stats, &error))
      goto fail;
  }
  if (!o.quiet)
    g_printerr ("vdit: wrote %d frames to %s in %.2f s\n", written,
                g_str_equal (o.out, "-") ? "standard output" : o.out,
                (g_get_monotonic_time () - start) / 1e6);
  goto out;

fail:
  status = vdit_cli_fail (error);
out:
  vdit_stage_clock_clear (&clock);
  if (sink != NULL)
    vdit_frame_sink_close (sink, FALSE, NULL);
  if (ctx != NULL)
    vdit_ctx_free (ctx);
  if (model != NULL)
    vdit_model_free (model);
  options_clear (&o);
  return status;
}

/* Started by mpirun, rank 0 generates and writes; the other ranks serve it. */
int
vdit_cmd_generate (int argc, char **argv)
{
  vdit_comm comm;
  GError *error = NULL;
  if (!vdit_cli_comm_init (&comm, &error))
    return vdit_cli_fail (error);
  if (vdit_comm_rank (&comm) != 0)
    return vdit_cli_serve (&comm, COMMAND, argc, argv, TRUE);
  return vdit_cli_comm_finish (&comm, generate (argc, argv, &comm), TRUE);
}
