/* Per-layer tile mask search: generations with a recording policy (attention_plan.c)
 * that runs full attention and measures every k:(T−k) mask against it. */
#include "mask_search.h"

#include "attention_plan.h"
#include "ctx.h"
#include "model.h"

#include <math.h>
#include <string.h>

void
vdit_mask_search_params_init (vdit_mask_search_params *params)
{
  *params = (vdit_mask_search_params) {
    .frames = 0, .steps = 0, .guidance = -1.0f, .seed = 0, .threshold = 0.1,
  };
}

void
vdit_plan_from_errors (int *plan, const double *errors, int depth, int frames, double threshold)
{
  for (int l = 0; l < depth; l++) {
    plan[l] = frames - 1;
    for (int k = 0; k < frames - 1; k++)
      if (errors[(size_t) l * frames + k] <= threshold) {
        plan[l] = k;
        break;
      }
  }
}

gboolean
vdit_mask_search (vdit_ctx *ctx, const vdit_model *model, const char *const *prompts,
                  int n_prompts, const vdit_mask_search_params *params,
                  vdit_progress_cb progress, void *user_data, vdit_mask_search_result *result,
                  GError **error)
{
  memset (result, 0, sizeof *result);
  if (n_prompts < 1) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "mask search: no sample prompts");
    return FALSE;
  }
  if (!(params->threshold >= 0.0 && isfinite (params->threshold))) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "mask search: threshold %g must be a number of at least 0", params->threshold);
    return FALSE;
  }
  const vdit_config *cfg = vdit_model_get_config (model);
  const vdit_model_info *info = vdit_model_get_info (model);
  const int frames = params->frames > 0 ? params->frames : info->frames;
  if (!vdit_model_check_frames (model, frames, error))
    return FALSE;
  int grid[3];
  vdit_model_token_grid (model, frames, grid);
  const int T = grid[0];
  if (T < 2) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "mask search: %d video frames make %d latent frame; tile masks need at "
                 "least 2", frames, T);
    return FALSE;
  }
  const vdit_attn_policy_params pp = {
    .mode = VDIT_ATTENTION_FULL,
    .frames = T,
    .tokens_per_frame = grid[1] * grid[2],
    .depth = cfg->dit.depth,
    .heads = cfg->dit.heads,
    .head_dim = cfg->dit.head_dim,
    .steps = params->steps > 0 ? params->steps : info->steps,
    .sparsity = -1.0f,
  };
  vdit_attn_policy *rec = vdit_attn_policy_new_recorder (vdit_ctx_get_backend (ctx), &pp, error);
  if (rec == NULL)
    return FALSE;

  for (int i = 0; i < n_prompts; i++) {
    vdit_gen_params gp;
    vdit_gen_params_init (&gp);
    gp.prompt = prompts[i];
    gp.frames = frames;
    gp.steps = pp.steps;
    gp.guidance = params->guidance;
    gp.seed = params->seed + (uint64_t) i;
    gp.attention = VDIT_ATTENTION_FULL;
    gp.progress = progress;
    gp.user_data = user_data;
    if (!vdit_generate_with_policy (ctx, &gp, rec, NULL, error)) {
      g_prefix_error (error, "mask search, prompt %d: ", i + 1);
      vdit_attn_policy_free (rec);
      return FALSE;
    }
  }

  result->depth = pp.depth;
  result->frames = T;
  result->errors = g_new (double, (size_t) pp.depth * T);
  result->plan = g_new (int, pp.depth);
  result->density = g_new (double, pp.depth);
  vdit_attn_policy_get_errors (rec, result->errors);
  vdit_attn_policy_free (rec);
  vdit_plan_from_errors (result->plan, result->errors, pp.depth, T, params->threshold);
  for (int l = 0; l < pp.depth; l++)
    result->density[l] = vdit_tile_density (T, result->plan[l]);
  return TRUE;
}

void
vdit_mask_search_result_clear (vdit_mask_search_result *result)
{
  g_free (result->plan);
  g_free (result->errors);
  g_free (result->density);
  memset (result, 0, sizeof *result);
}
