/* A prompt longer than text_encoder.max_tokens is cut to max_tokens − 1 ids plus EOS, and
 * the host's log hears a warning saying so (Open-Sora-Plan's pipeline warns too); a
 * prompt that fits is not warned about. */
#include "config.h"
#include "ctx.h"
#include "model.h"
#include "test_util.h"

static void
capture (void *user_data, GLogLevelFlags level, const char *message)
{
  if (level == G_LOG_LEVEL_WARNING)
    g_ptr_array_add (user_data, g_strdup (message));
}

static void
test_truncation (void)
{
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) warnings = g_ptr_array_new_with_free_func (g_free);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  cp.log = capture;
  cp.log_user_data = warnings;
  vdit_ctx *ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  const int max_tokens = vdit_model_get_config (model)->text.max_tokens;

  int32_t *ids = NULL;
  int n = 0;
  g_assert_true (vdit_ctx_tokenize (ctx, "a red ball", &ids, &n, &error));
  g_assert_cmpint (n, <, max_tokens);
  g_assert_cmpuint (warnings->len, ==, 0);
  g_free (ids);

  GString *long_prompt = g_string_new (NULL);
  for (int i = 0; i < 4 * max_tokens; i++)
    g_string_append (long_prompt, "a red ball moves left ");
  g_assert_true (vdit_ctx_tokenize (ctx, long_prompt->str, &ids, &n, &error));
  g_assert_cmpint (n, ==, max_tokens);
  g_assert_cmpint (ids[n - 1], ==, 1); /* EOS */
  g_assert_cmpuint (warnings->len, ==, 1);
  g_autofree char *want = g_strdup_printf ("only the first %d and the end-of-text token",
                                           max_tokens - 1);
  g_assert_nonnull (strstr (g_ptr_array_index (warnings, 0), want));
  g_free (ids);
  g_string_free (long_prompt, TRUE);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/prompt/truncation-warning", test_truncation);
  return g_test_run ();
}
