/* vdit_model: a config, its weight table and its tokenizer. */
#include "model.h"

#include "load_util.h"
#include "vae_decoder.h"

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
    /* the VAE makes 1 + 4(T − 1) frames of T latent ones (patch[0] is 1 then) */
    .frame_multiple = c->decoder == VDIT_DECODER_CAUSAL_VIDEO_VAE ? VDIT_VAE_TIME_FACTOR
                                                                  : c->dit.patch[0],
    .frame_offset = c->decoder == VDIT_DECODER_CAUSAL_VIDEO_VAE ? 1 : 0,
    .fps = c->fps,
    .steps = c->sampler.steps,
    .guidance = c->sampler.guidance,
    .attention = c->attention.mode,
    .n_params = vdit_weights_n_params (m->weights),
  };
}

/* decoder.type causal_video_vae: the decoder's weights are in the model's vae/ folder
 * (train/convert_osp.py --vae). */
static gboolean
load_vae (vdit_model *m, const char *dir, GError **error)
{
  if (m->config->decoder != VDIT_DECODER_CAUSAL_VIDEO_VAE)
    return TRUE;
  g_autofree char *vae_dir = g_build_filename (dir, "vae", NULL);
  if (!g_file_test (vae_dir, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING,
                 "%s is missing: decoder.type causal_video_vae needs the VAE's weights there "
                 "(train/convert_osp.py --vae)", vae_dir);
    return FALSE;
  }
  if (!(m->vae = vdit_vae_decoder_load (vae_dir, error)))
    return FALSE;
  if (vdit_vae_decoder_channels (m->vae) != m->config->decoder_channels) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                 "%s: the VAE has %d latent channels, config.json's decoder.channels is %d",
                 vae_dir, vdit_vae_decoder_channels (m->vae), m->config->decoder_channels);
    return FALSE;
  }
  return TRUE;
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
      !load_vae (m, dir, error) ||
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
  vdit_vae_decoder_free (m->vae);
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
                 "because %s",
                 frames, m->info.name, off ? "1 + " : "", mult,
                 off ? "its VAE makes 4 frames of each latent frame after the first"
                     : "the model patches that many frames together in time");
    return FALSE;
  }
  return TRUE;
}

int
vdit_model_latent_frames (const vdit_model *m, int frames)
{
  if (m->config->decoder == VDIT_DECODER_CAUSAL_VIDEO_VAE)
    return (frames - 1) / VDIT_VAE_TIME_FACTOR + 1;
  return frames; /* identity decoder: one latent frame per video frame */
}

void
vdit_model_token_grid (const vdit_model *m, int frames, int grid[3])
{
  const vdit_config *c = m->config;
  grid[0] = vdit_model_latent_frames (m, frames) / c->dit.patch[0];
  grid[1] = c->latent_height / c->dit.patch[1];
  grid[2] = c->latent_width / c->dit.patch[2];
}

void
vdit_model_memory_plan (const vdit_model *m, int frames, size_t act_size, vdit_memory_plan *p)
{
  const vdit_config *c = m->config;
  const uint64_t d = c->dit.hidden, f = c->dit.ffn_hidden;
  int grid[3];
  vdit_model_token_grid (m, frames, grid);
  const uint64_t tokens = (uint64_t) grid[0] * grid[1] * grid[2];
  const uint64_t text = c->text.max_tokens;
  int64_t text_params = 0;
  GPtrArray *specs = vdit_weights_expected (c);
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *spec = g_ptr_array_index (specs, i);
    if (g_str_has_prefix (spec->name, "text_encoder.")) {
      int64_t n = 1;
      for (int k = 0; k < spec->ndim; k++)
        n *= spec->shape[k];
      text_params += n;
    }
  }
  g_ptr_array_unref (specs);
  p->text_weights = (uint64_t) text_params * act_size;
  p->dit_weights = ((uint64_t) m->info.n_params - (uint64_t) text_params) * act_size;
  /* residual, normed input, q/k/v, attention output, FFN hidden; text for two passes */
  p->activations = tokens * (6 * d + f) * act_size +
                   2 * text * (2 * d + 4 * c->text.d_ff) * act_size;
  /* the latent, the guidance pair and the patch buffers on the host side */
  p->latents = (uint64_t) vdit_model_latent_frames (m, frames) * c->latent_height *
               c->latent_width * c->dit.in_channels * 4 * 4;
  /* the CausalVideoVAE decodes on the host */
  p->vae_decode = m->vae ? vdit_vae_decoder_peak_bytes (m->vae, grid[0] * c->dit.patch[0],
                                                        c->latent_height, c->latent_width)
                         : 0;
}

uint64_t
vdit_model_memory_estimate (const vdit_model *m, int frames, size_t act_size)
{
  vdit_memory_plan p;
  vdit_model_memory_plan (m, frames, act_size, &p);
  return p.text_weights + p.dit_weights + p.activations + p.latents + p.vae_decode;
}
