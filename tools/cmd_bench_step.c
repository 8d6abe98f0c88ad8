/* `vdit bench step`: milliseconds per DiT step, as JSON lines. */
#include <math.h>

#include "cli.h"
#include "cli_parallel.h"
#include "commands.h"
#include "ctx.h"
#include "json_writer.h"
#include "model.h"
#include "vdit_bench.h"

static void
print_result (const char *model, const char *backend, const vdit_bench_step_params *bp,
              int64_t tokens, const vdit_bench_step_result *r, int ranks)
{
  vdit_json j;
  vdit_json_init (&j);
  vdit_json_begin_object (&j, NULL);
  vdit_json_string (&j, "bench", "step");
  vdit_json_string (&j, "model", model);
  vdit_json_string (&j, "backend", backend);
  vdit_json_string (&j, "attention", vdit_attention_name (bp->attention));
  vdit_json_int (&j, "tokens", tokens);
  vdit_json_int (&j, "frames", bp->frames);
  /* a guided step is a batch of two: conditional and unconditional */
  vdit_json_int (&j, "batch", bp->guidance > 1.0f ? 2 : 1);
  if (bp->guidance > 1.0f) {
    vdit_json_double (&j, "guidance", bp->guidance);
    vdit_json_int (&j, "shared_prefix", r->shared_prefix); /* 1: block 0's self-attention once */
    vdit_json_int (&j, "negative_tokens", r->negative_tokens); /* 1: one key (dit.h) */
  }
  /* Microseconds are the most a wall clock here resolves. */
  vdit_json_double (&j, "ms", round (r->ms * 1000) / 1000);
  vdit_json_double (&j, "ms_min", round (r->ms_min * 1000) / 1000);
  vdit_json_int (&j, "repeat", bp->repeat);
  vdit_json_int (&j, "ranks", ranks); /* processes of an mpirun job sharing each step */
  vdit_json_string (&j, "sampler", r->sampler_on_backend ? "backend" : "host");
  vdit_json_int (&j, "graphs", r->graphs); /* 1: forwards recorded as a graph */
  vdit_json_int (&j, "graph_replays", r->graph_replays);
  if (r->have_peak)
    vdit_json_double (&j, "peak_gib", round (r->peak_bytes / 1073741824.0 * 1000) / 1000);
  if (bp->breakdown) {
    vdit_json_begin_object (&j, "breakdown");
    double sum = 0.0;
    for (int k = 0; k < VDIT_OP_KINDS; k++) {
      vdit_json_double (&j, vdit_op_kind_name (k), round (r->per_step.ms[k] * 1000) / 1000);
      sum += r->per_step.ms[k];
    }
    /* what no op accounts for: host work between ops, launch gaps, the timing itself */
    vdit_json_double (&j, "unaccounted", round ((r->ms - sum) * 1000) / 1000);
    vdit_json_end_object (&j);
    vdit_json_begin_object (&j, "calls");
    for (int k = 0; k < VDIT_OP_KINDS; k++)
      vdit_json_int (&j, vdit_op_kind_name (k), r->per_step.calls[k]);
    vdit_json_end_object (&j);
  }
  vdit_json_end_object (&j);
  vdit_json_print_line (&j);
}

static int
bench_step (int argc, char **argv, const vdit_comm *comm)
{
  const char *cmd = "vdit bench step";
  char *model_dir = NULL, *config = NULL, *device_name = NULL, *attention_name = NULL;
  char *seed_text = NULL, *negative = NULL;
  gboolean random_weights = FALSE, breakdown = FALSE;
  int frames = 0, repeat = 5, warmup = 1, threads = 0, gpus = 1;
  double guidance = 0.0;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Model directory", "DIR" },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config,
      "A config.json to build the model from (with --random-weights)", "FILE" },
    { "random-weights", 0, 0, G_OPTION_ARG_NONE, &random_weights,
      "Seeded random weights instead of a weight file", NULL },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_text, "Seed of the random weights", "X" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &frames, "Video frames (default: the model's)",
      "N" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device_name, "auto, cpu or cuda (default auto)",
      "DEV" },
    { "gpus", 0, 0, G_OPTION_ARG_INT, &gpus, "GPUs for sequence parallelism (default 1)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (default: the CPUs this process may use)", "N" },
    { "attention", 'a', 0, G_OPTION_ARG_STRING, &attention_name,
      "full, tile or adaptive (default: the model's)", "MODE" },
    { "repeat", 'r', 0, G_OPTION_ARG_INT, &repeat, "Timed runs (default 5)", "R" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &warmup, "Untimed runs first (default 1)", "W" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &guidance,
      "Time a guided step: both passes, mixed with this scale (> 1; default unguided)", "G" },
    { "negative-prompt", 'n', 0, G_OPTION_ARG_FILENAME, &negative,
      "With --guidance: the unconditional pass's prompt (default empty)", "TEXT" },
    { "breakdown", 0, 0, G_OPTION_ARG_NONE, &breakdown,
      "Also time each kind of op (gemm, attention, norm, elementwise, transfer)", NULL },
    { NULL }
  };
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  vdit_model *model = NULL;
  vdit_ctx *ctx = NULL;
  GOptionContext *octx = g_option_context_new ("- time one DiT step");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "Prints one JSON line:\n"
      "  {\"bench\":\"step\",\"model\":..,\"backend\":..,\"attention\":..,\"tokens\":..,"
      "\"frames\":..,\"batch\":1,\"ms\":..,\"ms_min\":..,\"repeat\":..}\n"
      "ms is the mean over the timed runs, ms_min the fastest. peak_gib follows where the\n"
      "backend keeps a memory high-water mark (CUDA): the most device memory in use at\n"
      "once during the timed runs, weights included. --breakdown adds \"breakdown\": the\n"
      "mean ms per step of each op kind, timed on the GPU's stream (CUDA events) or by\n"
      "the host clock (CPU), and \"unaccounted\" (ms minus their sum), with \"calls\" per\n"
      "step; the marks add a little to ms. --guidance G (> 1) times a guided step, the\n"
      "conditional and unconditional pass (\"batch\":2), as a generation runs it;\n"
      "\"shared_prefix\" is 1 when the unconditional pass started from the conditional\n"
      "one's block-0 self-attention (VDIT_GUIDED_PREFIX=0 turns that off), and\n"
      "\"negative_tokens\" counts the unconditional caption's tokens: the empty negative\n"
      "prompt (the default) is one, whose cross-attention is a row computed once.\n"
      "\"sampler\" says where the latent lives: \"backend\" when the backend has the sampler's\n"
      "ops (a run is then a whole step: patches, forwards, guidance and update), \"host\"\n"
      "otherwise. \"graphs\" is 1 when the step's forwards were recorded as a CUDA graph (from\n"
      "the second run on; VDIT_CUDA_GRAPHS=0 or --breakdown turn it off), \"graph_replays\"\n"
      "counts timed runs that replayed it: --warmup 2 leaves the recording out of the timing.\n");
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;

  VditDevice device;
  VditAttention attention;
  uint64_t seed;
  if (argc > 1) {
    status = vdit_cli_usage (cmd, "unexpected argument '%s'", argv[1]);
    goto out;
  }
  if ((status = vdit_cli_check_model_source (cmd, model_dir, config, random_weights)) !=
      VDIT_EXIT_OK)
    goto out;
  if (!(guidance == 0.0 || (guidance > 1.0 && guidance <= 1000.0))) {
    status = vdit_cli_usage (cmd, "--guidance must be above 1 (and at most 1000)");
    goto out;
  }
  if (negative && guidance == 0.0) {
    status = vdit_cli_usage (cmd, "--negative-prompt needs --guidance");
    goto out;
  }
  if (frames < 0 || repeat < 1 || warmup < 0 || gpus < 1 || threads < 0) {
    status = vdit_cli_usage (cmd, "--frames, --repeat and --gpus must be at least 1; "
                                  "--warmup and --threads not negative");
    goto out;
  }
  if (!vdit_cli_check_utf8 ("--negative-prompt", negative, &error) ||
      !vdit_cli_parse_seed (seed_text, &seed, &error) ||
      !vdit_cli_parse_device (device_name, &device, &error) ||
      !vdit_cli_parse_attention (attention_name, &attention, &error)) {
    status = vdit_cli_usage (cmd, "%s", error->message);
    g_clear_error (&error);
    goto out;
  }

  model = vdit_cli_load_model (model_dir, config, seed, &error);
  if (model == NULL)
    goto fail;
  const vdit_model_info *info = vdit_model_get_info (model);
  const vdit_config *cfg = vdit_model_get_config (model);
  if (frames == 0)
    frames = info->frames;
  if (!vdit_model_check_frames (model, frames, &error))
    goto fail;

  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  cp.device_id = vdit_cli_rank_device (device); /* one GPU per rank under mpirun */
  cp.gpus = gpus;
  cp.threads = threads;
  ctx = vdit_ctx_new (model, &cp, &error);
  if (ctx == NULL || !vdit_ctx_set_comm (ctx, comm, &error))
    goto fail;

  vdit_bench_step_params bp = {
    .frames = frames,
    .attention = attention == VDIT_ATTENTION_DEFAULT ? cfg->attention.mode : attention,
    .repeat = repeat,
    .warmup = warmup,
    .breakdown = breakdown,
    .guidance = (float) guidance,
    .negative_prompt = negative,
  };
  vdit_bench_step_result r;
  if (!vdit_bench_dit_step (ctx, &bp, &r, &error))
    goto fail;
  /* Identity decoder: the latent has the video's size. */
  int grid[3];
  vdit_model_token_grid (model, frames, grid);
  int64_t tokens = (int64_t) grid[0] * grid[1] * grid[2];
  if (vdit_comm_rank (comm) == 0)
    print_result (info->name, vdit_ctx_get_device_name (ctx), &bp, tokens, &r,
                  vdit_comm_size (comm));
  goto out;

fail:
  status = vdit_cli_fail (error);
out:
  if (ctx != NULL)
    vdit_ctx_free (ctx);
  if (model != NULL)
    vdit_model_free (model);
  g_option_context_free (octx);
  g_free (model_dir);
  g_free (config);
  g_free (device_name);
  g_free (attention_name);
  g_free (seed_text);
  g_free (negative);
  return status;
}

/* Started by mpirun, every rank runs the same benchmark on its share of the tokens and
 * rank 0 prints the figures. */
int
vdit_cmd_bench_step (int argc, char **argv)
{
  vdit_comm comm;
  GError *error = NULL;
  if (!vdit_cli_comm_init (&comm, &error))
    return vdit_cli_fail (error);
  return vdit_cli_comm_finish (&comm, bench_step (argc, argv, &comm), FALSE);
}
