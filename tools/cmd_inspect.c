/* `vdit inspect DIR`: what a model directory holds, for people (default) or programs
 * (--json). */
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "json_writer.h"
#include "model.h"

static const char *
sampler_name (VditSamplerType type)
{
  switch (type) {
  case VDIT_SAMPLER_FLOW_EULER: return "flow_euler";
  case VDIT_SAMPLER_DDIM: return "ddim";
  case VDIT_SAMPLER_EULER_ANCESTRAL: return "euler_ancestral";
  }
  return "unknown";
}

static const char *
prediction_name (VditPrediction prediction)
{
  switch (prediction) {
  case VDIT_PRED_FLOW: return "flow";
  case VDIT_PRED_EPSILON: return "epsilon";
  case VDIT_PRED_V: return "v";
  }
  return "unknown";
}

static const char *
decoder_name (VditDecoderType type)
{
  switch (type) {
  case VDIT_DECODER_IDENTITY: return "identity";
  case VDIT_DECODER_CAUSAL_VIDEO_VAE: return "causal_video_vae";
  }
  return "unknown";
}

/* Everything computed once, printed by either formatter. */
typedef struct {
  const vdit_model_info *info;
  const vdit_config *cfg;
  const vdit_weights *weights;
  int frames, latent_frames;
  int64_t tokens_per_frame; /* per latent frame group of patch[0] frames */
  int64_t tokens;
  int64_t params, text_params;
  char *dtypes;
  uint64_t mem_f32, mem_bf16;
  /* by part, one GPU with bf16 activations: the inspected frames, and for
   * Open-Sora-Plan's VAE also its clip lengths 29 and 93 */
  int n_plans, plan_frames[3];
  vdit_memory_plan plans[3];
} inspection;

static void
count_params (const vdit_config *cfg, int64_t *total, int64_t *text)
{
  GPtrArray *specs = vdit_weights_expected (cfg);
  *total = *text = 0;
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *spec = g_ptr_array_index (specs, i);
    int64_t n = 1;
    for (int d = 0; d < spec->ndim; d++)
      n *= spec->shape[d];
    *total += n;
    if (g_str_has_prefix (spec->name, "text_encoder."))
      *text += n;
  }
  g_ptr_array_unref (specs);
}

static void
inspect_model (vdit_model *model, int frames, inspection *in)
{
  in->info = vdit_model_get_info (model);
  in->cfg = vdit_model_get_config (model);
  in->weights = vdit_model_get_weights (model);
  in->frames = frames > 0 ? frames : in->info->frames;
  in->latent_frames = vdit_model_latent_frames (model, in->frames);
  int grid[3];
  vdit_model_token_grid (model, in->frames, grid);
  in->tokens_per_frame = (int64_t) grid[1] * grid[2];
  in->tokens = in->tokens_per_frame * grid[0];
  int64_t unused;
  count_params (in->cfg, &unused, &in->text_params);
  in->params = in->info->n_params;
  in->dtypes = vdit_weights_dtype_summary (in->weights);
  in->mem_f32 = vdit_model_memory_estimate (model, in->frames, 4);
  in->mem_bf16 = vdit_model_memory_estimate (model, in->frames, 2);
  const int osp_frames[] = { 29, 93 };
  in->plan_frames[in->n_plans++] = in->frames;
  for (guint i = 0; in->cfg->decoder == VDIT_DECODER_CAUSAL_VIDEO_VAE && i < 2; i++)
    if (osp_frames[i] != in->frames && vdit_model_check_frames (model, osp_frames[i], NULL))
      in->plan_frames[in->n_plans++] = osp_frames[i];
  for (int i = 0; i < in->n_plans; i++)
    vdit_model_memory_plan (model, in->plan_frames[i], 2, &in->plans[i]);
}

static char *
format_bytes (uint64_t n)
{
  return g_format_size_full (n, G_FORMAT_SIZE_IEC_UNITS);
}

static char *
format_plan (const vdit_attention_config *a, int depth)
{
  if (a->plan == NULL)
    return g_strdup_printf ("k=%d in every layer", a->tile_k);
  GString *s = g_string_new ("k per layer [");
  for (int i = 0; i < depth; i++)
    g_string_append_printf (s, "%s%d", i ? ", " : "", a->plan[i]);
  g_string_append (s, "]");
  return g_string_free (s, FALSE);
}

static char *
format_count (int64_t n)
{
  if (n >= 1000000000)
    return g_strdup_printf ("%.2f B", n / 1e9);
  if (n >= 1000000)
    return g_strdup_printf ("%.2f M", n / 1e6);
  if (n >= 1000)
    return g_strdup_printf ("%.1f k", n / 1e3);
  return g_strdup_printf ("%" G_GINT64_FORMAT, n);
}

static void
print_text (const inspection *in)
{
  const vdit_config *c = in->cfg;
  const vdit_text_config *t = &c->text;
  const vdit_dit_config *d = &c->dit;
  const vdit_sampler_config *s = &c->sampler;
  const vdit_attention_config *a = &c->attention;

  printf ("model        %s (%s)\n", in->info->name, in->info->path);
  int multiple = in->info->frame_multiple, offset = in->info->frame_offset;
  char *counts = multiple <= 1 ? g_strdup ("any frame count")
                 : offset == 0 ? g_strdup_printf ("frame counts: multiples of %d", multiple)
                 : g_strdup_printf ("frame counts: %d + k*%d", offset, multiple);
  printf ("video        %d frames of %dx%d at %g fps; %s\n", c->frames, c->width,
          c->height, c->fps, counts);
  g_free (counts);
  printf ("decoder      %s, %d channels\n", decoder_name (c->decoder), c->decoder_channels);
  printf ("text encoder T5: vocab %d, width %d, %d layers, %d heads x %d, ffn %d, "
          "<= %d tokens\n", t->vocab_size, t->d_model, t->n_layers, t->n_heads, t->d_kv,
          t->d_ff, t->max_tokens);
  printf ("dit          width %d, %d blocks, %d heads x %d, ffn %d, %d input channels\n",
          d->hidden, d->depth, d->heads, d->head_dim, d->ffn_hidden, d->in_channels);
  printf ("patch        %d x %d x %d (t x h x w)\n", d->patch[0], d->patch[1], d->patch[2]);
  if (d->patch[0] > 1)
    printf ("tokens       %" G_GINT64_FORMAT " per %d latent frames (one patch in time); %"
            G_GINT64_FORMAT " for %d frames\n", in->tokens_per_frame, d->patch[0], in->tokens,
            in->frames);
  else
    printf ("tokens       %" G_GINT64_FORMAT " per latent frame; %" G_GINT64_FORMAT
            " for %d frames\n", in->tokens_per_frame, in->tokens, in->frames);
  printf ("sampler      %s (%s prediction), %d steps, guidance %g, shift %g\n",
          sampler_name (s->type), prediction_name (s->prediction), s->steps, s->guidance,
          s->shift);
  char *plan = format_plan (a, d->depth);
  printf ("attention    %s; tile: %s; adaptive: blocks of %d, sparsity %g, warm-up %g\n",
          vdit_attention_name (a->mode), plan, a->block, a->sparsity, a->warmup);
  g_free (plan);
  char *total = format_count (in->params), *text = format_count (in->text_params),
       *dit = format_count (in->params - in->text_params);
  printf ("parameters   %s (text encoder %s, dit %s)\n", total, text, dit);
  g_free (total);
  g_free (text);
  g_free (dit);
  printf ("dtypes       %s\n", in->dtypes);
  char *f32 = g_format_size_full (in->mem_f32, G_FORMAT_SIZE_IEC_UNITS);
  char *bf16 = g_format_size_full (in->mem_bf16, G_FORMAT_SIZE_IEC_UNITS);
  printf ("memory       %s with f32 activations (CPU), %s with bf16 (GPU), for %d frames\n",
          f32, bf16, in->frames);
  g_free (f32);
  g_free (bf16);
  for (int i = 0; i < in->n_plans; i++) {
    const vdit_memory_plan *p = &in->plans[i];
    g_autofree char *te = format_bytes (p->text_weights), *dw = format_bytes (p->dit_weights);
    g_autofree char *act = format_bytes (p->activations), *lat = format_bytes (p->latents);
    g_autofree char *vae = format_bytes (p->vae_decode);
    printf ("memory plan  %d frames, one GPU in bf16: text encoder %s while it encodes (kept "
            "between clips where there is room), DiT "
            "weights %s, activations %s; host: latents %s%s%s\n",
            in->plan_frames[i], te, dw, act, lat, p->vae_decode ? ", VAE decode peak " : "",
            p->vae_decode ? vae : "");
  }
}

static void
add_int_array (vdit_json *j, const char *name, const int *v, int n)
{
  vdit_json_begin_array (j, name);
  for (int i = 0; i < n; i++)
    vdit_json_int (j, NULL, v[i]);
  vdit_json_end_array (j);
}

static void
print_json (const inspection *in)
{
  const vdit_config *c = in->cfg;
  const vdit_text_config *t = &c->text;
  const vdit_dit_config *d = &c->dit;
  const vdit_sampler_config *s = &c->sampler;
  const vdit_attention_config *a = &c->attention;
  vdit_json j;
  vdit_json_init (&j);
  vdit_json_begin_object (&j, NULL);
  vdit_json_string (&j, "name", in->info->name);
  vdit_json_string (&j, "path", in->info->path);

  vdit_json_begin_object (&j, "video");
  vdit_json_int (&j, "frames", c->frames);
  vdit_json_int (&j, "height", c->height);
  vdit_json_int (&j, "width", c->width);
  vdit_json_double (&j, "fps", c->fps);
  vdit_json_int (&j, "frame_multiple", in->info->frame_multiple);
  vdit_json_int (&j, "frame_offset", in->info->frame_offset);
  vdit_json_end_object (&j);

  vdit_json_begin_object (&j, "decoder");
  vdit_json_string (&j, "type", decoder_name (c->decoder));
  vdit_json_int (&j, "channels", c->decoder_channels);
  vdit_json_end_object (&j);

  vdit_json_begin_object (&j, "text_encoder");
  vdit_json_int (&j, "vocab_size", t->vocab_size);
  vdit_json_int (&j, "d_model", t->d_model);
  vdit_json_int (&j, "n_layers", t->n_layers);
  vdit_json_int (&j, "n_heads", t->n_heads);
  vdit_json_int (&j, "d_kv", t->d_kv);
  vdit_json_int (&j, "d_ff", t->d_ff);
  vdit_json_int (&j, "max_tokens", t->max_tokens);
  vdit_json_end_object (&j);

  vdit_json_begin_object (&j, "dit");
  vdit_json_int (&j, "hidden", d->hidden);
  vdit_json_int (&j, "depth", d->depth);
  vdit_json_int (&j, "heads", d->heads);
  vdit_json_int (&j, "head_dim", d->head_dim);
  add_int_array (&j, "patch", d->patch, 3);
  vdit_json_int (&j, "in_channels", d->in_channels);
  vdit_json_int (&j, "ffn_hidden", d->ffn_hidden);
  vdit_json_end_object (&j);

  vdit_json_int (&j, "frames", in->frames);
  vdit_json_int (&j, "tokens_per_frame", in->tokens_per_frame);
  vdit_json_int (&j, "tokens", in->tokens);

  vdit_json_begin_object (&j, "sampler");
  vdit_json_string (&j, "type", sampler_name (s->type));
  vdit_json_string (&j, "prediction", prediction_name (s->prediction));
  vdit_json_int (&j, "steps", s->steps);
  vdit_json_float (&j, "guidance", s->guidance);
  vdit_json_float (&j, "shift", s->shift);
  vdit_json_end_object (&j);

  vdit_json_begin_object (&j, "attention");
  vdit_json_string (&j, "mode", vdit_attention_name (a->mode));
  vdit_json_int (&j, "tile_k", a->tile_k);
  if (a->plan != NULL)
    add_int_array (&j, "plan", a->plan, d->depth);
  vdit_json_int (&j, "block", a->block);
  vdit_json_float (&j, "sparsity", a->sparsity);
  vdit_json_float (&j, "warmup", a->warmup);
  vdit_json_begin_array (&j, "search_steps");
  for (int i = 0; i < a->n_search_steps; i++)
    vdit_json_float (&j, NULL, a->search_steps[i]);
  vdit_json_end_array (&j);
  vdit_json_end_object (&j);

  vdit_json_begin_object (&j, "params");
  vdit_json_int (&j, "total", in->params);
  vdit_json_int (&j, "text_encoder", in->text_params);
  vdit_json_int (&j, "dit", in->params - in->text_params);
  vdit_json_end_object (&j);
  vdit_json_string (&j, "dtypes", in->dtypes);

  vdit_json_begin_object (&j, "memory_bytes");
  vdit_json_int (&j, "f32", (int64_t) in->mem_f32);
  vdit_json_int (&j, "bf16", (int64_t) in->mem_bf16);
  vdit_json_end_object (&j);
  vdit_json_begin_array (&j, "memory_plan");
  for (int i = 0; i < in->n_plans; i++) {
    const vdit_memory_plan *p = &in->plans[i];
    vdit_json_begin_object (&j, NULL);
    vdit_json_int (&j, "frames", in->plan_frames[i]);
    vdit_json_int (&j, "text_encoder", (int64_t) p->text_weights);
    vdit_json_int (&j, "dit_weights", (int64_t) p->dit_weights);
    vdit_json_int (&j, "activations", (int64_t) p->activations);
    vdit_json_int (&j, "host_latents", (int64_t) p->latents);
    vdit_json_int (&j, "host_vae_decode", (int64_t) p->vae_decode);
    vdit_json_end_object (&j);
  }
  vdit_json_end_array (&j);

  vdit_json_end_object (&j);
  vdit_json_print_line (&j);
}

int
vdit_cmd_inspect (int argc, char **argv)
{
  const char *cmd = "vdit inspect";
  gboolean json = FALSE;
  int frames = 0;
  GOptionEntry entries[] = {
    { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &frames,
      "Frames for the token count and memory estimate (default: the model's)", "N" },
    { NULL }
  };
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  vdit_model *model = NULL;
  GOptionContext *octx = g_option_context_new ("DIR - describe a model directory");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;
  if (argc != 2) {
    status = vdit_cli_usage (cmd, argc < 2 ? "missing the model directory"
                                           : "expected one model directory");
    goto out;
  }
  if (frames < 0) {
    status = vdit_cli_usage (cmd, "--frames must be at least 1, not %d", frames);
    goto out;
  }
  model = vdit_model_load (argv[1], &error);
  if (model == NULL || (frames > 0 && !vdit_model_check_frames (model, frames, &error))) {
    status = vdit_cli_fail (error);
    goto out;
  }
  inspection in = { 0 };
  inspect_model (model, frames, &in);
  if (json)
    print_json (&in);
  else
    print_text (&in);
  g_free (in.dtypes);

out:
  if (model != NULL)
    vdit_model_free (model);
  g_option_context_free (octx);
  return status;
}
