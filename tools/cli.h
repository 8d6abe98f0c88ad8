/* Small helpers shared by the subcommands: option parsing, error printing, models. */
#ifndef VDIT_TOOLS_CLI_H
#define VDIT_TOOLS_CLI_H

#include <glib.h>

#include "vdit.h"

G_BEGIN_DECLS

/* Prints "vdit: <message>" on stderr, frees the error, returns VDIT_EXIT_FAILURE. */
int vdit_cli_fail (GError *error);
/* Prints "vdit: <message>" and a hint to run `<command> --help`; returns
 * VDIT_EXIT_USAGE. */
int vdit_cli_usage (const char *command, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* The benches' model source: exactly one of --model DIR and --config FILE, the latter
 * with --random-weights. Returns VDIT_EXIT_OK, or the usage status after printing why. */
int vdit_cli_check_model_source (const char *command, const char *model_dir,
                                 const char *config, gboolean random_weights);

/* Parses argv with ctx. On a bad option prints the message and sets *status to
 * VDIT_EXIT_USAGE; returns FALSE. Leftover positional arguments stay in argv. */
gboolean vdit_cli_parse (GOptionContext *ctx, const char *command, int *argc, char ***argv,
                         int *status);

gboolean vdit_cli_parse_device (const char *name, VditDevice *device, GError **error);
gboolean vdit_cli_parse_attention (const char *name, VditAttention *mode, GError **error);
gboolean vdit_cli_parse_seed (const char *text, uint64_t *seed, GError **error);
/* Arguments taken as raw bytes (G_OPTION_ARG_FILENAME) must be UTF-8 text. */
gboolean vdit_cli_check_utf8 (const char *what, const char *text, GError **error);

/* Nothing but white space: an empty prompt. */
gboolean vdit_cli_is_blank (const char *text);

/* A generation's options stay unset until given (the model's defaults then serve). */
#define VDIT_CLI_UNSET G_MININT
#define VDIT_CLI_UNSET_GUIDANCE (-G_MAXDOUBLE)
/* vdit_generate's bounds (engine/generate.c), checked before any work */
#define VDIT_CLI_MAX_STEPS 10000
#define VDIT_CLI_MAX_GUIDANCE 100.0
/* --frames, --steps and --guidance as given (or unset) against those bounds. Returns
 * VDIT_EXIT_OK, or the usage status after printing why. */
int vdit_cli_check_clip_options (const char *command, int frames, int steps, double guidance);

/* A model directory, or a config.json with seeded random weights. */
vdit_model *vdit_cli_load_model (const char *dir, const char *config, uint64_t seed,
                                 GError **error);

G_END_DECLS

#endif
