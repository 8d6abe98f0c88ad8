/* config.json of a model directory, parsed and validated (docs/model-format.md). */
#ifndef VDIT_CONFIG_H
#define VDIT_CONFIG_H

#include "vdit.h"

G_BEGIN_DECLS

typedef enum {
  VDIT_SAMPLER_FLOW_EULER,
  VDIT_SAMPLER_DDIM,
  VDIT_SAMPLER_EULER_ANCESTRAL,
} VditSamplerType;

typedef enum {
  VDIT_PRED_FLOW,
  VDIT_PRED_EPSILON,
  VDIT_PRED_V,
} VditPrediction;

typedef enum {
  VDIT_DECODER_IDENTITY,
  VDIT_DECODER_CAUSAL_VIDEO_VAE, /* Open-Sora-Plan v1.2's VAE: 4x time, 8x space */
} VditDecoderType;

/* CausalVideoVAE: video frames = 1 + 4·(latent frames − 1), sides = 8 · latent sides. */
#define VDIT_VAE_TIME_FACTOR 4
#define VDIT_VAE_SPACE_FACTOR 8

typedef struct {
  int vocab_size, d_model, n_layers, n_heads, d_kv, d_ff;
  int rel_buckets, rel_max_distance, max_tokens;
  float eps;
} vdit_text_config;

/* Bounds config.json must keep; beyond them a value is a mistake or an attack, and would
 * reach allocations or int arithmetic unchecked. */
#define VDIT_CONFIG_MAX_BYTES (16 << 20)  /* size of config.json */
#define VDIT_MAX_VIDEO_SIDE 8192          /* video.width, video.height */
#define VDIT_MAX_FRAMES 4096              /* video.frames, and frames of any generation */
#define VDIT_MIN_FPS 0.1                  /* video.fps */
#define VDIT_MAX_FPS 1000.0
#define VDIT_MAX_STEPS 10000              /* sampler.steps, and steps of any generation */
#define VDIT_MAX_TRAIN_TIMESTEPS 100000   /* sampler.train_timesteps (a table that long) */
#define VDIT_MAX_ATTENTION_BLOCK 4096     /* attention.block, tokens */

/* Base of the frequencies of dit.abs_pos = "sincos" (docs/model-format.md). */
#define VDIT_ABS_POS_BASE 100.0

typedef struct {
  int hidden, depth, heads, head_dim;
  int patch[3]; /* t, h, w */
  int in_channels, ffn_hidden, freq_dim;
  float rope_theta;
  float rope_scale[3];
  float eps;
  gboolean abs_pos; /* "abs_pos": "sincos": fixed 3D sine-cosine positions on the tokens */
} vdit_dit_config;

typedef struct {
  VditSamplerType type;
  VditPrediction prediction;
  int steps;
  float guidance;
  float shift;
  int train_timesteps;
  float beta_start, beta_end;
  gboolean scaled_linear; /* beta_schedule */
  /* timestep_spacing "linspace" (euler_ancestral only): diffusers' unrounded timesteps with
   * σ interpolated between the integer ones; "linspace_rounded" (default) rounds them */
  gboolean fractional_timesteps;
} vdit_sampler_config;

typedef struct {
  VditAttention mode;
  int tile_k;          /* k of layers without a plan */
  int *plan;           /* (dit.depth) or NULL */
  int block;           /* adaptive: tokens per block */
  float sparsity;      /* adaptive: target fraction of skipped blocks */
  float warmup;        /* adaptive: fraction of steps run dense first */
  float *search_steps; /* adaptive: fractions of the steps at which to search */
  int n_search_steps;
} vdit_attention_config;

typedef struct {
  char *name;
  int frames, height, width;
  int latent_height, latent_width; /* what the DiT sees: the sides / the decoder's factor */
  double fps;
  VditDecoderType decoder;
  int decoder_channels;      /* latent channels */
  float vae_scaling_factor;  /* causal_video_vae: latents are divided by it to decode */
  vdit_text_config text;
  vdit_dit_config dit;
  vdit_sampler_config sampler;
  vdit_attention_config attention;
} vdit_config;

/* Parses and validates; errors name the file and the key. The file must be a regular
 * file of at most VDIT_CONFIG_MAX_BYTES, strict JSON nested at most VDIT_JSON_MAX_DEPTH
 * deep, each key once per object. */
vdit_config *vdit_config_load (const char *path, GError **error);
vdit_config *vdit_config_parse (const char *json, gssize len, const char *origin, GError **error);
void vdit_config_free (vdit_config *cfg);
/* Writes the attention plan (one k per layer) back into config.json, keeping the rest. */
gboolean vdit_config_save_plan (const char *path, const int *plan, int depth, GError **error);

G_END_DECLS

#endif
