/* A command's place in a parallel job: started by mpirun, a command joins the job's
 * communicator; rank 0 does what the command says, the other ranks serve it. */
#ifndef VDIT_TOOLS_CLI_PARALLEL_H
#define VDIT_TOOLS_CLI_PARALLEL_H

#include <glib.h>

#include "comm.h"
#include "vdit.h"

G_BEGIN_DECLS

/* The environment variable with a collective's deadline in seconds (default
 * VDIT_COMM_DEFAULT_TIMEOUT_S). */
#define VDIT_COMM_TIMEOUT_ENV "VDIT_COMM_TIMEOUT"

/* MPI's world when started by mpirun, else one rank; the deadline from the environment. */
gboolean vdit_cli_comm_init (vdit_comm *comm, GError **error);

/* The GPU of this rank when several ranks of an mpirun job share a machine: the rank's
 * place on its machine (OMPI_COMM_WORLD_LOCAL_RANK, or Slurm's SLURM_LOCALID) modulo the
 * GPUs present; -1 (the default choice) outside mpirun, with device=cpu, or without a
 * GPU. */
int vdit_cli_rank_device (VditDevice device);

/* Ends the command's part of the job and frees comm. status != 0 on any rank of a job
 * of several ends every rank (rank 0's failure leaves the others waiting, and theirs
 * leaves rank 0 waiting); send_stop: rank 0 releases the ranks serving it (vdit
 * generate). Returns status. */
int vdit_cli_comm_finish (vdit_comm *comm, int status, gboolean send_stop);

/* The serving ranks of `vdit generate` and `vdit worker`: parses --device, --threads
 * and --idle-timeout from argv (other options are the host's and are ignored when
 * ignore_unknown), then serves rank 0 until it stops. Frees comm; returns the exit
 * status. */
int vdit_cli_serve (vdit_comm *comm, const char *command, int argc, char **argv,
                    gboolean ignore_unknown);

G_END_DECLS

#endif
