/* Internal view of a loaded model, for the engine and the project's own tools. */
#ifndef VDIT_MODEL_H
#define VDIT_MODEL_H

#include "config.h"
#include "tokenizer.h"
#include "vdit.h"
#include "weights.h"

G_BEGIN_DECLS

struct vdit_model {
  vdit_config *config;
  vdit_weights *weights;
  vdit_tokenizer *tokenizer; /* NULL for random-weight models: prompts become byte ids */
  struct vdit_vae_decoder *vae; /* decoder.type causal_video_vae; NULL for random weights */
  char *path;                /* directory, or the config file for random models */
  vdit_model_info info;
};

const vdit_config *vdit_model_get_config (const vdit_model *model);
const vdit_weights *vdit_model_get_weights (const vdit_model *model);
/* Latent frames T for a video frame count (identity decoder: T = frames; the
 * CausalVideoVAE: T = (frames − 1)/4 + 1). */
int vdit_model_latent_frames (const vdit_model *model, int frames);
/* The DiT's token grid for `frames` video frames: grid[0] groups of patch[0] latent
 * frames (the frames attention sees) of grid[1] × grid[2] tokens each. */
void vdit_model_token_grid (const vdit_model *model, int frames, int grid[3]);
/* Bytes of weights + activations a generation of `frames` needs on a backend with
 * act_size-byte activations (used for up-front out-of-memory errors and `vdit inspect`). */
uint64_t vdit_model_memory_estimate (const vdit_model *model, int frames, size_t act_size);
/* The same estimate by part, bytes: what one device holds (weights, activations; the
 * text encoder's weights only while it encodes the prompts) and what the host holds (the
 * latent buffers, the VAE decode's peak). */
typedef struct {
  uint64_t text_weights, dit_weights, activations; /* device */
  uint64_t latents, vae_decode;                    /* host */
} vdit_memory_plan;
void vdit_model_memory_plan (const vdit_model *model, int frames, size_t act_size,
                             vdit_memory_plan *plan);

G_END_DECLS

#endif
