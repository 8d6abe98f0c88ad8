/* Helpers shared by the subcommands. */
#include "cli.h"

#include <stdarg.h>

#include "commands.h"

int
vdit_cli_fail (GError *error)
{
  g_printerr ("vdit: %s\n", error ? error->message : "unknown error");
  g_clear_error (&error);
  return VDIT_EXIT_FAILURE;
}

int
vdit_cli_usage (const char *command, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  char *message = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("vdit: %s\nTry '%s --help'.\n", message, command);
  g_free (message);
  return VDIT_EXIT_USAGE;
}

int
vdit_cli_check_model_source (const char *command, const char *model_dir, const char *config,
                             gboolean random_weights)
{
  if ((model_dir == NULL) == (config == NULL))
    return vdit_cli_usage (command, "give either --model DIR or --config FILE --random-weights");
  if (config != NULL && !random_weights)
    return vdit_cli_usage (command, "--config needs --random-weights");
  return VDIT_EXIT_OK;
}

gboolean
vdit_cli_is_blank (const char *text)
{
  for (; *text; text++)
    if (!g_ascii_isspace (*text))
      return FALSE;
  return TRUE;
}

int
vdit_cli_check_clip_options (const char *command, int frames, int steps, double guidance)
{
  if (frames != VDIT_CLI_UNSET && frames < 1)
    return vdit_cli_usage (command, "--frames must be at least 1, not %d", frames);
  if (steps != VDIT_CLI_UNSET && (steps < 1 || steps > VDIT_CLI_MAX_STEPS))
    return vdit_cli_usage (command, "--steps must be from 1 to %d, not %d", VDIT_CLI_MAX_STEPS,
                           steps);
  if (guidance != VDIT_CLI_UNSET_GUIDANCE &&
      !(guidance >= 0.0 && guidance <= VDIT_CLI_MAX_GUIDANCE))
    return vdit_cli_usage (command, "--guidance must be from 0 to %g, not %g",
                           VDIT_CLI_MAX_GUIDANCE, guidance);
  return VDIT_EXIT_OK;
}

gboolean
vdit_cli_parse (GOptionContext *ctx, const char *command, int *argc, char ***argv,
                int *status)
{
  GError *error = NULL;
  if (!g_option_context_parse (ctx, argc, argv, &error)) {
    *status = vdit_cli_usage (command, "%s", error->message);
    g_error_free (error);
    return FALSE;
  }
  return TRUE;
}

gboolean
vdit_cli_parse_device (const char *name, VditDevice *device, GError **error)
{
  if (name == NULL || g_str_equal (name, "auto"))
    *device = VDIT_DEVICE_AUTO;
  else if (g_str_equal (name, "cpu"))
    *device = VDIT_DEVICE_CPU;
  else if (g_str_equal (name, "cuda"))
    *device = VDIT_DEVICE_CUDA;
  else {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "unknown device '%s' (expected auto, cpu or cuda)", name);
    return FALSE;
  }
  return TRUE;
}

gboolean
vdit_cli_parse_attention (const char *name, VditAttention *mode, GError **error)
{
  if (name == NULL) {
    *mode = VDIT_ATTENTION_DEFAULT;
    return TRUE;
  }
  if (!vdit_attention_from_name (name, mode)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "unknown attention '%s' (expected full, tile or adaptive)", name);
    return FALSE;
  }
  return TRUE;
}

gboolean
vdit_cli_parse_seed (const char *text, uint64_t *seed, GError **error)
{
  guint64 value = 0;
  if (text == NULL) {
    *seed = 0;
    return TRUE;
  }
  if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT64, &value, NULL)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "cannot parse seed '%s' (expected an integer from 0 to %" G_GUINT64_FORMAT
                 ")", text, G_MAXUINT64);
    return FALSE;
  }
  *seed = value;
  return TRUE;
}

gboolean
vdit_cli_check_utf8 (const char *what, const char *text, GError **error)
{
  if (text != NULL && !g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "%s is not valid UTF-8 text", what);
    return FALSE;
  }
  return TRUE;
}

vdit_model *
vdit_cli_load_model (const char *dir, const char *config, uint64_t seed, GError **error)
{
  if (config != NULL)
    return vdit_model_new_random (config, seed, error);
  return vdit_model_load (dir, error);
}
