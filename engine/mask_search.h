/* Per-layer tile mask search (Efficient-vDiT's layer-wise mask search, at inference):
 * sample prompts are generated with full attention while every self-attention call
 * also runs each k:(T−k) mask; each layer gets the smallest k whose error against full
 * attention stays under a threshold. */
#ifndef VDIT_MASK_SEARCH_H
#define VDIT_MASK_SEARCH_H

#include "vdit.h"

G_BEGIN_DECLS

typedef struct {
  int frames;       /* video frames; 0 = the model's */
  int steps;        /* 0 = the model's */
  float guidance;   /* < 0 = the model's */
  uint64_t seed;    /* noise seed of the first prompt; prompt i uses seed + i */
  double threshold; /* r: largest accepted relative error */
} vdit_mask_search_params;

typedef struct {
  int depth;
  int frames;      /* latent frames T of the search */
  int *plan;       /* (depth) chosen k */
  double *errors;  /* (depth, frames) relative error of each k */
  double *density; /* (depth) kept fraction of frame tiles with the chosen k */
} vdit_mask_search_result;

void vdit_mask_search_params_init (vdit_mask_search_params *params);

/* Runs the search on ctx's model. progress, if given, is called per denoising step as
 * in vdit_generate. Fills result (free with vdit_mask_search_result_clear). */
gboolean vdit_mask_search (vdit_ctx *ctx, const vdit_model *model, const char *const *prompts,
                           int n_prompts, const vdit_mask_search_params *params,
                           vdit_progress_cb progress, void *user_data,
                           vdit_mask_search_result *result, GError **error);
void vdit_mask_search_result_clear (vdit_mask_search_result *result);

/* plan[l] = the smallest k in 0 .. frames−1 with errors[l·frames + k] ≤ threshold (k =
 * frames − 1 keeps every tile, so it always qualifies). */
void vdit_plan_from_errors (int *plan, const double *errors, int depth, int frames,
                            double threshold);

G_END_DECLS

#endif
