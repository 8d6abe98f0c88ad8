/* `vdit bench clip`: milliseconds per whole clip (prompt to last frame) in one process,
 * the first generation after the model loaded apart from the ones after it. */
#include <math.h>

#include "cli.h"
#include "commands.h"
#include "json_writer.h"
#include "stage_clock.h"

#define MAX_CLIPS 100000 /* --repeat and --warmup each: a bound, so their sum cannot wrap */
#define DEFAULT_PROMPT "a red circle moving left on a gray background"

/* A clip in progress: its frames counted, its stages on a clock. */
typedef struct {
  int frames_seen;
  vdit_stage_clock *clock;
} clip_watch;

/* Frames stay in memory: the clip's cost without any file output. */
static gboolean
count_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int width,
             int height, int stride)
{
  (void) index, (void) n_frames, (void) rgb, (void) width, (void) height, (void) stride;
  clip_watch *w = user_data;
  w->frames_seen++;
  vdit_stage_clock_frame (w->clock);
  return TRUE;
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  vdit_stage_clock_report (((clip_watch *) user_data)->clock, stage, step, steps);
}

static double
ms_since (gint64 t0)
{
  return (g_get_monotonic_time () - t0) / 1000.0;
}

static double
round_us (double ms)
{
  return round (ms * 1000) / 1000; /* microseconds: what the clock resolves */
}

typedef struct {
  double load_ms, first_ms, ms, ms_min;
  vdit_stage_clock first, last; /* the first clip's stages, and the last timed one's */
} clip_times;

/* "first" or "last": where a clip's time went (text encoder, denoising, each step,
 * decoder). */
static void
print_stages (vdit_json *j, const char *key, const vdit_stage_clock *c)
{
  vdit_json_begin_object (j, key);
  vdit_stage_clock_stages (j, c);
  vdit_stage_clock_step_times (j, c);
  vdit_json_end_object (j);
}

static void
print_result (const vdit_model_info *info, const char *backend, const vdit_gen_params *gp,
              int steps, float guidance, VditAttention attention, int repeat, int warmup,
              const clip_times *t)
{
  vdit_json j;
  vdit_json_init (&j);
  vdit_json_begin_object (&j, NULL);
  vdit_json_string (&j, "bench", "clip");
  vdit_json_string (&j, "model", info->name);
  vdit_json_string (&j, "backend", backend);
  vdit_json_string (&j, "attention", vdit_attention_name (attention));
  vdit_json_int (&j, "frames", gp->frames);
  vdit_json_int (&j, "width", info->width);
  vdit_json_int (&j, "height", info->height);
  vdit_json_int (&j, "steps", steps);
  vdit_json_double (&j, "guidance", guidance > 1.0f ? guidance : 1.0);
  vdit_json_double (&j, "load_ms", round_us (t->load_ms));
  vdit_json_double (&j, "first_ms", round_us (t->first_ms));
  vdit_json_double (&j, "ms", round_us (t->ms));
  vdit_json_double (&j, "ms_min", round_us (t->ms_min));
  vdit_json_int (&j, "repeat", repeat);
  vdit_json_int (&j, "warmup", warmup);
  print_stages (&j, "first", &t->first);
  print_stages (&j, "last", &t->last);
  vdit_json_end_object (&j);
  vdit_json_print_line (&j);
}

/* The clips: the first one after the load is timed on its own (what `vdit generate`
 * pays), then warmup − 1 more untimed, then repeat timed ones. */
static gboolean
time_clips (vdit_ctx *ctx, vdit_gen_params *gp, int repeat, int warmup, clip_times *t,
            GError **error)
{
  clip_watch w = { 0 };
  gp->on_frame = count_frame;
  gp->progress = on_progress;
  gp->user_data = &w;
  double sum = 0.0;
  t->ms_min = INFINITY;
  const int runs = MAX (warmup, 1) + repeat - (warmup == 0 ? 1 : 0);
  for (int i = 0; i < runs; i++) {
    w.frames_seen = 0;
    w.clock = i == 0 ? &t->first : &t->last;
    vdit_stage_clock_clear (w.clock);
    vdit_stage_clock_start (w.clock);
    vdit_stage_clock_ready (w.clock);
    const gint64 t0 = g_get_monotonic_time ();
    const gboolean ok = vdit_generate (ctx, gp, error);
    const double ms = ms_since (t0);
    vdit_stage_clock_end (w.clock);
    if (!ok)
      return FALSE;
    if (w.frames_seen != gp->frames) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "the engine delivered %d frames, %d were asked for", w.frames_seen,
                   gp->frames);
      return FALSE;
    }
    if (i == 0)
      t->first_ms = ms;
    if (i >= runs - repeat) {
      sum += ms;
      t->ms_min = MIN (t->ms_min, ms);
    }
  }
  t->ms = sum / repeat;
  return TRUE;
}

int
vdit_cmd_bench_clip (int argc, char **argv)
{
  const char *cmd = "vdit bench clip";
  char *model_dir = NULL, *prompt = NULL, *device_name = NULL, *attention_name = NULL;
  char *seed_text = NULL;
  int frames = VDIT_CLI_UNSET, steps = VDIT_CLI_UNSET, repeat = 3, warmup = 1, threads = 0;
  double guidance = VDIT_CLI_UNSET_GUIDANCE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Model directory", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_FILENAME, &prompt,
      "What the clips show (default \"" DEFAULT_PROMPT "\")", "TEXT" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &frames, "Video frames (default: the model's)", "N" },
    { "steps", 's', 0, G_OPTION_ARG_INT, &steps,
      "Sampling steps, 1 to 10000 (default: the model's)", "S" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &guidance,
      "Guidance scale, 0 to 100; 1 or less turns guidance off (default: the model's)", "G" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_text, "Noise seed (default 0)", "X" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device_name, "auto, cpu or cuda (default auto)",
      "DEV" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads,
      "CPU threads (default: the CPUs this process may use)", "N" },
    { "attention", 'a', 0, G_OPTION_ARG_STRING, &attention_name,
      "full, tile or adaptive (default: the model's)", "MODE" },
    { "repeat", 'r', 0, G_OPTION_ARG_INT, &repeat, "Timed clips (default 3)", "R" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &warmup,
      "Untimed clips first, the first one included (default 1)", "W" },
    { NULL }
  };
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  vdit_model *model = NULL;
  vdit_ctx *ctx = NULL;
  clip_times t = { 0 };
  GOptionContext *octx = g_option_context_new ("- time whole clips, prompt to last frame");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "Prints one JSON line:\n"
      "  {\"bench\":\"clip\",\"model\":..,\"backend\":..,\"attention\":..,\"frames\":..,"
      "\"width\":..,\"height\":..,\"steps\":..,\"guidance\":..,\"load_ms\":..,\"first_ms\":..,"
      "\"ms\":..,\"ms_min\":..,\"repeat\":..,\"warmup\":..}\n"
      "Each clip is a whole generation as vditsrc and `vdit generate` run it: the text\n"
      "encoder, every denoising step and the decoder, with the frames handed out in\n"
      "memory (no file is written). load_ms is the model load and the context (weights\n"
      "uploaded to the GPU); first_ms the first clip after it, which also pays what a\n"
      "backend sets up on first use (what one `vdit generate` process measures as its\n"
      "run); ms and ms_min the mean and the fastest of the --repeat clips after the\n"
      "--warmup ones (the first clip counts as one of those; --warmup 0 times it too):\n"
      "what an application that renders clip after clip with the model loaded pays.\n"
      "\"first\" and \"last\" say where the first clip's time and the last timed one's went:\n"
      "text_ms, denoise_ms, decode_ms and step_ms, each denoising step (\"last\" is empty\n"
      "when only one clip ran).\n");
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;
  if (argc > 1) {
    status = vdit_cli_usage (cmd, "unexpected argument '%s'", argv[1]);
    goto out;
  }
  if (model_dir == NULL) {
    status = vdit_cli_usage (cmd, "give --model DIR");
    goto out;
  }
  if (repeat < 1 || repeat > MAX_CLIPS || warmup < 0 || warmup > MAX_CLIPS || threads < 0) {
    status = vdit_cli_usage (cmd, "--repeat must be from 1 to %d, --warmup from 0 to %d, "
                                  "--threads not negative", MAX_CLIPS, MAX_CLIPS);
    goto out;
  }
  if (prompt != NULL && vdit_cli_is_blank (prompt)) {
    status = vdit_cli_usage (cmd, "the prompt is empty");
    goto out;
  }
  if ((status = vdit_cli_check_clip_options (cmd, frames, steps, guidance)) != VDIT_EXIT_OK)
    goto out;
  VditDevice device;
  VditAttention attention;
  uint64_t seed;
  if (!vdit_cli_check_utf8 ("--prompt", prompt, &error) ||
      !vdit_cli_parse_seed (seed_text, &seed, &error) ||
      !vdit_cli_parse_device (device_name, &device, &error) ||
      !vdit_cli_parse_attention (attention_name, &attention, &error)) {
    status = vdit_cli_usage (cmd, "%s", error->message);
    g_clear_error (&error);
    goto out;
  }

  const gint64 t0 = g_get_monotonic_time ();
  model = vdit_model_load (model_dir, &error);
  if (model == NULL)
    goto fail;
  const vdit_model_info *info = vdit_model_get_info (model);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  cp.threads = threads;
  ctx = vdit_ctx_new (model, &cp, &error);
  if (ctx == NULL)
    goto fail;
  t.load_ms = ms_since (t0);

  vdit_gen_params gp;
  vdit_gen_params_init (&gp);
  gp.prompt = prompt ? prompt : DEFAULT_PROMPT;
  gp.frames = frames == VDIT_CLI_UNSET ? info->frames : frames;
  gp.steps = steps == VDIT_CLI_UNSET ? 0 : steps;
  gp.guidance = guidance == VDIT_CLI_UNSET_GUIDANCE ? VDIT_GUIDANCE_DEFAULT : (float) guidance;
  gp.seed = seed;
  gp.attention = attention;
  /* vdit_generate's own checks, before the clock: a bad value is an error, not a time */
  if (!vdit_gen_params_check (ctx, &gp, &error) ||
      !time_clips (ctx, &gp, repeat, warmup, &t, &error))
    goto fail;
  print_result (info, vdit_ctx_get_device_name (ctx), &gp, gp.steps ? gp.steps : info->steps,
                gp.guidance < 0 ? info->guidance : gp.guidance,
                attention == VDIT_ATTENTION_DEFAULT ? info->attention : attention, repeat,
                warmup, &t);
  goto out;

fail:
  status = vdit_cli_fail (error);
out:
  vdit_stage_clock_clear (&t.first);
  vdit_stage_clock_clear (&t.last);
  if (ctx != NULL)
    vdit_ctx_free (ctx);
  if (model != NULL)
    vdit_model_free (model);
  g_option_context_free (octx);
  g_free (model_dir);
  g_free (prompt);
  g_free (device_name);
  g_free (attention_name);
  g_free (seed_text);
  return status;
}
