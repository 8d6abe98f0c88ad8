/* `vdit search-masks`: per layer, the smallest k whose k:(T−k) tile mask keeps the
 * self-attention output within a relative error r of full attention on sample prompts;
 * the plan is written into the model's config.json. */
#include <math.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "json_writer.h"
#include "mask_search.h"
#include "model.h"

/* One prompt a line; blank lines and lines starting with '#' are skipped. */
static GPtrArray *
read_prompts (const char *path, GError **error)
{
  char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  if (!g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "%s: not UTF-8 text", path);
    g_free (text);
    return NULL;
  }
  GPtrArray *prompts = g_ptr_array_new_with_free_func (g_free);
  char **lines = g_strsplit (text, "\n", -1);
  for (char **l = lines; *l; l++) {
    char *s = g_strstrip (*l);
    if (*s != '\0' && *s != '#')
      g_ptr_array_add (prompts, g_strdup (s));
  }
  g_strfreev (lines);
  g_free (text);
  if (prompts->len == 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "%s: no prompts", path);
    g_ptr_array_unref (prompts);
    return NULL;
  }
  return prompts;
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  int *prompt = user_data;
  if (stage == VDIT_STAGE_DENOISE && step == steps)
    g_printerr ("vdit: prompt %d done\n", ++*prompt);
}

static void
print_layer (const vdit_mask_search_result *r, int layer, double threshold, gboolean json)
{
  const int k = r->plan[layer], T = r->frames;
  const double err = r->errors[(size_t) layer * T + k];
  if (json) {
    vdit_json j;
    vdit_json_init (&j);
    vdit_json_begin_object (&j, NULL);
    vdit_json_int (&j, "layer", layer);
    vdit_json_int (&j, "k", k);
    vdit_json_int (&j, "frames", T);
    vdit_json_double (&j, "density", r->density[layer]);
    vdit_json_double (&j, "error", err);
    vdit_json_double (&j, "threshold", threshold);
    vdit_json_begin_array (&j, "errors");
    for (int kk = 0; kk < T; kk++)
      vdit_json_double (&j, NULL, r->errors[(size_t) layer * T + kk]);
    vdit_json_end_array (&j);
    vdit_json_end_object (&j);
    vdit_json_print_line (&j);
    return;
  }
  printf ("layer %3d  k %2d (%d:%d)  density %.4f  error %.4f  |", layer, k, k, T - k,
          r->density[layer], err);
  for (int kk = 0; kk < T; kk++)
    printf (" %.3g", r->errors[(size_t) layer * T + kk]);
  printf ("\n");
}

int
vdit_cmd_search_masks (int argc, char **argv)
{
  const char *cmd = "vdit search-masks";
  char *model_dir = NULL, *prompts_path = NULL, *device_name = NULL, *seed_text = NULL;
  double threshold = NAN, guidance = -1.0;
  int frames = 0, steps = 0, threads = 0;
  gboolean dry_run = FALSE, json = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir, "Model directory (its config.json "
      "receives the plan)", "DIR" },
    { "prompts", 'p', 0, G_OPTION_ARG_FILENAME, &prompts_path,
      "Sample prompts, one a line", "FILE" },
    { "threshold", 'r', 0, G_OPTION_ARG_DOUBLE, &threshold,
      "Largest accepted relative error of a layer's attention output (paper: 0.025 to 0.4)",
      "R" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &frames, "Video frames (default: the model's)", "N" },
    { "steps", 's', 0, G_OPTION_ARG_INT, &steps, "Sampling steps (default: the model's)", "S" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &guidance,
      "Guidance scale (default: the model's)", "G" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_text,
      "Noise seed of the first prompt, the next ones count up (default 0)", "X" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device_name, "auto, cpu or cuda (default auto)",
      "DEV" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (default: the CPUs this process may use)", "N" },
    { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &dry_run, "Print the plan, leave config.json alone",
      NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON line per layer, then a summary line",
      NULL },
    { NULL }
  };
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  vdit_model *model = NULL;
  vdit_ctx *ctx = NULL;
  GPtrArray *prompts = NULL;
  char *config_path = NULL;
  vdit_mask_search_result result = { 0 };
  GOptionContext *octx = g_option_context_new ("- choose each layer's tile mask k");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "Generates every prompt with full attention; at each self-attention call the tile\n"
      "masks k = 0 .. T-1 run on the same inputs. A layer's error for k is\n"
      "sqrt(sum |O_k - O|^2 / sum |O|^2) over all its calls; its plan entry is the\n"
      "smallest k with error <= R (k = T-1 keeps every tile, so it always qualifies).\n"
      "The plan goes into DIR/config.json (attention.plan); search at the frame count\n"
      "you generate at, since k:(T-k) means a different mask at another T.\n");
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;

  VditDevice device;
  uint64_t seed;
  if (argc > 1) {
    status = vdit_cli_usage (cmd, "unexpected argument '%s'", argv[1]);
    goto out;
  }
  if (model_dir == NULL || prompts_path == NULL || isnan (threshold)) {
    status = vdit_cli_usage (cmd, "--model, --prompts and --threshold are required");
    goto out;
  }
  if (!(threshold >= 0.0) || isinf (threshold) || frames < 0 || steps < 0 || threads < 0) {
    status = vdit_cli_usage (cmd, "--threshold must be a number of at least 0; --frames, "
                                  "--steps and --threads not negative");
    goto out;
  }
  if (!vdit_cli_parse_seed (seed_text, &seed, &error) ||
      !vdit_cli_parse_device (device_name, &device, &error)) {
    status = vdit_cli_usage (cmd, "%s", error->message);
    g_clear_error (&error);
    goto out;
  }
  if (!(prompts = read_prompts (prompts_path, &error)))
    goto fail;
  if (!(model = vdit_model_load (model_dir, &error)))
    goto fail;

  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  cp.threads = threads;
  if (!(ctx = vdit_ctx_new (model, &cp, &error)))
    goto fail;

  vdit_mask_search_params sp;
  vdit_mask_search_params_init (&sp);
  sp.frames = frames;
  sp.steps = steps;
  sp.guidance = (float) guidance;
  sp.seed = seed;
  sp.threshold = threshold;
  int done = 0;
  if (!vdit_mask_search (ctx, model, (const char *const *) prompts->pdata, (int) prompts->len,
                         &sp, json ? NULL : on_progress, &done, &result, &error))
    goto fail;

  double mean_density = 0.0;
  for (int l = 0; l < result.depth; l++) {
    print_layer (&result, l, threshold, json);
    mean_density += result.density[l] / result.depth;
  }
  config_path = g_build_filename (model_dir, "config.json", NULL);
  if (!dry_run && !vdit_config_save_plan (config_path, result.plan, result.depth, &error))
    goto fail;
  if (json) {
    vdit_json j;
    vdit_json_init (&j);
    vdit_json_begin_object (&j, NULL);
    vdit_json_int (&j, "layers", result.depth);
    vdit_json_int (&j, "frames", result.frames);
    vdit_json_int (&j, "prompts", prompts->len);
    vdit_json_double (&j, "threshold", threshold);
    vdit_json_double (&j, "density", mean_density);
    vdit_json_bool (&j, "written", !dry_run);
    vdit_json_end_object (&j);
    vdit_json_print_line (&j);
  } else {
    printf ("%d layers, T = %d latent frames, %u prompts, r = %g: mean density %.4f "
            "(%.1f %% of frame tiles skipped)\n", result.depth, result.frames, prompts->len,
            threshold, mean_density, 100.0 * (1.0 - mean_density));
    printf (dry_run ? "dry run: %s unchanged\n" : "plan written to %s\n", config_path);
  }
  goto out;

fail:
  status = vdit_cli_fail (error);
out:
  vdit_mask_search_result_clear (&result);
  if (ctx)
    vdit_ctx_free (ctx);
  if (model)
    vdit_model_free (model);
  if (prompts)
    g_ptr_array_unref (prompts);
  g_option_context_free (octx);
  g_free (config_path);
  g_free (model_dir);
  g_free (prompts_path);
  g_free (device_name);
  g_free (seed_text);
  return status;
}
