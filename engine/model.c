/* vdit_model: a config, its weight table and its tokenizer. */
#include "model.h"

#include "load_util.h"

static void
model_fill_info (vdit_model *m)
{
  const vdit_config *c = m->config;
  m->info = (vdit_model_info) {
    .name = c->name,
    .path = m->path,
    .width = c->width,
    .height = c->height,
    .frames = c->frames,
    .frame_multiple = c->dit.patch[0],
    .frame_offset = 0,
    .fps = c->fps,
    .steps = c->sampler.steps,
    .guidance = c->sampler.guidance,
    .attention = c->attention.mode,
    .n_params = vdit_weights_n_params (m->weights),
  };
}

vdit_model *
vdit_model_load (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  /* a config.json on its own: the architecture with seeded random weights, to time a
   * model shape whose weights are not at hand */
  if (g_str_has_suffix (dir, ".json") && g_file_test (dir, G_FILE_TEST_IS_REGULAR))
    return vdit_model_new_random (dir, 0, error);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "model directory %s does not exist", dir);
    return NULL;
  }
  vdit_model *m = g_new0 (vdit_model, 1);
  m->path = g_strdup (dir);
  g_autofree char *config_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *tok_path = g_build_filename (dir, "tokenizer.model", NULL);
  /* SentencePiece opens the tokenizer itself: a FIFO there would block it for ever */
  if (!(m->config = vdit_config_load (config_path, error)) ||
      !(m->weights = vdit_weights_load (dir, m->config, error)) ||
      !vdit_check_regular (tok_path, error) ||
      !(m->tokenizer = vdit_tokenizer_load (tok_path, error))) {
    vdit_model_free (m);
    return NULL;
  }
  int vocab = vdit_tokenizer_vocab_size (m->tokenizer);
  if (vocab > m->config->text.vocab_size) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                 "%s: tokenizer has %d pieces but text_encoder.vocab_size is %d", tok_path,
                 vocab, m->config->text.vocab_size);
    vdit_model_free (m);
    return NULL;
  }
  model_fill_info (m);
  return m;
}

vdit_model *
vdit_model_new_random (const char *config_path, uint64_t seed, GError **error)
{
  vdit_model *m = g_new0 (vdit_model, 1);
  m->path = g_strdup (config_path);
  if (!(m->config = vdit_config_load (config_path, error)) ||
      !(m->weights = vdit_weights_new_random (m->config, seed, error))) {
    vdit_model_free (m);
    return NULL;
  }
  model_fill_info (m);
  return m;
}

void
vdit_model_free (vdit_model *m)
{
  if (m == NULL)
    return;
  if (m->tokenizer)
    vdit_tokenizer_free (m->tokenizer);
  if (m->weights)
    vdit_weights_free (m->weights);
  if (m->config)
    vdit_config_free (m->config);
  g_free (m->path);
  g_free (m);
}

const vdit_model_info *
vdit_model_get_info (const vdit_model *m)
{
  return &m->info;
}

const vdit_config *
vdit_model_get_config (const vdit_model *m)
{
  return m->config;
}

const vdit_weights *
vdit_model_get_weights (const vdit_model *m)
{
  return m->weights;
}

/* VDIT_MAX_FRAMES (config.h), a sanity bound: far beyond any model's context, well below
 * what would exhaust memory silently through overcommit before the first allocation
 * fails. */
gboolean
vdit_model_check_frames (const vdit_model *m, int frames, GError **error)
{
  const int mult = m->info.frame_multiple, off = m->info.frame_offset;
  if (frames > VDIT_MAX_FRAMES) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "frames = %d is out of range (at most %d per generation)", frames,
                 VDIT_MAX_FRAMES);
    return FALSE;
  }
  if (frames < 1 || frames < off + mult || (frames - off) % mult != 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "frames = %d is not valid for model %s: it must be %s%d·k frames (k ≥ 1) "
                 "because the model patches %d frames together in time",
                 frames, m->info.name, off ? "1 + " : "", mult, mult);
    return FALSE;
  }
  return TRUE;
}

int
vdit_model_latent_frames (const vdit_model *m, int frames)
{
  return frames; /* identity decoder: one latent frame per video frame */
}

void
vdit_model_token_grid (const vdit_model *m, int frames, int grid[3])
{
  const vdit_config *c = m->config;
  grid[0] = vdit_model_latent_frames (m, frames) / c->dit.patch[0];
  grid[1] = c->height / c->dit.patch[1];
  grid[2] = c->width / c->dit.patch[2];
}

uint64_t
vdit_model_memory_estimate (const vdit_model *m, int frames, size_t act_size)
{
  const vdit_config *c = m->config;
  const uint64_t d = c->dit.hidden, f = c->dit.ffn_hidden;
  int grid[3];
  vdit_model_token_grid (m, frames, grid);
  const uint64_t tokens = (uint64_t) grid[0] * grid[1] * grid[2];
  const uint64_t text = c->text.max_tokens;
  const uint64_t weights = (uint64_t) m->info.n_params * act_size;
  /* residual, normed input, q/k/v, attention output, FFN hidden; text for two passes */
  const uint64_t acts = tokens * (6 * d + f) * act_size + 2 * text * (2 * d + 4 * c->text.d_ff) * act_size;
  /* the latent, the guidance pair and the patch buffers on the host side */
  const uint64_t host = (uint64_t) frames * c->height * c->width * c->dit.in_channels * 4 * 4;
  return weights + acts + host;
}
