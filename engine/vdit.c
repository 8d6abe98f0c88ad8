/* Error domain, names and parameter defaults of the public API. */
#include "vdit.h"

G_DEFINE_QUARK (vdit-error-quark, vdit_error)

static const char *const attention_names[] = { "full", "tile", "adaptive" };

const char *
vdit_attention_name (VditAttention mode)
{
  if (mode == VDIT_ATTENTION_DEFAULT)
    return "default";
  if (mode < 0 || mode >= (int) G_N_ELEMENTS (attention_names))
    return "unknown";
  return attention_names[mode];
}

gboolean
vdit_attention_from_name (const char *name, VditAttention *mode)
{
  if (name == NULL)
    return FALSE;
  if (g_str_equal (name, "default")) {
    *mode = VDIT_ATTENTION_DEFAULT;
    return TRUE;
  }
  for (guint i = 0; i < G_N_ELEMENTS (attention_names); i++) {
    if (g_str_equal (name, attention_names[i])) {
      *mode = (VditAttention) i;
      return TRUE;
    }
  }
  return FALSE;
}

void
vdit_ctx_params_init (vdit_ctx_params *params)
{
  *params = (vdit_ctx_params) {
    .device = VDIT_DEVICE_AUTO,
    .device_id = -1,
    .gpus = 1,
    .threads = 0,
  };
}

void
vdit_gen_params_init (vdit_gen_params *params)
{
  *params = (vdit_gen_params) {
    .prompt = NULL,
    .negative_prompt = NULL,
    .frames = 0,
    .steps = 0,
    .guidance = VDIT_GUIDANCE_DEFAULT,
    .seed = 0,
    .attention = VDIT_ATTENTION_DEFAULT,
    .sparsity = -1.0f,
  };
}
