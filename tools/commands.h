/* The subcommands of the `vdit` program. Each is called like main(): argv[0] names
 * the command ("vdit generate", "vdit bench step", ...) and the rest are its
 * arguments. Each returns the process exit status: 0 success, 1 failure (a message
 * "vdit: ..." was printed on stderr), 2 bad usage, 130 interrupted. */
#ifndef VDIT_TOOLS_COMMANDS_H
#define VDIT_TOOLS_COMMANDS_H

#define VDIT_EXIT_OK 0
#define VDIT_EXIT_FAILURE 1
#define VDIT_EXIT_USAGE 2
#define VDIT_EXIT_INTERRUPTED 130

int vdit_cmd_generate (int argc, char **argv);
int vdit_cmd_inspect (int argc, char **argv);
int vdit_cmd_bench_step (int argc, char **argv);
int vdit_cmd_bench_attention (int argc, char **argv);
int vdit_cmd_bench_vae (int argc, char **argv);
int vdit_cmd_bench_clip (int argc, char **argv);
int vdit_cmd_search_masks (int argc, char **argv);
int vdit_cmd_worker (int argc, char **argv);

#endif
