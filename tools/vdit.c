/* The `vdit` command: finds the subcommand and hands it the rest of the arguments. */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "commands.h"

typedef struct {
  const char *name;    /* as typed, e.g. "bench step" */
  int (*run) (int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
  { "generate", vdit_cmd_generate, "render a clip from a text prompt (y4m or PNG frames)" },
  { "inspect", vdit_cmd_inspect, "describe a model directory" },
  { "bench step", vdit_cmd_bench_step, "time one DiT step (JSON lines)" },
  { "bench attention", vdit_cmd_bench_attention, "time the attention kernels (JSON lines)" },
  { "bench vae", vdit_cmd_bench_vae, "time the CausalVideoVAE decode (JSON lines)" },
  { "bench clip", vdit_cmd_bench_clip, "time whole clips, prompt to last frame (JSON lines)" },
  { "search-masks", vdit_cmd_search_masks, "search per-layer tile masks for a model" },
  { "worker", vdit_cmd_worker, "serve rank 0 of an mpirun job (sequence parallelism)" },
};

static void
print_usage (FILE *out)
{
  fprintf (out,
           "Usage: vdit COMMAND [OPTION...]\n"
           "\n"
           "Text-to-video with diffusion transformers.\n"
           "\n"
           "Commands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-16s %s\n", commands[i].name, commands[i].summary);
  fprintf (out,
           "\n"
           "Options:\n"
           "  -h, --help       show this help\n"
           "  --version        show the version\n"
           "\n"
           "Run 'vdit COMMAND --help' for the options of a command.\n");
}

/* Matches argv[1] (and argv[2] for two-word commands) against the table; returns the
 * number of words consumed, 0 if none matched. */
static int
match_command (int argc, char **argv, const command **found)
{
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++) {
    const char *name = commands[i].name;
    const char *space = strchr (name, ' ');
    if (space == NULL) {
      if (g_str_equal (argv[1], name)) {
        *found = &commands[i];
        return 1;
      }
    } else if (argc > 2 && strncmp (argv[1], name, space - name) == 0 &&
               argv[1][space - name] == '\0' && g_str_equal (argv[2], space + 1)) {
      *found = &commands[i];
      return 2;
    }
  }
  return 0;
}

int
main (int argc, char **argv)
{
  /* Messages in the user's language and charset; option values are parsed by GLib. */
  setlocale (LC_ALL, "");

  if (argc < 2) {
    print_usage (stderr);
    return VDIT_EXIT_USAGE;
  }
  if (g_str_equal (argv[1], "-h") || g_str_equal (argv[1], "--help") ||
      g_str_equal (argv[1], "help")) {
    print_usage (stdout);
    return VDIT_EXIT_OK;
  }
  if (g_str_equal (argv[1], "--version")) {
    printf ("vdit %s\n", VDIT_VERSION);
    return VDIT_EXIT_OK;
  }

  const command *cmd = NULL;
  int words = match_command (argc, argv, &cmd);
  if (words == 0) {
    if (g_str_equal (argv[1], "bench"))
      fprintf (stderr, "vdit: 'bench' needs a benchmark: step, attention, vae or clip\n");
    else
      fprintf (stderr, "vdit: unknown command '%s'\n", argv[1]);
    fprintf (stderr, "Try 'vdit --help'.\n");
    return VDIT_EXIT_USAGE;
  }

  /* The command sees argv[0] = "vdit <name>" and then its own arguments. */
  int sub_argc = argc - words;
  char **sub_argv = g_new0 (char *, sub_argc + 1);
  char *name = g_strconcat ("vdit ", cmd->name, NULL);
  sub_argv[0] = name;
  for (int i = 1; i < sub_argc; i++)
    sub_argv[i] = argv[i + words];
  /* The strings stay owned here: option parsing only reorders the array. */
  int status = cmd->run (sub_argc, sub_argv);
  g_free (name);
  g_free (sub_argv);
  return status;
}
