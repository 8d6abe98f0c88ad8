/* `vdit worker`: ranks 1 and up of an MPMD job whose rank 0 generates. */
#include "cli.h"
#include "cli_parallel.h"
#include "commands.h"

int
vdit_cmd_worker (int argc, char **argv)
{
  vdit_comm comm;
  GError *error = NULL;
  if (!vdit_cli_comm_init (&comm, &error))
    return vdit_cli_fail (error);
  return vdit_cli_serve (&comm, "vdit worker", argc, argv, FALSE);
}
